"""Imports are streamed: a page at a time inside one transaction, all or nothing.

Real SQLite and PostgreSQL (``node_factory``). The page is made a few items
long, so that a few hundred hashes span dozens of pages and every rule that
crosses a page boundary (repeats, what the list held, the tree) is exercised.
"""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crypto.errors import InputError
from crypto.merkle import CompactRange
from node.log import tree_fold, writer
from node.log.entry import leaf_hashes
from node.log.writer import imports
from node.node import Node

NodeFactory = Callable[..., Node]
LIST = "au-argos/series"


def md5(i: int) -> str:
    return hashlib.md5(str(i).encode()).hexdigest()  # noqa: S324 (test data)


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imports, "PAGE", 7)


@pytest.fixture
def node(node_factory: NodeFactory) -> Node:
    n = node_factory("au-argos")
    n.create_list(LIST, label="baseline", actor="t")
    return n


def _csv(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "set.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("held_before", [True, False], ids=["into-a-list", "into-an-empty-list"])
def test_repeats_across_pages_and_held_hashes_are_skipped_first_category_kept(
    node: Node, tmp_path: Path, held_before: bool
) -> None:
    # Into an empty list, pages are written without looking up until one
    # repeats an earlier page's hash; into a list, every page looks up.
    held = range(0, 100, 10) if held_before else range(0)
    node.add_raw(LIST, [("md5", md5(i), "held") for i in held], actor="t")
    rows = [f"md5,{md5(i)},A{i % 3 + 1}" for i in range(100)]
    rows += [f"md5,{md5(i)},B1" for i in range(0, 100, 3)]  # repeats, pages later
    rows += [f"sha1,{hashlib.sha1(b'%d' % i).hexdigest()},A1" for i in range(20)]  # noqa: S324
    written: list[int] = []

    r = node.import_file(LIST, _csv(tmp_path, rows), actor="carol", progress=written.append)

    assert (r.appended, r.skipped, r.size) == (120 - len(held), len(rows) - 120 + len(held), 120)
    assert sum(written) == 120 - len(held)
    assert max(written) <= imports.PAGE
    assert r.committed.changes is None  # listeners read the log
    content = {(t, v): c for t, v, c in node.content(LIST)}
    assert len(content) == 120
    assert all(content[("md5", md5(i))] == "held" for i in held)
    assert all(
        content[("md5", md5(i))] == f"A{i % 3 + 1}" for i in range(100) if i not in held
    )  # the first row of a hash wins, however many pages later it repeats
    [verdict] = node.verify(LIST)
    assert verdict.ok, verdict.reason
    audit = node.store.audit_records(action="list.import")
    assert [(a.actor, a.count) for a in audit] == [("carol", 120 - len(held))]


@pytest.mark.parametrize("helper", [False, True], ids=["folded-here", "folded-by-the-helper"])
def test_each_page_is_appended_in_key_order_and_the_tree_covers_every_entry(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helper: bool
) -> None:
    if helper:
        monkeypatch.setattr(tree_fold, "HELPER_FROM", imports.PAGE)
    rows = [f"md5,{md5(i)}" for i in range(30)]
    node.import_file(LIST, _csv(tmp_path, rows), actor="t")

    entries = list(node.store.iter_entries(list_id=node.get_list(LIST).id))
    pages = [entries[i : i + imports.PAGE] for i in range(0, len(entries), imports.PAGE)]
    assert all([e[3] for e in p] == sorted(e[3] for e in p) for p in pages)
    tree = CompactRange()
    tree.extend(leaf_hashes(entries))
    state = node.store.get_state(list_id=node.get_list(LIST).id)
    assert (state.size, state.compact_range) == (30, tree.to_bytes())


def test_a_bad_line_after_many_written_pages_leaves_nothing(node: Node, tmp_path: Path) -> None:
    audit_before = node.store.count_rows("audit")
    rows = [f"md5,{md5(i)}" for i in range(200)] + ["md5,nothex"] + [f"md5,{md5(-1)}"]

    with pytest.raises(InputError) as info:
        node.import_file(LIST, _csv(tmp_path, rows), actor="t")

    assert f"set.csv:{201}" in info.value.message
    state = node.store.get_state(list_id=node.get_list(LIST).id)
    assert (state.size, state.live_count) == (0, 0)
    assert node.store.count_rows("entries") == 0
    assert node.store.count_rows("content") == 0
    assert node.store.count_rows("audit") == audit_before


def test_a_reader_that_fails_mid_import_rolls_every_page_back(node: Node) -> None:
    node.add_raw(LIST, [("md5", md5(-1), "")], actor="t")

    def items() -> Iterator[tuple[str, str, str]]:
        for i in range(50):
            yield "md5", md5(i), ""
        raise OSError("the disk holding the file went away")

    with pytest.raises(OSError, match="went away"):
        writer.import_items(
            node.store, node_id=node.node_id, row=node.get_list(LIST), items=items(), actor="t"
        )

    assert list(node.content(LIST)) == [("md5", md5(-1), "")]
    assert node.store.get_state(list_id=node.get_list(LIST).id).size == 1
    # The writer's lock is free again: the next import goes through.
    done = writer.import_items(
        node.store,
        node_id=node.node_id,
        row=node.get_list(LIST),
        items=iter([("md5", md5(1), "")]),
        actor="t",
    )
    assert (done.appended, done.size) == (1, 2)


def test_an_import_of_only_held_hashes_writes_nothing(node: Node, tmp_path: Path) -> None:
    node.add_raw(LIST, [("md5", md5(i), "") for i in range(20)], actor="t")
    audit_before = node.store.count_rows("audit")

    r = node.import_file(LIST, _csv(tmp_path, [f"md5,{md5(i)}" for i in range(20)]), actor="t")

    assert (r.appended, r.skipped, r.size) == (0, 20, 20)
    assert node.store.count_rows("audit") == audit_before


def test_memory_holds_a_page_not_the_import(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python's own allocations (SQLite's page cache is not among them): an
    # import that planned all 40,000 hashes at once held ~30 MB of them.
    monkeypatch.setattr(imports, "PAGE", 1024)
    path = tmp_path / "set.txt"
    path.write_text("".join(f"{hashlib.sha256(b'%d' % i).hexdigest()}\n" for i in range(40_000)))

    tracemalloc.start()
    try:
        r = node.import_file(LIST, path, default_type="sha256", actor="t")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert r.appended == 40_000
    assert peak < 4 << 20, f"the import held {peak / 2**20:.1f} MB at its peak"
