"""node/store.py on every configured backend: lists, the log, content, checkpoints,
audit records, principals and tokens."""

from __future__ import annotations

import itertools
import sqlite3
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from crypto.errors import ListExistsError, StoreError
from crypto.merkle import CompactRange, leaf_hash
from node.identity.audit import verify_audit_chain
from node.log.entry import encode_leaf
from node.store import AUDIT_GENESIS, EntryTuple, ListRow, StateRow, Store
from node.store import engine as store_module
from node.store import log as log_module
from node.store.log import _in_key_order

EMPTY = CompactRange().to_bytes()


@pytest.fixture
def db(store: Store) -> Store:  # the conftest fixture, typed
    return store


@pytest.fixture
def lst(db: Store) -> ListRow:
    return db.create_list(owner="au-argos", name="s1", label="baseline", empty_range=EMPTY)


def _state_after(entries: list[EntryTuple], live: int) -> StateRow:
    cr = CompactRange()
    cr.extend(leaf_hash(encode_leaf(*e)) for e in entries)
    return StateRow(cr.size, cr.to_bytes(), live)


def _add(db: Store, row: ListRow, values: list[str], *, start: int = 0, ts: int = 1) -> None:
    entries: list[EntryTuple] = [
        (start + i, "add", "md5", v, "A1", ts) for i, v in enumerate(values)
    ]
    db.append(
        list_id=row.id,
        expected_size=start,
        entries=entries,
        adds=[(t, v, c, s) for s, _o, t, v, c, _ts in entries],
        removes=(),
        new_state=StateRow(start + len(values), b"", 0),
    )


def _v(i: int) -> str:
    return f"{i:032x}"


# --- opening -------------------------------------------------------------------------------


def test_open_unreachable_database_is_a_store_error() -> None:
    with pytest.raises(StoreError):
        Store.open("postgresql+psycopg://nobody@127.0.0.1:1/none")


def test_open_twice_is_idempotent(db_url: str) -> None:
    Store.open(db_url).close()
    again = Store.open(db_url)
    try:
        assert again.all_lists() == []
    finally:
        again.close()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(db: Store) -> None:
    if not db.is_sqlite:
        pytest.skip("SQLite only")
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


# --- lists ------------------------------------------------------------------------------------


def test_create_and_read_lists(db: Store, lst: ListRow) -> None:
    other = db.create_list(
        owner="au-argos", name="a0", label="private", description="d", empty_range=EMPTY
    )
    remote = db.create_list(
        owner="nl-politie",
        name="x",
        label="baseline",
        local=False,
        source_peer="nl-politie",
        empty_range=EMPTY,
    )
    assert db.get_list(owner="au-argos", name="s1") == lst
    assert db.get_list_by_id(other.id) == other
    assert db.get_list(owner="au-argos", name="nope") is None
    assert db.get_list_by_id(10_000) is None
    assert [r.full_name for r in db.all_lists()] == ["au-argos/a0", "au-argos/s1", "nl-politie/x"]
    assert (remote.local, remote.source_peer, remote.frozen_reason) == (False, "nl-politie", None)
    state = db.get_state(list_id=lst.id)
    assert (state.size, state.compact_range, state.live_count) == (0, EMPTY, 0)


def test_duplicate_list_is_list_exists_error(db: Store, lst: ListRow) -> None:
    with pytest.raises(ListExistsError):
        db.create_list(owner="au-argos", name="s1", label="other", empty_range=EMPTY)
    assert db.count_rows("lists") == 1


def test_update_list_metadata_only(db: Store, lst: ListRow) -> None:
    db.update_list(list_id=lst.id, frozen_reason="fork at size 3", label="restricted")
    row = db.get_list_by_id(lst.id)
    assert row is not None
    assert (row.frozen_reason, row.label) == ("fork at size 3", "restricted")
    with pytest.raises(ValueError):  # noqa: PT011  (a programming error)
        db.update_list(list_id=lst.id, owner="someone-else")


# --- the log ----------------------------------------------------------------------------------


