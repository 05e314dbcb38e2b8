"""The one list writer: each change with its audit record in one transaction; writers wait.

Real SQLite and PostgreSQL (``db_url``): the audit insert is made to fail by a
trigger in the database, and the list's lock is held by another real
connection, the way another process would hold it.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from crypto.cosignature import CosignatureSigner
from crypto.errors import FrozenListError, StoreError, WriteLockTimeoutError
from crypto.merkle import CompactRange
from crypto.note import open_note
from node.log import writer
from node.log.entry import leaf_hashes
from node.log.lists import get_list
from node.node import Node
from node.store import EntryTuple, ListRow, Store

LIST = "au-argos/series-1"
RECEIVED = "nl-politie/shared"
NodeFactory = Callable[..., Node]
ROOT = Path(__file__).parents[3]


def md5(i: int) -> str:
    return hashlib.md5(str(i).encode()).hexdigest()  # noqa: S324 - test data, not security


@pytest.fixture
def node(node_factory: NodeFactory) -> Node:
    n = node_factory("au-argos")
    n.create_list(LIST, label="baseline", actor="tester")
    n.add_raw(LIST, [("md5", md5(i), "A1") for i in range(3)], actor="tester")
    n.publish(LIST, actor="tester")
    return n


def _verified_entries(n: int, *, start: int = 0) -> list[EntryTuple]:
    return [(start + i, "add", "md5", md5(1000 + start + i), "B", 1) for i in range(n)]


def _range_of(entries: list[EntryTuple]) -> bytes:
    cr = CompactRange()
    cr.extend(leaf_hashes(entries))
    return cr.to_bytes()


def _accepted(entries: list[EntryTuple]) -> writer.Verified:
    cr = CompactRange()
    cr.extend(leaf_hashes(entries))
    # The writer trusts its caller verified this checkpoint; only size and root matter here.
    return (cr.size, cr.root(), 1_800_000_000 + cr.size, f"note {cr.size}")


def _received(node: Node) -> ListRow:
    owner, name = RECEIVED.split("/")
    return writer.create_received(
        node.store, owner=owner, name=name, label="baseline", description="", peer="nl-politie"
    )


def _apply(node: Node, row: ListRow, entries: list[EntryTuple], from_size: int) -> Any:
    return writer.apply_verified(
        node.store,
        row=row,
        peer="nl-politie",
        entries=entries[from_size:],
        from_size=from_size,
        from_range=_range_of(entries[:from_size]),
        accepted=_accepted(entries),
        compact_range=_range_of(entries),
    )


def _snapshot(store: Store) -> tuple[Any, ...]:
    """Everything a list change could touch, audit excluded."""
    rows = store.all_lists()
    return (
        rows,
        [store.get_state(list_id=r.id) for r in rows],
        [store.checkpoints(list_id=r.id) for r in rows],
        store.count_rows("entries"),
        store.count_rows("content"),
    )


def _refuse_audit(node: Node) -> None:
    """From here on the database refuses every audit insert (a trigger), as a full disk would."""
    url = node.store.shared_url
    assert url is not None
    engine = create_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER audit_refused BEFORE INSERT ON audit "
                    "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION audit_refused() RETURNS trigger AS $$ "
                    "BEGIN RAISE EXCEPTION 'audit refused'; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER audit_refused BEFORE INSERT ON audit "
                    "FOR EACH ROW EXECUTE FUNCTION audit_refused()"
                )
            )
    engine.dispose()


# Every writer function, each run against the node fixture's lists.
CHANGES: dict[str, Callable[[Node, ListRow, ListRow], object]] = {
    "create_local": lambda n, own, rec: writer.create_local(
        n.store, node_id=n.node_id, full_name="au-argos/new", label="baseline", actor="t"
    ),
    "create_received": lambda n, own, rec: writer.create_received(
        n.store, owner="nl-politie", name="new", label="baseline", description="", peer="p"
    ),
    "add": lambda n, own, rec: writer.add_hashes(
        n.store, node_id=n.node_id, row=own, items=[("md5", md5(99), "")], actor="t"
    ),
    "remove": lambda n, own, rec: writer.remove_hashes(
        n.store, node_id=n.node_id, row=own, items=[("md5", md5(1))], actor="t"
    ),
    "publish": lambda n, own, rec: writer.publish(
        n.store, node_id=n.node_id, row=own, signer=n.checkpoint_signer, actor="t"
    ),
    "heartbeat": lambda n, own, rec: writer.heartbeat(
        n.store, node_id=n.node_id, row=own, signer=n.checkpoint_signer, now=2_000_000_000, every=1
    ),
    "apply_verified": lambda n, own, rec: _apply(n, rec, _verified_entries(8), 4),
    "refresh": lambda n, own, rec: writer.refresh(
        n.store, row=rec, peer="nl-politie", accepted=(4, b"\x01" * 32, 2_000_000_000, "newer")
    ),
    "record_evidence": lambda n, own, rec: writer.record_evidence(
        n.store,
        row=rec,
        checkpoints=[(4, b"\x02" * 32, 1, "forked")],
        freeze_reason="fork",
        audit=("sync:p", "federation.fork", 4, {}),
    ),
    "set_frozen": lambda n, own, rec: writer.set_frozen(
        n.store, row=rec, reason="frozen by hand", actor="t"
    ),
    "add_cosignatures_to_latest": lambda n, own, rec: writer.add_cosignatures_to_latest(
        n.store,
        row=own,
        size=3,
        root_hash=n.store.latest_checkpoint(list_id=own.id).root_hash,  # type: ignore[union-attr]
        lines=[_witness_line(n, own)],
        actor="witness:w",
    ),
    "follow_metadata": lambda n, own, rec: writer.follow_metadata(
        n.store, row=rec, peer="nl-politie", label="restricted", description="new"
    ),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_whose_audit_record_fails_commits_nothing(node: Node, change: str) -> None:
    own = node.get_list(LIST)
    rec = _received(node)
    _apply(node, rec, _verified_entries(4), 0)
    before = _snapshot(node.store)
    audit_before = node.store.count_rows("audit")
    _refuse_audit(node)
    with pytest.raises((StoreError, DBAPIError)):
        CHANGES[change](node, own, get_list(node.store, RECEIVED))
    assert _snapshot(node.store) == before
    assert node.store.count_rows("audit") == audit_before


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_every_change_writes_its_audit_record(node: Node, change: str) -> None:
    own = node.get_list(LIST)
    rec = _received(node)
    _apply(node, rec, _verified_entries(4), 0)
    before = node.store.count_rows("audit")
    CHANGES[change](node, own, get_list(node.store, RECEIVED))
    assert node.store.count_rows("audit") == before + 1


# --- applying verified entries ------------------------------------------------------------------


def test_applying_the_same_verified_pull_twice_is_idempotent(node: Node) -> None:
    """Another process applied the same pull between our verification and our apply."""
    row = _received(node)
    entries = _verified_entries(10)
    first = _apply(node, row, entries, 0)
    assert (first.appended, first.size) == (10, 10)
    second = _apply(node, row, entries, 0)  # verified against the old, empty state
    assert (second.appended, second.size) == (0, 10)
    assert second.committed.start == second.committed.end == 10
    assert node.store.count_rows("entries") == 3 + 10
    assert len(node.store.checkpoints(list_id=row.id)) == 1


def test_a_verified_pull_partly_applied_meanwhile_appends_only_the_rest(node: Node) -> None:
    row = _received(node)
    entries = _verified_entries(10)
    _apply(node, row, entries[:6], 0)
    # Verified from size 2 (before the other process applied up to 6).
    done = _apply(node, row, entries, 2)
    assert (done.appended, done.skipped, done.size) == (4, 4, 10)
    assert (done.committed.start, done.committed.end) == (6, 10)
    assert [e[0] for e in node.store.iter_entries(list_id=row.id)] == list(range(10))
    content = {v for _t, v, _c in node.content(RECEIVED)}
    assert content == {e[3] for e in entries}


def test_a_stored_tree_off_the_verified_one_is_refused_and_kept(node: Node) -> None:
    """Entries stored meanwhile that are not the verified prefix are never written over."""
    row = _received(node)
    # Same hashes, another category: another leaf, another tree.
    other = [(s, o, t, v, "other", ts) for s, o, t, v, _c, ts in _verified_entries(6)]
    _apply(node, row, other, 0)
    before = _snapshot(node.store)
    with pytest.raises(StoreError):
        _apply(node, row, _verified_entries(10), 2)
    assert _snapshot(node.store) == before


def test_a_list_frozen_after_verification_takes_nothing(node: Node) -> None:
    """Another process saw a fork and froze the list between our verification and apply."""
    row = _received(node)
    entries = _verified_entries(6)
    _apply(node, row, entries[:3], 0)
    writer.set_frozen(node.store, row=row, reason="fork seen via another peer", actor="t")
    before = _snapshot(node.store)
    with pytest.raises(FrozenListError):
        _apply(node, row, entries, 3)
    assert _snapshot(node.store) == before


def test_removes_in_a_verified_pull_fold_against_stored_content(node: Node) -> None:
    row = _received(node)
    entries = _verified_entries(5)
    entries.append((5, "remove", "md5", entries[1][3], "B", 2))
    entries.append((6, "add", "md5", entries[1][3], "C", 3))
    entries.append((7, "remove", "md5", entries[2][3], "B", 4))
    _apply(node, row, entries[:5], 0)
    done = _apply(node, row, entries, 5)
    assert [(c.op, c.value, c.category) for c in done.changes] == [
        ("remove", entries[1][3], "B"),
        ("remove", entries[2][3], "B"),
        ("add", entries[1][3], "C"),
    ]
    assert node.store.get_state(list_id=row.id).live_count == 4


# --- writers wait -------------------------------------------------------------------------------


def _hold_list_lock(url: str, list_id: int, seconds: float, started: threading.Event) -> None:
    """Hold the list's write lock from another connection, as another process would."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.begin()
                conn.execute(
                    text("SELECT size FROM list_state WHERE list_id = :id FOR UPDATE"),
                    {"id": list_id},
                )
            started.set()
            time.sleep(seconds)
            conn.rollback() if engine.dialect.name != "sqlite" else conn.exec_driver_sql("COMMIT")
    finally:
        engine.dispose()


