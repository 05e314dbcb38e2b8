"""PdqIndex: exact Hamming range search over PDQ codes, updated in place.

Layout. Every (code, ref) pair added is one *row*, numbered in the order added
and stored in an append-only buffer (``words`` ``(capacity, 4)`` uint64 and
``refs``). Rows ``[0, main)`` are covered by the multi-index tables
(:mod:`._mih`); rows ``[main, total)`` are the *delta*, scanned by brute force
(2-3 ns per row and query). Removing marks rows dead (a sorted id array) and
queries drop dead rows; a later merge compacts them away.

Concurrency. The state is one immutable :class:`_Snapshot`; a query reads
``self._snap`` once and works on it, so it never takes a lock and never sees a
half-done change. Writers take ``_lock``, build the next snapshot and assign it
(one reference store, atomic under the GIL). Appending writes rows past the
old ``total``, which no existing snapshot reads. :meth:`PdqIndex.merge` builds
new tables off to the side, holding only ``_merge_lock``, and takes ``_lock``
just to swap them in. Row ids never change in an ordinary merge; a compacting
merge renumbers rows, so it logs the changes made while it ran and replays
them onto the new snapshot under the lock.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from node.match.index._hamming import (
    HitParts,
    Hits,
    as_words,
    check_radius,
    check_refs,
    empty_hits,
    equal_rows,
    hit_order,
    order_hits,
    scan,
    within,
)
from node.match.index._mih import (
    MAX_RADIUS,
    MAX_ROWS,
    MihTables,
    Plan,
    plan,
    substrings,
    table_bits,
)

# A delta this large costs a query ~0.1 ms of scanning (2.5-3 ns per row):
# time to merge.
_DELTA_SOFT = 1 << 15
# Past this, add() merges by itself, so a caller that never merges still gets
# bounded queries (<= ~0.8 ms of scan) and, at 10 M rows (a merge takes ~1-2 s),
# still >= 130 k adds/s.
_DELTA_HARD = 1 << 18
# Batches at least this large scan the delta through temporary tables
# (built once per snapshot) instead of one scan per query.
_DELTA_TABLE_BATCH = 256
_DELTA_TABLE_MIN = 1 << 12
# Candidates per query above which a scan is cheaper: a candidate costs ~30 ns
# (a random gather), a scanned row ~3 ns.
_CANDIDATE_FLOOR = 1 << 16
# Queries per vectorised step: ~2,300 probes each keeps temporaries near 10 MB.
_QUERY_CHUNK = 64
# Grow the row buffer by 1/16: spare capacity is memory too (40 B per row).
_GROWTH_SHIFT = 4
# Spare rows the background merge keeps ahead of adds, at the least.
_MIN_SPARE = 1 << 16
# Threads for big batches: the box has 2 cores; more only adds contention.
_WORKERS = min(2, os.cpu_count() or 1)
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


@dataclass(slots=True)
class _Snapshot:
    """One consistent state. Never mutated after publication except ``cache``."""

    words: NDArray[np.uint64]
    refs: NDArray[np.int64]
    total: int
    tables: MihTables | None
    dead: NDArray[np.int64]
    # Words 0 and 1 of the delta rows, column-major (2, capacity): the scan's
    # prefilter reads them 2x faster than strided columns of ``words``.
    head: NDArray[np.uint64]
    # Lazily built tables over the delta for big batches; a benign race at
    # worst builds them twice.
    cache: list[MihTables] = field(default_factory=list)

    @property
    def main(self) -> int:
        return self.tables.rows if self.tables is not None else 0


def _empty_snapshot() -> _Snapshot:
    return _fresh(np.empty((0, 4), dtype=np.uint64), np.empty(0, dtype=np.int64), None)


def _fresh(
    words: NDArray[np.uint64], refs: NDArray[np.int64], tables: MihTables | None
) -> _Snapshot:
    """A snapshot of exactly these rows, no dead rows, tables (if any) over all of them."""
    return _Snapshot(
        words=words,
        refs=refs,
        total=len(words),
        tables=tables,
        dead=np.empty(0, dtype=np.int64),
        head=np.empty((2, 0), dtype=np.uint64),
    )


class PdqIndex:
    """Exact range search over 256-bit PDQ codes, each with an int64 ref.

    The same code may be added under several refs; every (code, ref) pair is
    a hit. ``add`` and ``remove`` are visible to queries as soon as they
    return. ``merge`` folds the delta into the tables without blocking
    queries; call it from a background thread when :attr:`needs_merge`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._merge_lock = threading.Lock()
        self._snap = _empty_snapshot()
        # Changes made while a compacting merge runs, replayed after it.
        self._log: list[tuple[bool, NDArray[np.uint64], NDArray[np.int64]]] | None = None

    @classmethod
    def from_arrays(cls, codes: NDArray[np.uint8], refs: NDArray[np.int64]) -> PdqIndex:
        """An index over ``codes`` built in one pass (no delta)."""
        index = cls()
        words = as_words(codes).copy()
        ref_arr = check_refs(refs, len(words)).copy()
        index._snap = _fresh(words, ref_arr, MihTables.build(words))
        return index

    def __len__(self) -> int:
        snap = self._snap
        return snap.total - len(snap.dead)

    # --- segments (node/match/index/segment.py) ---------------------------------------------

    def live_rows(self) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
        """Words ``(n, 4)`` and refs of the live rows, in row order (one snapshot)."""
        snap = self._snap
        words, refs = snap.words[: snap.total], snap.refs[: snap.total]
        if len(snap.dead):
            alive = np.ones(snap.total, dtype=bool)
            alive[snap.dead] = False
            words, refs = words[alive], refs[alive]
        return words, refs

    def segment_arrays(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """The live rows and tables over all of them: ``(params, arrays)`` for a segment."""
        snap = self._snap
        if not len(snap.dead) and snap.tables is not None and snap.main == snap.total:
            words, refs, tables = snap.words[: snap.total], snap.refs[: snap.total], snap.tables
        else:
            words, refs = self.live_rows()
            tables = MihTables.build(words)
        return segment_parts(words, refs, tables)

    @classmethod
    def from_segment(cls, params: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> PdqIndex:
        """An index over the (memory-mapped, read-only) segment arrays.

        Only :meth:`remove` may be called on it (it marks rows dead, no
        copy): :class:`~node.match.index.mapped.MappedPdqIndex` keeps adds in
        a separate in-memory index so the shared arrays stay shared.

        Raises:
            ValueError: the arrays do not fit together.
        """
        index = cls()
        words, refs = arrays["words"], arrays["refs"]
        n = len(words)
        bits, rows = int(params["bits"]), int(params["rows"])
        tables = MihTables(
            bits,
            rows,
            arrays["coarse"],
            arrays["fine"],
            arrays["ids"],
            arrays["heavy"],
            arrays["heavy_fine"],
        )
        buckets = 11 << bits
        if (
            rows != n
            or words.shape != (n, 4)
            or words.dtype != np.uint64
            or refs.shape != (n,)
            or refs.dtype != np.int64
            or tables.ids.shape != (11 * n,)
            or tables.fine.shape != (buckets + 1,)
            or tables.coarse.shape != (buckets // 64 + 1,)
            or int(tables.coarse[-1]) != 11 * n
        ):
            raise ValueError("segment arrays do not fit a PDQ index")
        index._snap = _fresh(words, refs, tables)
        return index

    @property
    def needs_merge(self) -> bool:
        """True when the delta or the dead rows are big enough to merge."""
        snap = self._snap
        return snap.total - snap.main >= _DELTA_SOFT or _needs_compaction(snap)

    def memory_bytes(self) -> int:
        """Bytes held by codes, refs, tables, dead-row ids and delta helpers.

        Spare buffer capacity counts: the buffer grows by 1/16 at a time.
        """
        snap = self._snap
        tables = [snap.tables, *snap.cache] if snap.tables is not None else snap.cache
        arrays = (snap.words, snap.refs, snap.dead, snap.head)
        return sum(a.nbytes for a in arrays) + sum(t.nbytes for t in tables)

    def add(self, codes: NDArray[np.uint8], refs: NDArray[np.int64]) -> None:
        """Add one row per (code, ref); visible to queries when this returns."""
        words = as_words(codes)
        ref_arr = check_refs(refs, len(words))
        if not len(words):
            return
        with self._lock:
            self._snap = _append(self._snap, words, ref_arr)
            if self._log is not None:
                self._log.append((True, words.copy(), ref_arr.copy()))
            too_big = self._snap.total - self._snap.main >= _DELTA_HARD
        if too_big:
            self.merge()

    def remove(self, codes: NDArray[np.uint8], refs: NDArray[np.int64]) -> None:
        """Remove every row equal to a given (code, ref) pair; missing pairs are ignored."""
        words = as_words(codes)
        ref_arr = check_refs(refs, len(words))
        if not len(words):
            return
        with self._lock:
            self._snap = _kill(self._snap, words, ref_arr)
            if self._log is not None:
                self._log.append((False, words.copy(), ref_arr.copy()))

    def search(
        self, queries: NDArray[np.uint8], max_distance: int = 31
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int32]]:
        """Every ``(query_index, ref, distance)`` with distance <= ``max_distance``.

        Exact for every distance: up to 32 through the tables, beyond by a
        scan. Hits are ordered by query index, then distance, then ref.

        Raises:
            ValueError: ``queries`` is not uint8 ``(n, 32)`` or the distance is negative.
        """
        qwords = as_words(queries)
        radius = check_radius(max_distance)
        snap = self._snap
        q, rows, dist = _search_rows(snap, qwords, radius)
        return order_hits(q, snap.refs[rows], dist)

    def search_codes(
        self, queries: NDArray[np.uint8], max_distance: int = 31
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int32], NDArray[np.uint8]]:
        """As :meth:`search`, plus each hit's stored code (uint8 ``(k, 32)``).

        A near hit is only verifiable with the code it matched; reading it
        from the snapshot the search used costs one gather per hit.

        Raises:
            ValueError: as :meth:`search`.
        """
        qwords = as_words(queries)
        radius = check_radius(max_distance)
        snap = self._snap
        q, rows, dist = _search_rows(snap, qwords, radius)
        order = hit_order(q, snap.refs[rows], dist)
        if order is not None:
            q, rows, dist = q[order], rows[order], dist[order]
        words = np.ascontiguousarray(snap.words[rows], dtype="<u8")
        codes = words.view(np.uint8).reshape(len(rows), 32)
        return q, snap.refs[rows], dist, codes

    def merge(self) -> None:
        """Fold the delta into the tables; compact dead rows when there are many.

        Queries, adds and removes go on while this runs; it holds the write
        lock only to swap the result in.
        """
        with self._merge_lock:
            self._grow_ahead()
            snap = self._snap
            if _needs_compaction(snap) or (
                snap.tables is not None and table_bits(snap.total) > snap.tables.bits
            ):
                self._rebuild()
                return
            if snap.total == snap.main:
                return
            if snap.tables is None:
                tables = MihTables.build(snap.words[: snap.total])
            else:
                tables = snap.tables.extend(snap.words[snap.main : snap.total])
            with self._lock:
                # Row ids and dead ids are stable: only the tables and the
                # delta's head columns change.
                now = self._snap
                head = np.ascontiguousarray(now.words[tables.rows : now.total, :2].T)
                self._snap = replace(now, tables=tables, head=head, cache=[])

    def _grow_ahead(self) -> None:
        """Give the row buffer spare room here, off the path of adds.

        Growing copies every row (0.1-1 s at 10M codes); done by an add, it
        would delay the hashes that add makes matchable. The merge thread
        grows the buffer when less than half the spare room is left, so an
        add copies only when a burst outruns the room between two merges.
        """
        snap = self._snap
        spare = max(snap.total >> _GROWTH_SHIFT, _MIN_SPARE)
        if len(snap.words) - snap.total >= spare // 2:
            return
        cap = snap.total + spare
        words = np.empty((cap, 4), dtype=np.uint64)
        refs = np.empty(cap, dtype=np.int64)
        # Rows below a snapshot's total never change; adds only write past it.
        words[: snap.total] = snap.words[: snap.total]
        refs[: snap.total] = snap.refs[: snap.total]
        with self._lock:
            now = self._snap
            if now.words is not snap.words or now.total > cap:
                return  # regrown or rebuilt meanwhile: the next merge looks again
            words[snap.total : now.total] = now.words[snap.total : now.total]
            refs[snap.total : now.total] = now.refs[snap.total : now.total]
            self._snap = replace(now, words=words, refs=refs)

    def _rebuild(self) -> None:
        """Compact dead rows away and rebuild the tables at the right width."""
        with self._lock:
            snap = self._snap
            self._log = []
        try:
            alive = np.ones(snap.total, dtype=bool)
            alive[snap.dead] = False
            words = snap.words[: snap.total][alive]
            refs = snap.refs[: snap.total][alive]
            fresh = _fresh(words, refs, MihTables.build(words))
        except BaseException:
            with self._lock:
                self._log = None
            raise
        with self._lock:
            log, self._log = self._log or [], None
            for is_add, op_words, op_refs in log:
                fresh = (
                    _append(fresh, op_words, op_refs) if is_add else _kill(fresh, op_words, op_refs)
                )
            self._snap = fresh


def segment_parts(
    words: NDArray[np.uint64], refs: NDArray[np.int64], tables: MihTables
) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """``(params, arrays)`` of a segment for these rows and their tables."""
    arrays: dict[str, NDArray[Any]] = {
        "words": words,
        "refs": refs,
        "coarse": tables.coarse,
        "fine": tables.fine,
        "ids": tables.ids,
        "heavy": tables.heavy,
        "heavy_fine": tables.heavy_fine.reshape(-1, 64),
    }
    return {"kind": "pdq", "bits": tables.bits, "rows": tables.rows}, arrays


def _needs_compaction(snap: _Snapshot) -> bool:
    return len(snap.dead) >= max(4096, snap.total >> 4)


def _append(snap: _Snapshot, words: NDArray[np.uint64], refs: NDArray[np.int64]) -> _Snapshot:
    """``snap`` with rows appended, growing the buffer when full."""
    total = snap.total + len(words)
    if total > MAX_ROWS:
        raise ValueError(f"expected at most {MAX_ROWS} rows, got {total}")
    buf_words, buf_refs, head = snap.words, snap.refs, snap.head
    if total > len(buf_words):
        cap = max(total, len(buf_words) + (len(buf_words) >> _GROWTH_SHIFT), 1024)
        buf_words = np.empty((cap, 4), dtype=np.uint64)
        buf_refs = np.empty(cap, dtype=np.int64)
        buf_words[: snap.total] = snap.words[: snap.total]
        buf_refs[: snap.total] = snap.refs[: snap.total]
    start, end = snap.total - snap.main, total - snap.main
    if end > head.shape[1]:
        head = np.empty((2, max(end, 2 * head.shape[1], 1024)), dtype=np.uint64)
        head[:, :start] = snap.head[:, :start]
    # Rows past snap.total are invisible to every published snapshot.
    buf_words[snap.total : total] = words
    buf_refs[snap.total : total] = refs
    head[:, start:end] = words[:, :2].T
    return replace(snap, words=buf_words, refs=buf_refs, total=total, head=head, cache=[])


def _kill(snap: _Snapshot, words: NDArray[np.uint64], refs: NDArray[np.int64]) -> _Snapshot:
    """``snap`` with every live row equal to a given (code, ref) pair marked dead."""
    q, rows, _ = _search_rows(snap, words, 0)
    rows = rows[snap.refs[rows] == refs[q]]
    if not len(rows):
        return snap
    dead = np.union1d(snap.dead, rows)
    return replace(snap, dead=dead, cache=snap.cache)


def _search_rows(snap: _Snapshot, qwords: NDArray[np.uint64], radius: int) -> Hits:
    """Live ``(query_index, row, distance)`` hits of ``qwords`` in ``snap``."""
    if not len(qwords) or not snap.total:
        return empty_hits()
    parts = HitParts()
    if radius > MAX_RADIUS:
        parts.add(scan(snap.words[: snap.total], qwords, radius))
    else:
        if snap.tables is not None:
            parts.add(_search_tables(snap.tables, snap.words, qwords, radius, 0))
        if snap.total > snap.main:
            parts.add(_search_delta(snap, qwords, radius))
    q, rows, dist = parts.result()
    if len(snap.dead) and len(rows):
        pos = np.searchsorted(snap.dead, rows)
        live = snap.dead[np.minimum(pos, len(snap.dead) - 1)] != rows
        q, rows, dist = q[live], rows[live], dist[live]
    return q, rows, dist


def _search_delta(snap: _Snapshot, qwords: NDArray[np.uint64], radius: int) -> Hits:
    """Hits among the delta rows ``[main, total)``."""
    main, delta = snap.main, snap.words[snap.main : snap.total]
    if radius == 0:
        return equal_rows(delta, qwords, first_row=main)
    if len(qwords) >= _DELTA_TABLE_BATCH and len(delta) >= _DELTA_TABLE_MIN:
        if not snap.cache:
            snap.cache.append(MihTables.build(delta))
        return _search_tables(snap.cache[0], delta, qwords, radius, main)
    return scan(delta, qwords, radius, first_row=main, head=snap.head)


def _search_tables(
    tables: MihTables,
    words: NDArray[np.uint64],
    qwords: NDArray[np.uint64],
    radius: int,
    first_row: int,
) -> Hits:
    """Hits through ``tables`` over ``words[:tables.rows]``; rows offset by ``first_row``.

    Query chunks are independent; big batches spread them over a few threads
    (numpy releases the GIL in the gathers that dominate).
    """
    probe = plan(tables.bits, radius)
    limit = max(_CANDIDATE_FLOOR, tables.rows >> 3)
    starts = range(0, len(qwords), _QUERY_CHUNK)

    def run(lo: int) -> Hits:
        chunk = qwords[lo : lo + _QUERY_CHUNK]
        return _search_chunk(tables, words, chunk, radius, probe, limit, first_row)

    parts = HitParts()
    if len(starts) > 1 and _WORKERS > 1:
        for lo, hits in zip(starts, _executor().map(run, starts), strict=True):
            parts.add(hits, lo)
    else:
        for lo in starts:
            parts.add(run(lo), lo)
    return parts.result()


def _search_chunk(
    tables: MihTables,
    words: NDArray[np.uint64],
    chunk: NDArray[np.uint64],
    radius: int,
    probe: Plan,
    limit: int,
    first_row: int,
) -> Hits:
    """Hits of one chunk of queries (query indexes local to the chunk)."""
    parts = HitParts()
    qidx, rows, heavy = tables.candidates(substrings(chunk, tables.bits), probe, limit)
    if len(rows):
        # take() of whole rows then a same-shape XOR: broadcasting one query
        # over (k, 4) runs numpy's slow 4-element inner loop.
        xor = np.take(words, rows, axis=0)
        xor ^= np.take(chunk, qidx, axis=0)
        ok, dist = within(xor, radius)
        qidx, rows = qidx[ok], rows[ok]
        # A code near the query matches several substrings: keep one of each.
        key = qidx * (tables.rows + 1) + rows
        order = np.argsort(key, kind="stable")
        key = key[order]
        first = np.ones(len(key), dtype=bool)
        first[1:] = key[1:] != key[:-1]
        keep = order[first]
        parts.add((qidx[keep], rows[keep] + first_row, dist[keep]))
    for h in heavy:
        parts.add(scan(words[: tables.rows], chunk[h : h + 1], radius, first_row), int(h))
    return parts.result()


def _executor() -> ThreadPoolExecutor:
    """The shared pool for big batches, started on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="pdq-search")
        return _pool
