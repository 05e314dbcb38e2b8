"""Verification's content check and its second process — on every configured backend.

``content_matches_log`` must say "equal" exactly when the content table is the
fold of the log, whichever of its two paths answers; the worker process must
give the same verdicts as checking in one process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from node.log import lists
from node.log.verify import content_matches_log
from node.node import Node

NodeFactory = Callable[..., Node]
LIST = "au-argos/series-2041"
Row = tuple[str, str, str, int]  # content: type, value, category, seq of the add


def md5(i: int) -> str:
    return hashlib.md5(f"verify value {i}".encode()).hexdigest()  # noqa: S324  (test data)


def sql(node: Node, statement: str, params: Any = None) -> int:
    with node.store.engine.begin() as conn:
        return conn.execute(text(statement), params or {}).rowcount


@pytest.fixture
def node(node_factory: NodeFactory) -> Node:
    n = node_factory("au-argos")
    n.create_list(LIST, label="baseline", actor="tester")
    return n


def _write(node: Node, log: list[tuple[str, int, str]], content: set[Row]) -> int:
    """Store ``log`` entries (op, key, category) and ``content`` rows as they are."""
    list_id = node.get_list(LIST).id
    sql(node, "DELETE FROM log_entry WHERE list_id = :l", {"l": list_id})
    sql(node, "DELETE FROM content WHERE list_id = :l", {"l": list_id})
    if log:
        sql(
            node,
            "INSERT INTO log_entry (list_id, seq, op, hash_type, value, category, timestamp_ms) "
            "VALUES (:l, :s, :op, 'md5', :v, :c, 0)",
            [
                {"l": list_id, "s": s, "op": op, "v": md5(k), "c": c}
                for s, (op, k, c) in enumerate(log)
            ],
        )
    if content:
        sql(
            node,
            "INSERT INTO content (list_id, hash_type, value, category, seq) "
            "VALUES (:l, :t, :v, :c, :s)",
            [{"l": list_id, "t": t, "v": v, "c": c, "s": s} for t, v, c, s in content],
        )
    return list_id


def _fold_rows(log: list[tuple[str, int, str]]) -> set[Row]:
    entries = [(s, op, "md5", md5(k), c, 0) for s, (op, k, c) in enumerate(log)]
    return {(t, v, c, seq) for (t, v), (c, seq) in lists.fold(entries).items()}


logs = st.lists(
    st.tuples(st.sampled_from(["add", "add", "remove"]), st.integers(0, 5), st.sampled_from("AB")),
    max_size=14,
)


def _tamper(rows: set[Row], how: int, data: st.DataObject) -> set[Row]:
    """0: as is; 1: a row lost; 2: a category changed; 3: an add seq changed; 4: a stray row."""
    if how == 4:
        return rows | {("md5", md5(999), "A", 0)}
    if how == 0 or not rows:
        return rows
    victim = data.draw(st.sampled_from(sorted(rows)))
    t, v, c, s = victim
    changed = {1: set(), 2: {(t, v, "A" if c == "B" else "B", s)}, 3: {(t, v, c, s + 100)}}
    return rows - {victim} | changed[how]


@given(log=logs, how=st.integers(0, 4), data=st.data())
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_content_check_says_equal_exactly_when_content_is_the_fold(
    node: Node, log: list[tuple[str, int, str]], how: int, data: st.DataObject
) -> None:
    folded = _fold_rows(log)
    content = _tamper(folded, how, data)
    list_id = _write(node, log, content)
    assert content_matches_log(node.store, list_id=list_id, end=len(log)) == (content == folded)


def test_repeated_add_is_a_no_op_for_the_check(node: Node) -> None:
    # Adds only, so the sorted comparison runs first and differs; the fold decides.
    log = [("add", 1, "A"), ("add", 2, "B"), ("add", 1, "B")]
    list_id = _write(node, log, _fold_rows(log))
    assert _fold_rows(log) == {("md5", md5(1), "A", 0), ("md5", md5(2), "B", 1)}
    assert content_matches_log(node.store, list_id=list_id, end=3)


def test_adds_only_content_with_the_later_duplicate_fails(node: Node) -> None:
    log = [("add", 1, "A"), ("add", 1, "B")]
    list_id = _write(node, log, {("md5", md5(1), "B", 1)})
    assert not content_matches_log(node.store, list_id=list_id, end=2)


# --- the second process ---------------------------------------------------------------------


def _big(node: Node, name: str, n: int, *, removes: int = 0) -> None:
    node.create_list(name, label="baseline", actor="tester")
    node.add_raw(name, [("md5", md5(i), "A1") for i in range(n)], actor="tester")
    if removes:
        node.remove(name, [("md5", md5(i)) for i in range(removes)], actor="tester")
    node.publish(name, actor="tester")


def test_worker_process_gives_the_same_verdicts(node: Node) -> None:
    _big(node, "au-argos/adds", 300)
    _big(node, "au-argos/removes", 300, removes=20)
    _big(node, "au-argos/tampered", 300)
    tampered = node.get_list("au-argos/tampered").id
    assert (
        sql(
            node,
            "UPDATE content SET category = 'B2' WHERE list_id = :l AND value = :v",
            {"l": tampered, "v": md5(7)},
        )
        == 1
    )

    in_process = {r.row.full_name: (r.ok, r.reason) for r in node.verify(parallel_from=10**9)}
    in_worker = {r.row.full_name: (r.ok, r.reason) for r in node.verify(parallel_from=1)}

    assert in_worker == in_process
    assert in_worker["au-argos/adds"] == (True, "ok")
    assert in_worker["au-argos/removes"] == (True, "ok")
    assert in_worker["au-argos/tampered"] == (
        False,
        "the content table differs from the fold of the log",
    )