def test_a_writer_waits_for_the_list_lock_then_appends(node: Node) -> None:
    url = node.store.shared_url
    assert url is not None
    row = node.get_list(LIST)
    started = threading.Event()
    holder = threading.Thread(target=_hold_list_lock, args=(url, row.id, 0.5, started))
    holder.start()
    started.wait(5)
    t0 = time.monotonic()
    result = node.add_raw(LIST, [("md5", md5(50), "")], actor="tester")
    waited = time.monotonic() - t0
    holder.join()
    assert result.appended == 1
    assert waited >= 0.3


@pytest.mark.serial  # it measures time (see tests/conftest.py)
def test_a_writer_that_waits_past_the_timeout_gets_write_lock_timeout(
    node: Node, db_url: str
) -> None:
    store = Store.open(db_url, migrate=False, write_lock_timeout=0.3)
    try:
        row = get_list(store, LIST)
        before = _snapshot(store)
        started = threading.Event()
        holder = threading.Thread(target=_hold_list_lock, args=(db_url, row.id, 1.5, started))
        holder.start()
        started.wait(5)
        t0 = time.monotonic()
        with pytest.raises(WriteLockTimeoutError):
            writer.add_hashes(
                store, node_id="au-argos", row=row, items=[("md5", md5(51), "")], actor="t"
            )
        waited = time.monotonic() - t0
        holder.join()
        assert 0.2 <= waited < 1.4
        assert _snapshot(store) == before
    finally:
        store.close()