def test_append_then_read_entries_in_pages(db: Store, lst: ListRow) -> None:
    entries: list[EntryTuple] = [
        (i, "add" if i % 3 else "remove", "md5", _v(i), "A1" if i % 2 else "", 2**62 + i)
        for i in range(10)
    ]
    db.append(
        list_id=lst.id,
        expected_size=0,
        entries=entries,
        adds=[],
        removes=(),
        new_state=_state_after(entries, 0),
    )
    assert list(db.iter_entries(list_id=lst.id)) == entries
    assert list(db.iter_entries(list_id=lst.id, page=3)) == entries
    assert list(db.iter_entries(list_id=lst.id, start=4, end=7, page=2)) == entries[4:7]
    assert list(db.iter_entries(list_id=lst.id, start=10)) == []
    state = db.get_state(list_id=lst.id)
    assert state == _state_after(entries, 0)


def test_large_seq_and_timestamps_fit(db: Store, lst: ListRow) -> None:
    entries: list[EntryTuple] = [(0, "add", "sha256", "ab" * 32, "", 2**63 - 1)]
    db.append(
        list_id=lst.id,
        expected_size=0,
        entries=entries,
        adds=[("sha256", "ab" * 32, "", 0)],
        removes=(),
        new_state=_state_after(entries, 1),
    )
    assert list(db.iter_entries(list_id=lst.id)) == entries


def test_missing_entry_row_is_a_store_error(db: Store, lst: ListRow) -> None:
    _add(db, lst, [_v(i) for i in range(5)])
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM log_entry WHERE seq = 2"))
    with pytest.raises(StoreError):
        list(db.iter_entries(list_id=lst.id))
    with pytest.raises(StoreError):
        list(db.iter_entries(list_id=lst.id, page=2))


def test_stale_expected_size_is_refused_and_writes_nothing(db: Store, lst: ListRow) -> None:
    _add(db, lst, [_v(0), _v(1)])
    before = (db.count_rows("entries"), db.count_rows("content"), db.count_rows("audit"))
    for stale in (0, 1, 3):
        with pytest.raises(StoreError):
            db.append(
                list_id=lst.id,
                expected_size=stale,
                entries=[(stale, "add", "md5", _v(9), "", 1)],
                adds=[("md5", _v(9), "", stale)],
                removes=(),
                new_state=StateRow(stale + 1, b"x", 1),
                audit=("tester", "list.add", "au-argos/s1", 1, {}),
            )
    assert (db.count_rows("entries"), db.count_rows("content"), db.count_rows("audit")) == before
    assert db.get_state(list_id=lst.id).size == 2


def test_failed_append_rolls_back_everything(db: Store, lst: ListRow) -> None:
    _add(db, lst, [_v(0)])
    state = db.get_state(list_id=lst.id)
    with pytest.raises((StoreError, IntegrityError, sqlite3.IntegrityError, psycopg.Error)):
        db.append(
            list_id=lst.id,
            expected_size=1,
            entries=[(1, "add", "md5", _v(1), "", 1), (2, "add", "md5", _v(0), "", 1)],
            adds=[("md5", _v(1), "", 1), ("md5", _v(0), "", 2)],  # _v(0) is held already
            removes=(),
            new_state=StateRow(3, b"x", 3),
            audit=("tester", "list.add", "au-argos/s1", 2, {}),
        )
    assert db.get_state(list_id=lst.id) == state
    assert db.count_rows("entries") == 1
    assert db.count_rows("content") == 1
    assert db.count_rows("audit") == 0


def test_constraint_violation_in_append_is_a_store_error(db: Store, lst: ListRow) -> None:
    _add(db, lst, [_v(0)])
    with pytest.raises(StoreError):
        db.append(
            list_id=lst.id,
            expected_size=1,
            entries=[(1, "add", "md5", _v(1), "", 1), (1, "add", "md5", _v(2), "", 1)],
            adds=[],
            removes=(),
            new_state=StateRow(2, b"x", 2),
        )


def _cache_size(db: Store) -> int:
    with db.read() as conn:
        return int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())


