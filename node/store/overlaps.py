"""Overlaps between lists of different owners, and how far detection has got.

The detector (:mod:`node.overlaps`) records a batch of overlaps and moves
its per-list watermark in one transaction, so a restart resumes where the
last batch ended and finds nothing twice. A pair is stored with
``list_a < list_b``; the unique key makes recording idempotent, so two
processes detecting the same entries record each overlap once, and only
the process whose insert took it hears of it as new.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from node.store.engine import StoreBase
from node.store.tables import _overlap_marks, _overlaps

# Rows per insert statement: under SQLite's 32,766 bound variables (7 each).
_INSERT_CHUNK = 2_000


@dataclass(frozen=True)
class OverlapRow:
    """Entry ``seq_a`` of ``list_a`` overlaps entry ``seq_b`` of ``list_b``; ``list_a < list_b``."""

    list_a: int
    seq_a: int
    list_b: int
    seq_b: int
    hash_type: str
    distance: int
    found_ms: int
    id: int = 0


@dataclass(frozen=True)
class PairCount:
    list_a: int
    list_b: int
    count: int
    newest_ms: int


class OverlapQueries(StoreBase):
    def overlap_marks(self) -> dict[int, int]:
        """Per list, the log size overlap detection has covered."""
        with self.read() as conn:
            rows = conn.execute(select(_overlap_marks.c.list_id, _overlap_marks.c.seq)).all()
        return {int(lid): int(seq) for lid, seq in rows}

    def record_overlaps(
        self,
        *,
        overlaps: Sequence[OverlapRow],
        marks: Mapping[int, int],
        suppressed: Sequence[tuple[int, int]] = (),
    ) -> list[OverlapRow]:
        """Insert ``overlaps`` (those already known are skipped) and raise ``marks``.

        ``suppressed``: ``(list_id, seq)`` of entries now on an allow-list;
        every overlap they are a side of is deleted. Returns the overlaps
        this call inserted, with their ids.
        """
        new: list[OverlapRow] = []
        with self.write() as conn:
            self._delete_suppressed(conn, suppressed)
            for i in range(0, len(overlaps), _INSERT_CHUNK):
                new.extend(self._insert_new(conn, overlaps[i : i + _INSERT_CHUNK]))
            self._raise_marks(conn, marks)
        return new

    def _delete_suppressed(self, conn: Connection, entries: Sequence[tuple[int, int]]) -> None:
        by_list: dict[int, list[int]] = {}
        for lid, seq in entries:
            by_list.setdefault(lid, []).append(seq)
        c = _overlaps.c
        for lid, seqs in by_list.items():
            for i in range(0, len(seqs), _INSERT_CHUNK):
                part = seqs[i : i + _INSERT_CHUNK]
                conn.execute(
                    delete(_overlaps).where(
                        or_(
                            and_(c.list_a == lid, c.seq_a.in_(part)),
                            and_(c.list_b == lid, c.seq_b.in_(part)),
                        )
                    )
                )

    def _dialect_insert(self, table: object) -> object:
        return sqlite.insert(table) if self.is_sqlite else postgresql.insert(table)  # type: ignore[arg-type]

    def _insert_new(self, conn: Connection, chunk: Sequence[OverlapRow]) -> list[OverlapRow]:
        if not chunk:
            return []
        c = _overlaps.c
        stmt = (
            self._dialect_insert(_overlaps)
            .values(  # type: ignore[attr-defined]
                [
                    {
                        "list_a": o.list_a,
                        "seq_a": o.seq_a,
                        "list_b": o.list_b,
                        "seq_b": o.seq_b,
                        "hash_type": o.hash_type,
                        "distance": o.distance,
                        "found_ms": o.found_ms,
                    }
                    for o in chunk
                ]
            )
            .on_conflict_do_nothing(index_elements=["list_a", "seq_a", "list_b", "seq_b"])
            .returning(
                c.id, c.list_a, c.seq_a, c.list_b, c.seq_b, c.hash_type, c.distance, c.found_ms
            )
        )
        return [
            OverlapRow(
                r.list_a, r.seq_a, r.list_b, r.seq_b, r.hash_type, r.distance, r.found_ms, r.id
            )
            for r in conn.execute(stmt).all()
        ]

    def _raise_marks(self, conn: Connection, marks: Mapping[int, int]) -> None:
        if not marks:
            return
        c = _overlap_marks.c
        stmt = self._dialect_insert(_overlap_marks).values(  # type: ignore[attr-defined]
            [{"list_id": lid, "seq": seq} for lid, seq in marks.items()]
        )
        # Never lowered: another process may be further along.
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["list_id"],
                set_={"seq": func.max(c.seq, stmt.excluded.seq)}
                if self.is_sqlite
                else {"seq": func.greatest(c.seq, stmt.excluded.seq)},
            )
        )

    def overlap_pairs(
        self, *, list_ids: Iterable[int] | None = None, since_ms: int | None = None
    ) -> list[PairCount]:
        """Count and newest time per list pair, newest first; ``list_ids``: pairs touching one."""
        c = _overlaps.c
        stmt = select(c.list_a, c.list_b, func.count(), func.max(c.found_ms)).group_by(
            c.list_a, c.list_b
        )
        if list_ids is not None:
            ids = list(list_ids)
            stmt = stmt.where(or_(c.list_a.in_(ids), c.list_b.in_(ids)))
        if since_ms is not None:
            stmt = stmt.where(c.found_ms >= since_ms)
        with self.read() as conn:
            rows = conn.execute(stmt).all()
        out = [PairCount(int(a), int(b), int(n), int(t)) for a, b, n, t in rows]
        out.sort(key=lambda p: (-p.newest_ms, p.list_a, p.list_b))
        return out

    def overlaps_of_pair(
        self, *, list_a: int, list_b: int, since_ms: int | None = None, limit: int = 100
    ) -> list[OverlapRow]:
        """The newest ``limit`` overlaps of one pair (``list_a < list_b``)."""
        c = _overlaps.c
        stmt = select(_overlaps).where(c.list_a == list_a, c.list_b == list_b)
        if since_ms is not None:
            stmt = stmt.where(c.found_ms >= since_ms)
        stmt = stmt.order_by(c.found_ms.desc(), c.id.desc()).limit(limit)
        with self.read() as conn:
            rows = conn.execute(stmt).all()
        return [
            OverlapRow(
                r.list_a, r.seq_a, r.list_b, r.seq_b, r.hash_type, r.distance, r.found_ms, r.id
            )
            for r in rows
        ]