def test_concurrent_writers_on_separate_connections_all_land(node: Node, db_url: str) -> None:
    """Eight stores (as eight processes would have) add at once: none refused, none lost."""
    stores = [Store.open(db_url, migrate=False) for _ in range(8)]
    errors: list[BaseException] = []

    def add(store: Store, k: int) -> None:
        try:
            row = get_list(store, LIST)
            for j in range(5):
                writer.add_hashes(
                    store,
                    node_id="au-argos",
                    row=row,
                    items=[("md5", md5(100 + k * 10 + j), "")],
                    actor=f"w{k}",
                )
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(s, k)) for k, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert errors == []
    values = [e[3] for e in node.store.iter_entries(list_id=node.get_list(LIST).id)]
    assert len(values) == len(set(values)) == 3 + 40
    node.publish(LIST, actor="tester")
    assert [r.ok for r in node.verify(LIST)] == [True]
    assert node.store.get_state(list_id=node.get_list(LIST).id).live_count == 43


# --- one fold ----------------------------------------------------------------------------------


def test_fold_is_defined_once() -> None:
    """The content a log describes is computed by node.log.lists.fold and nothing else."""
    defined = []
    for package in ("node", "federation", "api"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(n, ast.FunctionDef) and n.name.startswith("fold"):
                    defined.append(f"{path.relative_to(ROOT).as_posix()}:{n.name}")
    assert defined == ["node/log/lists.py:fold"]


# --- group commit -------------------------------------------------------------------------------


def test_concurrent_adds_in_one_process_share_transactions_and_keep_their_own_results(
    node: Node,
) -> None:
    """32 callers at once, some adding the same hash: each gets what its own add did."""
    results: dict[int, Any] = {}
    barrier = threading.Barrier(32)

    def add(k: int) -> None:
        barrier.wait()
        # Callers 0..15 add one hash each; 16..31 repeat the hash of k - 16 plus one new one.
        items = [("md5", md5(200 + k % 16), "")] + ([("md5", md5(300 + k), "")] if k >= 16 else [])
        results[k] = node.add(LIST, items, actor=f"caller-{k}")

    audit_before = node.store.count_rows("audit")
    threads = [threading.Thread(target=add, args=(k,)) for k in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 32
    assert sum(r.appended for r in results.values()) == 16 + 16
    for k in range(16):  # of each pair, exactly one added the shared hash
        assert results[k].appended + results[k + 16].appended == 1 + 1
    spans = sorted((r.committed.start, r.committed.end) for r in results.values() if r.appended)
    assert spans[0][0] == 3
    assert spans[-1][1] == 3 + 32
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # contiguous, disjoint
    for r in results.values():
        assert r.appended == r.committed.end - r.committed.start == len(r.changes)
    writers = sum(1 for r in results.values() if r.appended)
    assert node.store.count_rows("audit") == audit_before + writers
    values = [e[3] for e in node.store.iter_entries(list_id=node.get_list(LIST).id)]
    assert len(values) == len(set(values)) == 3 + 32


def test_a_failed_group_commit_fails_every_caller_and_writes_nothing(node: Node) -> None:
    before = _snapshot(node.store)
    _refuse_audit(node)
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def add(k: int) -> None:
        barrier.wait()
        try:
            node.add(LIST, [("md5", md5(400 + k), "")], actor="t")
        except (StoreError, DBAPIError) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 8
    assert _snapshot(node.store) == before


WITNESS = CosignatureSigner("w", Ed25519PrivateKey.from_private_bytes(b"\x07" * 32))


def _witness_line(node: Node, row: ListRow) -> str:
    latest = node.store.latest_checkpoint(list_id=row.id)
    assert latest is not None
    text = latest.note[: latest.note.index("\n\n") + 1]
    return WITNESS.line(text, 1_700_000_000)


def test_a_witness_cosignature_is_stored_with_the_newest_checkpoint(node: Node) -> None:
    row = node.get_list(LIST)
    latest = node.store.latest_checkpoint(list_id=row.id)
    assert latest is not None
    line = _witness_line(node, row)
    args = {"row": row, "size": latest.size, "root_hash": latest.root_hash, "actor": "witness:w"}
    assert writer.add_cosignatures_to_latest(node.store, lines=[line], **args)
    now = node.store.latest_checkpoint(list_id=row.id)
    assert now is not None
    assert now.note == latest.note + line
    assert (now.size, now.root_hash, now.timestamp) == (
        latest.size,
        latest.root_hash,
        latest.timestamp,
    )
    open_note(now.note, [WITNESS.verifier()])  # the line verifies on the stored note
    # Twice is once; and not on a tree other than the newest.
    assert not writer.add_cosignatures_to_latest(node.store, lines=[line], **args)
    stale = {**args, "size": latest.size - 1}
    assert not writer.add_cosignatures_to_latest(node.store, lines=[line], **stale)


def test_the_heartbeat_keeps_witness_cosignatures_of_the_same_tree(node: Node) -> None:
    row = node.get_list(LIST)
    latest = node.store.latest_checkpoint(list_id=row.id)
    assert latest is not None
    line = _witness_line(node, row)
    writer.add_cosignatures_to_latest(
        node.store, row=row, size=latest.size, root_hash=latest.root_hash, lines=[line], actor="w"
    )
    signer = node.checkpoint_signer
    assert writer.heartbeat(
        node.store, node_id=node.node_id, row=row, signer=signer, now=2_000_000_000, every=0
    )
    beat = node.store.latest_checkpoint(list_id=row.id)
    assert beat is not None
    assert beat.timestamp == 2_000_000_000
    assert line in beat.note
    opened = open_note(beat.note, [*signer.verifiers(), WITNESS.verifier()])
    assert len(opened.verified_by) == 3
    # A new tree drops them: the witness has not seen it.
    node.add_raw(LIST, [("md5", md5(50), "A1")], actor="tester")
    node.publish(LIST, actor="tester")
    grown = node.store.latest_checkpoint(list_id=row.id)
    assert grown is not None
    assert grown.size == latest.size + 1
    assert line not in grown.note
