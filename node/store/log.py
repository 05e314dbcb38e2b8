"""The log and its materialised content: appends, entry and content scans."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    bindparam,
    delete,
    select,
    text,
    update,
)

from crypto.errors import StoreError
from node.store.audit import AuditQueries
from node.store.checkpoints import CheckpointQueries
from node.store.engine import _IN_BATCH, _values_by_type
from node.store.rows import (
    CheckpointRow,
    ContentTuple,
    EntryTuple,
    ListRow,
    StateRow,
)
from node.store.tables import (
    _checkpoints,
    _content,
    _entries,
    _lists,
    _state,
)

T = TypeVar("T")

# Statements of the write path, built once (building one costs more than
# running it on SQLite).
_STATE = select(_state.c.size, _state.c.compact_range, _state.c.live_count).where(
    _state.c.list_id == bindparam("list_id")
)
_STATE_FOR_UPDATE = _STATE.with_for_update()
_CONTENT_OF = select(
    _content.c.hash_type, _content.c.value, _content.c.category, _content.c.seq
).where(
    _content.c.list_id == bindparam("list_id"),
    _content.c.hash_type == bindparam("hash_type"),
    _content.c.value.in_(bindparam("values", expanding=True)),
)
_SET_STATE = (
    update(_state)
    .where(_state.c.list_id == bindparam("list_id_"))
    .values(
        size=bindparam("size"),
        compact_range=bindparam("compact_range"),
        live_count=bindparam("live_count"),
    )
)
# (actor, action, target, count, detail)
AuditTuple = tuple[str, str, str, int, dict[str, Any]]


@dataclass(frozen=True)
class ListChange:
    """Everything one transaction writes to one list; empty fields write nothing.

    ``checkpoints`` are ``(size, root_hash, timestamp, note, status)``;
    ``list_values`` update the list's metadata (label, description,
    source_peer, frozen_reason).
    """

    entries: Sequence[EntryTuple] = ()
    adds: Sequence[ContentTuple] = ()
    removes: Sequence[tuple[str, str]] = ()
    new_state: StateRow | None = None
    checkpoints: Sequence[tuple[int, bytes, int, str, str]] = ()
    list_values: Mapping[str, Any] = field(default_factory=dict)
    audit: AuditTuple | None = None
    audits: Sequence[AuditTuple] = ()  # several callers' records, chained in order


class ListTxn:
    """One list as seen inside its write transaction, under its lock."""

    def __init__(self, store: LogQueries, conn: Connection, list_id: int, state: StateRow):
        self._store = store
        self._conn = conn
        self.list_id = list_id
        self.state = state
        self._bulk = False

    def write(self, change: ListChange) -> None:
        """Write ``change`` now; more may follow in this transaction.

        A large import writes page by page, so memory holds one page and
        not the whole import; the plan's final change is written last.
        """
        self._bulk_cache(change)
        self._store._write_change(self._conn, self.list_id, change)

    def write_if_new(self, change: ListChange) -> bool:
        """As :meth:`write`, unless a hash ``change`` adds is in the list: then nothing, and False.

        For adds that are new but for rare repeats: one failed insert costs
        less than looking up every hash first.
        """
        self._bulk_cache(change)
        return self._store._write_change(self._conn, self.list_id, change, adds_if_new=True)

    def _bulk_cache(self, change: ListChange) -> None:
        if not self._bulk:
            self._bulk = self._store._bulk_cache_on(
                self._conn, len(change.entries) + len(change.adds)
            )

    def close(self) -> None:
        if self._bulk:
            self._store._bulk_cache_off(self._conn)
            self._bulk = False

    def row(self) -> ListRow:
        r = self._conn.execute(select(_lists).where(_lists.c.id == self.list_id)).one()
        return ListRow(**r._mapping)

    def content_of(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, int]]:
        """Which of ``keys`` the list holds: ``(category, seq of the add)`` each."""
        return self._store._content_of(self._conn, self.list_id, keys)

    def held_values(self, hash_type: str, values: Sequence[str]) -> set[str]:
        """Which of ``values`` of one type the list holds, this transaction's writes included."""
        return self._store._held_values(self._conn, self.list_id, hash_type, values)

    def latest_checkpoint(self) -> CheckpointRow | None:
        return self._store._latest_checkpoint(self._conn, self.list_id)

    def has_checkpoint(self, *, size: int, note: str) -> bool:
        """Whether this exact signed note is stored for this list (accepted or evidence)."""
        c = _checkpoints.c
        stmt = select(c.id).where(c.list_id == self.list_id, c.size == size, c.note == note)
        return self._conn.execute(stmt.limit(1)).first() is not None