def test_large_write_gets_a_larger_cache_then_gives_it_back(
    db: Store, lst: ListRow, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not db.is_sqlite:
        pytest.skip("PostgreSQL has no per-connection page cache to size")
    monkeypatch.setattr(store_module, "_BULK_ROWS", 8)
    seen: list[int] = []
    real_write_change = db._write_change

    def spy(conn: Any, list_id: int, change: Any) -> None:
        seen.append(int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one()))
        real_write_change(conn, list_id, change)

    monkeypatch.setattr(db, "_write_change", spy)
    _add(db, lst, [_v(i) for i in range(2)])  # small: the default cache
    _add(db, lst, [_v(i) for i in range(2, 12)], start=2)  # large
    with pytest.raises(StoreError):  # large and failing: given back too
        _add(db, lst, [_v(i) for i in range(12, 22)] + [_v(0)], start=12)
    assert seen == [
        -store_module._DEFAULT_CACHE_KIB,
        -store_module._BULK_CACHE_KIB,
        -store_module._BULK_CACHE_KIB,
    ]
    assert _cache_size(db) == -store_module._DEFAULT_CACHE_KIB
    assert db.count_rows("content") == 12  # the failed write left nothing


@given(
    st.lists(
        st.tuples(st.sampled_from(["md5", "sha1", "sha256", "pdq"]), st.text(max_size=4)),
        unique=True,
    )
)
def test_content_rows_are_written_in_primary_key_order(keys: list[tuple[str, str]]) -> None:
    adds = [(t, v, "c", seq) for seq, (t, v) in enumerate(keys)]
    assert _in_key_order(adds) == sorted(adds)


# --- content --------------------------------------------------------------------------------------


def test_content_follows_adds_and_removes(db: Store, lst: ListRow) -> None:
    _add(db, lst, [_v(i) for i in range(4)])
    db.append(
        list_id=lst.id,
        expected_size=4,
        entries=[(4, "remove", "md5", _v(1), "A1", 2)],
        adds=(),
        removes=[("md5", _v(1))],
        new_state=StateRow(5, b"", 3),
    )
    pages = list(db.iter_content(list_ids=[lst.id]))
    assert [row for page in pages for row in page] == [
        (lst.id, "md5", _v(i), "A1") for i in (0, 2, 3)
    ]


def test_existing_content_across_in_batches(db: Store, lst: ListRow) -> None:
    values = [_v(i) for i in range(1200)]  # more than one IN batch of 500
    _add(db, lst, values[::2])
    found = db.existing_content(list_id=lst.id, keys=[("md5", v) for v in values])
    assert set(found) == {("md5", v) for v in values[::2]}
    assert found[("md5", values[10])] == ("A1", 5)
    assert db.existing_content(list_id=lst.id, keys=[]) == {}


def test_content_is_per_list(db: Store, lst: ListRow) -> None:
    other = db.create_list(owner="au-argos", name="s2", label="baseline", empty_range=EMPTY)
    _add(db, lst, [_v(1)])
    _add(db, other, [_v(2)])
    assert db.existing_content(list_id=other.id, keys=[("md5", _v(1))]) == {}
    all_rows = [r for page in db.iter_content(page=1) for r in page]
    assert all_rows == [(lst.id, "md5", _v(1), "A1"), (other.id, "md5", _v(2), "A1")]


# --- checkpoints ----------------------------------------------------------------------------------


def test_latest_checkpoint_prefers_size_then_time(db: Store, lst: ListRow) -> None:
    assert db.latest_checkpoint(list_id=lst.id) is None
    db.add_checkpoint(list_id=lst.id, size=2, root_hash=b"\x02" * 32, timestamp=100, note="n1")
    db.add_checkpoint(list_id=lst.id, size=3, root_hash=b"\x03" * 32, timestamp=90, note="n2")
    db.add_checkpoint(list_id=lst.id, size=3, root_hash=b"\x03" * 32, timestamp=95, note="n3")
    db.add_checkpoint(
        list_id=lst.id, size=9, root_hash=b"\x09" * 32, timestamp=99, note="fork", status="evidence"
    )
    latest = db.latest_checkpoint(list_id=lst.id)
    assert latest is not None
    assert (latest.size, latest.timestamp, latest.note, latest.root_hash) == (
        3,
        95,
        "n3",
        b"\x03" * 32,
    )
    at2 = db.checkpoint_at(list_id=lst.id, size=2)
    assert at2 is not None
    assert at2.note == "n1"
    assert db.checkpoint_at(list_id=lst.id, size=9) is None  # evidence is not accepted
    assert [c.note for c in db.checkpoints(list_id=lst.id)] == ["n1", "n2", "n3", "fork"]
    assert [c.note for c in db.checkpoints(list_id=lst.id, status="evidence")] == ["fork"]


