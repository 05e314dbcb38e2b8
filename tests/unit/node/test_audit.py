"""The audit log: every change leaves a record, no record holds a hash value,
and editing or deleting a record breaks the chain at that record."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from crypto.errors import NotInListError
from node.identity import audit
from node.identity.audit import check_chain, verify_audit_chain
from node.node import Node
from node.store import AUDIT_GENESIS, AuditRow

NodeFactory = Callable[..., Node]
LIST = "au-argos/series-7"
ADDED = [f"{i:02x}" * 32 for i in range(1, 5)]  # sha256
IMPORTED = [f"{i:02x}" * 16 for i in range(0xA0, 0xA6)]  # md5


@pytest.fixture
def node(node_factory: NodeFactory) -> Node:
    return node_factory("au-argos")


def _do_everything(node: Node, tmp_path: Path) -> None:
    node.create_list(LIST, label="restricted", actor="alice")
    node.add_raw(LIST, [("sha256", v.upper(), "A1") for v in ADDED], actor="bob")
    path = tmp_path / "import.csv"
    path.write_text("type,value,category\n" + "".join(f"md5,{v},B2\n" for v in IMPORTED))
    node.import_file(LIST, path, actor="carol")
    node.remove(LIST, [("sha256", ADDED[0]), ("md5", IMPORTED[0])], actor="dave")
    node.publish(LIST, actor="erin")


def _rows(node: Node) -> list[AuditRow]:
    return node.store.audit_records()


def test_every_action_leaves_a_record(node: Node, tmp_path: Path) -> None:
    _do_everything(node, tmp_path)
    got = [(r.actor, r.action, r.target, r.count) for r in _rows(node)]
    assert got == [
        ("alice", "list.create", LIST, 0),
        ("bob", "list.add", LIST, len(ADDED)),
        ("carol", "list.import", LIST, len(IMPORTED)),
        ("dave", "list.remove", LIST, 2),
        ("erin", "list.publish", LIST, len(ADDED) + len(IMPORTED) + 2),
    ]
    assert all(r.ts_ms > 0 for r in _rows(node))


def test_no_hash_value_anywhere_in_the_audit_table(node: Node, tmp_path: Path) -> None:
    _do_everything(node, tmp_path)
    with pytest.raises(NotInListError):  # a refusal must not leak the value either
        node.remove(LIST, [("md5", "ff" * 16)], actor="mallory")
    values = [*ADDED, *IMPORTED, "ff" * 16]
    raw_values = [bytes.fromhex(v) for v in values]
    with node.store.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM audit")).all()
    assert len(rows) == 5
    for row in rows:
        for cell in row:
            if isinstance(cell, bytes | memoryview):
                blob = bytes(cell)
                assert not any(r in blob for r in raw_values)
                cell = blob.hex()
            cell_text = str(cell).lower()
            for v in values:
                assert v not in cell_text
                assert v[:16] not in cell_text  # not even a prefix


def test_chain_verifies(node: Node, tmp_path: Path) -> None:
    _do_everything(node, tmp_path)
    result = verify_audit_chain(node.store)
    assert result.ok
    assert result.records == 5
    assert result.first_bad_id is None
    assert result.head == _rows(node)[-1].record_hash
    assert verify_audit_chain(node.store, page=2) == result


def test_empty_chain_verifies(node: Node) -> None:
    result = verify_audit_chain(node.store)
    assert (result.ok, result.records, result.head) == (True, 0, AUDIT_GENESIS)


def test_record_helper_appends_to_the_chain(node: Node) -> None:
    audit.record(
        node.store,
        actor="api:nl-politie",
        action="feed.pull",
        target="baseline",
        count=12,
        cursor=5,
    )
    [row] = _rows(node)
    assert (row.actor, row.action, row.target, row.count) == (
        "api:nl-politie",
        "feed.pull",
        "baseline",
        12,
    )
    assert '"cursor":5' in row.detail
    assert verify_audit_chain(node.store).ok


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("count", 999),
        ("actor", "mallory"),
        ("action", "list.nothing"),
        ("target", "x/y"),
        ("detail", "{}"),
        ("ts_ms", 1),
    ],
)
def test_edited_record_breaks_the_chain_at_that_record(
    node: Node, tmp_path: Path, column: str, value: object
) -> None:
    _do_everything(node, tmp_path)
    victim = _rows(node)[2]
    if getattr(victim, column) == value:
        value = "changed" if isinstance(value, str) else 12345
    with node.store.engine.begin() as conn:
        conn.execute(
            text(f"UPDATE audit SET {column} = :v WHERE id = :id"),  # noqa: S608
            {"v": value, "id": victim.id},
        )
    result = verify_audit_chain(node.store)
    assert not result.ok
    assert result.first_bad_id == victim.id
    assert result.records == 2  # the records before it are still good


def test_deleted_middle_record_breaks_the_chain_at_the_next(node: Node, tmp_path: Path) -> None:
    _do_everything(node, tmp_path)
    rows = _rows(node)
    with node.store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit WHERE id = :id"), {"id": rows[2].id})
    result = verify_audit_chain(node.store, page=2)
    assert not result.ok
    assert result.first_bad_id == rows[3].id


def test_rehashed_record_still_breaks_the_chain_at_the_next(node: Node, tmp_path: Path) -> None:
    """An editor who also recomputes the edited record's own hash is caught one step later."""
    from node.store import audit_record_hash

    _do_everything(node, tmp_path)
    rows = _rows(node)
    v = rows[1]
    new_hash = audit_record_hash(v.prev_hash, v.ts_ms, v.actor, v.action, v.target, 0, v.detail)
    with node.store.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit SET count = 0, record_hash = :h WHERE id = :id"),
            {"h": new_hash, "id": v.id},
        )
    result = verify_audit_chain(node.store)
    assert (result.ok, result.first_bad_id) == (False, rows[2].id)