_e = _entries.c
_ENTRIES_OF_KEYS = select(_e.hash_type, _e.value, _e.seq, _e.op, _e.timestamp_ms).where(
    _e.list_id == bindparam("list_id"),
    _e.hash_type == bindparam("hash_type"),
    _e.value.in_(bindparam("values", expanding=True)),
)
# SQLite without statistics guesses that a list has ~10 entries and walks
# the log by its primary key (a second per 500 keys at 1M), unless told.
_ENTRIES_OF_KEYS_SQLITE = text(
    "SELECT hash_type, value, seq, op, timestamp_ms FROM log_entry"
    " INDEXED BY ix_log_entry_key"
    " WHERE list_id = :list_id AND hash_type = :hash_type AND value IN :values"
).bindparams(bindparam("values", expanding=True))


# Membership of a page of values in one statement: SQLite's json_each
# feeds the primary key's search (bound parameters cap at 32,766), and
# PostgreSQL takes the page as one array.
_HELD_SQLITE = (
    "SELECT value FROM content WHERE list_id = ? AND hash_type = ?"
    " AND value IN (SELECT j.value FROM json_each(?) AS j)"
)
_HELD_POSTGRES = (
    "SELECT value FROM content WHERE list_id = %s AND hash_type = %s AND value = ANY(%s)"
)


def _in_key_order(adds: Sequence[ContentTuple]) -> list[ContentTuple]:
    """``(type, value, category, seq)`` rows in primary-key order.

    Sorted per type by value: comparing strings is ~4× faster than comparing
    tuples, which is seconds at a million rows.
    """
    by_type: dict[str, list[ContentTuple]] = {}
    for a in adds:
        by_type.setdefault(a[0], []).append(a)
    value = operator.itemgetter(1)
    return [a for htype in sorted(by_type) for a in sorted(by_type[htype], key=value)]