def test_checkpoint_written_with_append_is_atomic(db: Store, lst: ListRow) -> None:
    entries: list[EntryTuple] = [(0, "add", "md5", _v(0), "", 1)]
    st = _state_after(entries, 1)
    root = CompactRange.from_bytes(st.compact_range).root()
    db.append(
        list_id=lst.id,
        expected_size=0,
        entries=entries,
        adds=[("md5", _v(0), "", 0)],
        removes=(),
        new_state=st,
        checkpoints=[(1, root, 1234, "note", "accepted")],
    )
    cp = db.latest_checkpoint(list_id=lst.id)
    assert cp is not None
    assert (cp.size, cp.root_hash, cp.timestamp) == (1, root, 1234)


# --- audit ----------------------------------------------------------------------------------------


def test_audit_records_chain_and_page(db: Store) -> None:
    for i in range(5):
        db.append_audit(actor=f"a{i}", action="test", target="t", count=i, detail={"i": i})
    rows = db.audit_records()
    assert [r.count for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0].prev_hash == AUDIT_GENESIS
    for prev, cur in itertools.pairwise(rows):
        assert cur.prev_hash == prev.record_hash
    assert [r.count for r in db.audit_records(after_id=rows[1].id, limit=2)] == [2, 3]
    result = verify_audit_chain(db, page=2)
    assert (result.ok, result.records, result.head) == (True, 5, rows[-1].record_hash)


# --- principals and tokens ------------------------------------------------------------------------


def test_principals_and_tokens(db: Store) -> None:
    p = db.add_principal(
        name="nl-politie",
        role="peer",
        labels=["restricted", "baseline", "baseline"],
        cert_fingerprint="sha256:" + "ab" * 32,
    )
    assert p.labels == frozenset({"baseline", "restricted"})
    assert db.get_principal(cert_fingerprint="sha256:" + "ab" * 32) == p
    with pytest.raises(StoreError):
        db.add_principal(name="nl-politie", role="peer", labels=[], cert_fingerprint=None)
    with pytest.raises(ValueError):  # noqa: PT011
        db.get_principal()

    db.add_token(principal_id=p.id, token_hash="h1", prefix="hf_1", scopes="match", expires_ms=None)
    db.add_token(principal_id=p.id, token_hash="h2", prefix="hf_2", scopes="feeds", expires_ms=1)
    found = db.principal_for_token(token_hash="h1")
    assert found is not None
    assert found == (p, "match")
    assert db.principal_for_token(token_hash="h2") is None  # expired
    assert db.principal_for_token(token_hash="nope") is None
    assert db.revoke_tokens(prefix="hf_1") == 1
    assert db.principal_for_token(token_hash="h1") is None

    assert db.remove_principal(name="nl-politie")
    assert not db.remove_principal(name="nl-politie")
    assert db.all_principals() == []


# --- helpers --------------------------------------------------------------------------------------


def test_count_rows(db: Store, lst: ListRow) -> None:
    _add(db, lst, [_v(0), _v(1)])
    counts: dict[str, Any] = {t: db.count_rows(t) for t in ("entries", "content", "lists", "audit")}
    assert counts == {"entries": 2, "content": 2, "lists": 1, "audit": 0}


def test_entries_of_keys_searches_the_key_index_on_sqlite(db: Store, lst: ListRow) -> None:
    if not db.is_sqlite:
        pytest.skip("the plan asked of SQLite only")
    _add(db, lst, [_v(i) for i in range(100)])
    stmt = log_module._ENTRIES_OF_KEYS_SQLITE
    compiled = stmt.compile(dialect=db.engine.dialect)
    args = {"list_id": lst.id, "hash_type": "md5", "values": [_v(1), _v(2)]}
    with db.read() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + str(compiled).replace("(__[POSTCOMPILE_values])", "(?, ?)"),
            (args["list_id"], args["hash_type"], *args["values"]),
        ).fetchall()
    assert any("ix_log_entry_key" in str(row) for row in plan), plan