def test_check_chain_is_pure(node: Node, tmp_path: Path) -> None:
    _do_everything(node, tmp_path)
    rows = _rows(node)
    assert check_chain(rows) == (None, rows[-1].record_hash)
    swapped = [rows[0], rows[2], rows[1], *rows[3:]]
    assert check_chain(swapped)[0] == rows[2].id
    edited = [*rows[:3], dataclasses.replace(rows[3], count=rows[3].count + 1), *rows[4:]]
    assert check_chain(edited)[0] == rows[3].id
    assert check_chain(rows[1:])[0] == rows[1].id  # a truncated head does not chain to genesis


# --- the buffer for high-rate records ---------------------------------------------------------


def test_buffer_sums_aggregated_records_and_keeps_every_other(node: Node) -> None:
    buffer = audit.AuditBuffer(node.store)  # not started: flushed by hand
    before = node.store.count_rows("audit")
    for _ in range(5):
        buffer.add(actor="partner-a", action="match", count=1, aggregate=True, hits=0, via="cert")
    buffer.add(actor="partner-a", action="match", count=100, aggregate=True, hits=0, via="token")
    buffer.add(actor="partner-b", action="match", count=7, aggregate=True, hits=0, via="cert")
    buffer.add(actor="partner-b", action="match", count=1, hits=1, via="cert")
    buffer.add(actor="partner-b", action="match", count=1, hits=1, via="cert")
    buffer.flush()

    rows = node.store.audit_records(after_id=0, limit=1000)[before:]
    got = sorted((r.actor, r.count, r.detail) for r in rows)
    assert got == [
        ("partner-a", 5, '{"hits":0,"requests":5,"via":"cert"}'),
        ("partner-a", 100, '{"hits":0,"requests":1,"via":"token"}'),
        ("partner-b", 1, '{"hits":1,"via":"cert"}'),
        ("partner-b", 1, '{"hits":1,"via":"cert"}'),
        ("partner-b", 7, '{"hits":0,"requests":1,"via":"cert"}'),
    ]
    assert verify_audit_chain(node.store).ok
    buffer.flush()  # nothing left: nothing written
    assert node.store.count_rows("audit") == before + 5


def test_a_batch_of_records_is_chained_in_order(node: Node) -> None:
    records = [("tester", f"action-{i}", "", i, {"n": i}) for i in range(300)]
    node.store.append_audit_many(records)
    node.store.append_audit_many(records[:3])
    rows = node.store.audit_records(after_id=0, limit=10_000)
    mine = [r for r in rows if r.actor == "tester"]
    assert [r.count for r in mine] == [*range(300), 0, 1, 2]
    assert verify_audit_chain(node.store).ok