class LogQueries(AuditQueries, CheckpointQueries):
    def get_state(self, *, list_id: int, conn: Connection | None = None) -> StateRow:
        stmt = select(_state.c.size, _state.c.compact_range, _state.c.live_count).where(
            _state.c.list_id == list_id
        )
        if conn is not None:
            r = conn.execute(stmt).one()
        else:
            with self.read() as c:
                r = c.execute(stmt).one()
        return StateRow(r.size, bytes(r.compact_range), r.live_count)

    def change_list(
        self,
        *,
        list_id: int,
        plan: Callable[[ListTxn], tuple[ListChange | None, T]],
    ) -> T:
        """Change one list in one transaction, deciding on its state read under its lock.

        The list's lock is taken first (SQLite: the write lock at BEGIN;
        PostgreSQL: ``FOR UPDATE`` on its state row), then ``plan`` is called
        with the state and lookups inside the transaction; the
        :class:`ListChange` it returns is written, audit record included, and
        its second value returned. A ``None`` change writes nothing. Waiting
        for the lock is bounded (:class:`~crypto.errors.WriteLockTimeoutError`).
        """
        with self.write() as conn:
            lock = _STATE if self.is_sqlite else _STATE_FOR_UPDATE
            r = conn.execute(lock, {"list_id": list_id}).one_or_none()
            if r is None:
                raise StoreError(f"list {list_id} has no state row")
            state = StateRow(r.size, bytes(r.compact_range), r.live_count)
            txn = ListTxn(self, conn, list_id, state)
            try:
                change, result = plan(txn)
                if change is not None:
                    txn.write(change)
            finally:
                txn.close()
            return result

    def append(
        self,
        *,
        list_id: int,
        expected_size: int,
        entries: Sequence[EntryTuple],
        adds: Sequence[ContentTuple],
        removes: Sequence[tuple[str, str]],
        new_state: StateRow,
        checkpoints: Sequence[tuple[int, bytes, int, str, str]] = (),
        audit: AuditTuple | None = None,
    ) -> None:
        """Append precomputed entries if the list still has ``expected_size`` entries.

        A compare-and-append for callers that computed the change outside the
        transaction; the writer decides inside it instead (:meth:`change_list`).

        Raises:
            StoreError: the list's size is not ``expected_size``; nothing written.
        """

        def plan(txn: ListTxn) -> tuple[ListChange | None, None]:
            if txn.state.size != expected_size:
                raise StoreError(
                    f"list {list_id}: expected size {expected_size}, found {txn.state.size}"
                )
            change = ListChange(
                entries=entries,
                adds=adds,
                removes=removes,
                new_state=new_state,
                checkpoints=checkpoints,
                audit=audit,
            )
            return change, None

        self.change_list(list_id=list_id, plan=plan)

    def _write_change(
        self, conn: Connection, list_id: int, change: ListChange, *, adds_if_new: bool = False
    ) -> bool:
        """Write ``change``; with ``adds_if_new``, nothing (False) if one of its adds is held."""
        content_columns = ("list_id", "hash_type", "value", "category", "seq")
        # Key order turns B-tree inserts into appends: several times faster
        # for large imports on both backends.
        adds = ((list_id, *a) for a in _in_key_order(change.adds))
        if (
            adds_if_new
            and change.adds
            and not self._insert_if_new(conn, "content", content_columns, adds)
        ):
            return False
        if change.entries:
            self._bulk_insert(
                conn,
                "log_entry",
                ("list_id", "seq", "op", "hash_type", "value", "category", "timestamp_ms"),
                ((list_id, *e) for e in change.entries),
            )
        # Per type, ``value IN (...)``: SQLite answers a row-value IN of
        # (type, value) pairs with a scan of the whole list (8 s for 1,000
        # removals at 10M), this with primary-key searches.
        for htype, values in _values_by_type(change.removes).items():
            for i in range(0, len(values), _IN_BATCH):
                conn.execute(
                    delete(_content).where(
                        _content.c.list_id == list_id,
                        _content.c.hash_type == htype,
                        _content.c.value.in_(values[i : i + _IN_BATCH]),
                    )
                )
        if change.adds and not adds_if_new:
            self._bulk_insert(conn, "content", content_columns, adds)
        if change.new_state is not None:
            conn.execute(
                _SET_STATE,
                {
                    "list_id_": list_id,
                    "size": change.new_state.size,
                    "compact_range": change.new_state.compact_range,
                    "live_count": change.new_state.live_count,
                },
            )
        for cp in change.checkpoints:
            self._insert_checkpoint(conn, list_id, *cp)
        if change.list_values:
            allowed = {"label", "description", "source_peer", "frozen_reason"}
            if not set(change.list_values) <= allowed:
                raise ValueError(f"cannot update {set(change.list_values) - allowed}")
            conn.execute(update(_lists).where(_lists.c.id == list_id).values(**change.list_values))
        if change.audit is not None:
            self._append_audit(conn, *change.audit)
        if change.audits:
            self._append_audit_chain(conn, change.audits)
        return True

    def iter_entries(
        self, *, list_id: int, start: int = 0, end: int | None = None, page: int = 50_000
    ) -> Iterator[EntryTuple]:
        """Entries with ``start <= seq < end`` in seq order, read a page at a time."""
        for rows in self.iter_entry_pages(list_id=list_id, start=start, end=end, page=page):
            yield from rows

    def iter_entry_pages(
        self, *, list_id: int, start: int = 0, end: int | None = None, page: int = 65_536
    ) -> Iterator[list[EntryTuple]]:
        """As :meth:`iter_entries`, a page of up to ``page`` entries at a time.

        Raises:
            StoreError: an entry in the range is missing.
        """
        if end is None:
            end = self.get_state(list_id=list_id).size
        ph = "?" if self.is_sqlite else "%s"
        sql = (
            "SELECT seq, op, hash_type, value, category, timestamp_ms FROM log_entry "  # noqa: S608
            f"WHERE list_id = {ph} AND seq >= {ph} AND seq < {ph} ORDER BY seq"
        )
        pos = start
        while pos < end:
            upto = min(pos + page, end)
            # Plain driver tuples: this scan feeds verification and proofs a
            # million rows at a time.
            with self.read() as conn:
                cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    cur.execute(sql, (list_id, pos, upto))
                    rows = cur.fetchall()
                finally:
                    cur.close()
            if len(rows) != upto - pos:
                raise StoreError(
                    f"list {list_id}: entries {pos}..{upto - 1} are incomplete in the database"
                )
            yield list(rows)
            pos = upto

    def existing_content(
        self, *, list_id: int, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, int]]:
        """Which of ``keys`` the list holds now: ``(category, seq of the add)`` each."""
        # a row-value IN of (type, value) pairs made SQLite
        # scan the whole list per batch; content_of searches the primary key.
        return self.content_of(list_id=list_id, keys=keys)

    def iter_content(
        self, *, list_ids: Sequence[int] | None = None, page: int = 100_000
    ) -> Iterator[list[tuple[int, str, str, str]]]:
        """Current content as pages of ``(list_id, hash_type, value, category)``."""
        cols = (_content.c.list_id, _content.c.hash_type, _content.c.value, _content.c.category)
        stmt = select(*cols).order_by(_content.c.list_id, _content.c.hash_type, _content.c.value)
        if list_ids is not None:
            stmt = stmt.where(_content.c.list_id.in_(list_ids))
        return self._driver_pages(stmt, page)

    def iter_sorted_content(
        self, *, list_id: int, page: int = 65_536
    ) -> Iterator[list[tuple[str, str, str, int]]]:
        """A list's content as pages of ``(hash_type, value, category, seq)``, sorted."""
        c = _content.c
        cols = (c.hash_type, c.value, c.category, c.seq)
        stmt = select(*cols).where(c.list_id == list_id).order_by(*cols)
        return self._driver_pages(stmt, page)

    def iter_sorted_adds(
        self, *, list_id: int, end: int, page: int = 65_536
    ) -> Iterator[list[tuple[str, str, str, int]]]:
        """The add entries below ``end`` as :meth:`iter_sorted_content` pages, sorted alike.

        The database sorts: comparing a million of these with the content
        table is a C-level list comparison, page by page.
        """
        e = _entries.c
        cols = (e.hash_type, e.value, e.category, e.seq)
        stmt = select(*cols).where(e.list_id == list_id, e.seq < end, e.op == "add").order_by(*cols)
        return self._driver_pages(stmt, page)

    def removed_keys(self, *, list_id: int, start: int, end: int) -> set[tuple[str, str]]:
        """The ``(type, value)`` keys removed by an entry with ``start <= seq < end``."""
        e = _entries.c
        stmt = select(e.hash_type, e.value).where(
            e.list_id == list_id, e.seq >= start, e.seq < end, e.op == "remove"
        )
        return {(t, v) for page in self._driver_pages(stmt, 65_536) for t, v in page}

    def entries_of_keys(
        self, *, list_id: int, keys: Iterable[tuple[str, str]], end: int, start: int = 0
    ) -> dict[tuple[str, str], list[tuple[int, str, int]]]:
        """Every entry in ``[start, end)`` of each key: ``(seq, op, timestamp_ms)`` in seq order.

        A search of the key index (list_id, hash_type, value) per batch of
        values, never a scan of the log.
        """
        stmt = _ENTRIES_OF_KEYS_SQLITE if self.is_sqlite else _ENTRIES_OF_KEYS
        found: dict[tuple[str, str], list[tuple[int, str, int]]] = {}
        with self.read() as conn:
            for htype, values in _values_by_type(keys).items():
                for i in range(0, len(values), _IN_BATCH):
                    args = {
                        "list_id": list_id,
                        "hash_type": htype,
                        "values": values[i : i + _IN_BATCH],
                    }
                    for t, v, seq, op, ts in conn.execute(stmt, args):
                        if start <= seq < end:
                            found.setdefault((t, v), []).append((seq, op, ts))
        for events in found.values():
            events.sort()
        return found

    def log_is_adds_only(self, *, list_id: int, end: int) -> bool:
        """Whether every entry below ``end`` is an add."""
        e = _entries.c
        other = select(e.seq).where(e.list_id == list_id, e.seq < end, e.op != "add").limit(1)
        with self.read() as conn:
            return conn.execute(other).first() is None

    def content_of(
        self, *, list_id: int, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, int]]:
        """As ``existing_content``, but one ``hash_type = ? AND value IN (...)`` per type.

        SQLite does not use the primary key for a row-value ``IN`` of pairs: each
        batch of 500 scans the whole list (~0.3 s at 400k hashes). Per type,
        the lookup is a primary-key search: ~100x faster on large lists.
        """
        with self.read() as conn:
            return self._content_of(conn, list_id, keys)

    def _held_values(
        self, conn: Connection, list_id: int, hash_type: str, values: Sequence[str]
    ) -> set[str]:
        if not values:
            return set()
        with self._write_cursor(conn) as cur:
            if self.is_sqlite:
                cur.execute(_HELD_SQLITE, (list_id, hash_type, json.dumps(list(values))))
            else:
                cur.execute(_HELD_POSTGRES, (list_id, hash_type, list(values)))
            return {v for (v,) in cur.fetchall()}

    def _content_of(
        self, conn: Connection, list_id: int, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, int]]:
        by_type = _values_by_type(keys)
        found: dict[tuple[str, str], tuple[str, int]] = {}
        for htype, values in by_type.items():
            for i in range(0, len(values), _IN_BATCH):
                rows = conn.execute(
                    _CONTENT_OF,
                    {"list_id": list_id, "hash_type": htype, "values": values[i : i + _IN_BATCH]},
                )
                for t, v, c, seq in rows:
                    found[(t, v)] = (c, seq)
        return found
