"""The log and its materialised content: appends, entry and content scans."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    delete,
    select,
    update,
)

from crypto.errors import StoreError
from node.store.audit import AuditQueries
from node.store.checkpoints import CheckpointQueries
from node.store.engine import _IN_BATCH, _values_by_type
from node.store.rows import (
    ContentTuple,
    EntryTuple,
    StateRow,
)
from node.store.tables import (
    _content,
    _entries,
    _state,
)


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
        audit: tuple[str, str, str, int, dict[str, Any]] | None = None,
        progress: Any = None,
    ) -> None:
        """Append entries and their effect on content, state and checkpoints atomically.

        ``checkpoints`` are ``(size, root_hash, timestamp, note, status)``;
        ``audit`` is ``(actor, action, target, count, detail)``. Raises
        StoreError if the list grew since ``expected_size`` was read.
        """
        with self.write() as conn:
            lock = select(_state.c.size).where(_state.c.list_id == list_id)
            if not self.is_sqlite:
                lock = lock.with_for_update()
            size = conn.execute(lock).scalar_one()
            if size != expected_size:
                raise StoreError(
                    f"list {list_id} changed concurrently: expected size {expected_size}, "
                    f"found {size}; retry"
                )
            self._bulk_insert(
                conn,
                "log_entry",
                ("list_id", "seq", "op", "hash_type", "value", "category", "timestamp_ms"),
                ((list_id, *e) for e in entries),
                progress=progress,
            )
            # Per type, ``value IN (...)``: SQLite answers a row-value IN of
            # (type, value) pairs with a scan of the whole list (8 s for 1,000
            # removals at 10M), this with primary-key searches.
            for htype, values in _values_by_type(removes).items():
                for i in range(0, len(values), _IN_BATCH):
                    conn.execute(
                        delete(_content).where(
                            _content.c.list_id == list_id,
                            _content.c.hash_type == htype,
                            _content.c.value.in_(values[i : i + _IN_BATCH]),
                        )
                    )
            # Key order turns B-tree inserts into appends: several times faster
            # for large imports on both backends.
            self._bulk_insert(
                conn,
                "content",
                ("list_id", "hash_type", "value", "category", "seq"),
                ((list_id, *a) for a in sorted(adds)),
            )
            conn.execute(
                update(_state)
                .where(_state.c.list_id == list_id)
                .values(
                    size=new_state.size,
                    compact_range=new_state.compact_range,
                    live_count=new_state.live_count,
                )
            )
            for cp in checkpoints:
                self._insert_checkpoint(conn, list_id, *cp)
            if audit is not None:
                self._append_audit(conn, *audit)

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
        # [federation, issue 4] a row-value IN of (type, value) pairs made SQLite
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
        by_type = _values_by_type(keys)
        found: dict[tuple[str, str], tuple[str, int]] = {}
        cols = (_content.c.hash_type, _content.c.value, _content.c.category, _content.c.seq)
        with self.read() as conn:
            for htype, values in by_type.items():
                for i in range(0, len(values), _IN_BATCH):
                    rows = conn.execute(
                        select(*cols).where(
                            _content.c.list_id == list_id,
                            _content.c.hash_type == htype,
                            _content.c.value.in_(values[i : i + _IN_BATCH]),
                        )
                    )
                    for t, v, c, seq in rows:
                        found[(t, v)] = (c, seq)
        return found
