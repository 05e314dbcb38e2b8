"""ExactIndex: exact lookups of fixed-width keys (md5, sha1, sha256, opaque digests).

Layout. A *run* holds rows sorted by the key's first 8 bytes read as a
big-endian uint64 (``prefix``); the remaining bytes (``rest``, viewed as the
widest unsigned words that divide them) and the ``ref`` sit beside it. The main
run also has a bucket table on the top ``bits`` of the prefix (``bits`` =
floor(log2 n), so <= 4 bytes per key and ~1.5 rows per bucket): a lookup reads
one bucket, compares prefixes, then the rest. For sha256 that is 8 + 24 + 8 +
<= 4 = <= 44 bytes per key. Keys are digests, so prefixes are uniform; if a
bucket is ever huge (crafted keys), the lookup switches to binary search,
which bounds it by log n per key.

Updates go to a small sorted *delta* run (searched with binary search);
removals from the main run mark its positions dead. :meth:`ExactIndex.merge`
writes a new main run (old rows minus dead plus the delta, one linear merge)
off to the side, then swaps it in under the write lock, replaying the changes
made meanwhile. Queries read one immutable snapshot and take no lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from node.match.index._hamming import check_refs, check_rows

_PREFIX = 8
# Past this many delta rows add() merges by itself: each add copies the delta
# (a linear merge), so it must stay small; a merge at 10 M keys takes ~1.5 s.
_DELTA_HARD = 1 << 18
_DELTA_SOFT = 1 << 16
# Lookups run in chunks of this many keys: bigger temporaries only add page faults.
_LOOKUP_CHUNK = 1 << 16
# A lookup batch that would compare more than this many rows per key is in a
# crafted bucket: binary search instead.
_BUCKET_FANOUT = 4
_MAX_ROWS = (1 << 32) - 1  # bucket offsets are uint32

Pairs = tuple[NDArray[np.int64], NDArray[np.int64]]


@dataclass(frozen=True, slots=True)
class _Run:
    """Rows sorted by prefix; ``buckets`` is None for the delta (binary search)."""

    prefix: NDArray[np.uint64]
    rest: NDArray[np.unsignedinteger]  # (n, words)
    refs: NDArray[np.int64]
    shift: int = 64
    buckets: NDArray[np.uint32] | None = None

    def __len__(self) -> int:
        return len(self.prefix)

    @property
    def nbytes(self) -> int:
        extra = self.buckets.nbytes if self.buckets is not None else 0
        return self.prefix.nbytes + self.rest.nbytes + self.refs.nbytes + extra

    def take(self, rows: NDArray[np.int64] | NDArray[np.bool_]) -> _Run:
        """The run restricted to ``rows`` (which keep their order), without buckets."""
        return _Run(self.prefix[rows], self.rest[rows], self.refs[rows])

    def with_buckets(self) -> _Run:
        """This run with a bucket table on the top floor(log2 n) bits."""
        n = len(self)
        if n < 2:
            return self
        bits = min(32, n.bit_length() - 1)
        shift = 64 - bits
        counts = np.bincount(
            (self.prefix >> np.uint64(shift)).astype(np.int64), minlength=1 << bits
        )
        buckets = np.zeros((1 << bits) + 1, dtype=np.uint32)
        np.cumsum(counts, out=buckets[1:])
        return _Run(self.prefix, self.rest, self.refs, shift, buckets)

    def lookup(self, prefix: NDArray[np.uint64], rest: NDArray[np.unsignedinteger]) -> Pairs:
        """``(query_index, row)`` of every row whose key equals a query's."""
        nq = len(prefix)
        if self.buckets is not None:
            b = (prefix >> np.uint64(self.shift)).astype(np.int64)
            lo = self.buckets[b].astype(np.int64)
            lens = self.buckets[b + 1].astype(np.int64) - lo
            if int(lens.sum()) > _BUCKET_FANOUT * nq + 4096:
                lo, lens = self._ranges(prefix)
        else:
            lo, lens = self._ranges(prefix)
        ends = np.cumsum(lens)
        total = int(ends[-1]) if nq else 0
        rows = np.repeat(lo - (ends - lens), lens) + np.arange(total, dtype=np.int64)
        qidx = np.repeat(np.arange(nq, dtype=np.int64), lens)
        same = self.prefix[rows] == prefix[qidx]
        if self.rest.shape[1]:
            same &= (self.rest[rows] == rest[qidx]).all(axis=1)
        return qidx[same], rows[same]

    def _ranges(self, prefix: NDArray[np.uint64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        lo = np.searchsorted(self.prefix, prefix, side="left").astype(np.int64)
        return lo, np.searchsorted(self.prefix, prefix, side="right") - lo

    def lookup_one(self, prefix: int, rest: bytes) -> list[int]:
        """Rows equal to one key: the single-query path, in Python scalars (~5 us)."""
        if self.buckets is not None:
            b = prefix >> self.shift
            lo, hi = int(self.buckets[b]), int(self.buckets[b + 1])
            if hi - lo > 64:
                lo, hi = self._range_one(prefix)
        else:
            lo, hi = self._range_one(prefix)
        return [
            i
            for i in range(lo, hi)
            if int(self.prefix[i]) == prefix and (not rest or self.rest[i].tobytes() == rest)
        ]

    def _range_one(self, prefix: int) -> tuple[int, int]:
        key = np.uint64(prefix)
        return (
            int(np.searchsorted(self.prefix, key, side="left")),
            int(np.searchsorted(self.prefix, key, side="right")),
        )


def _merge_runs(a: _Run, b: _Run) -> _Run:
    """One sorted run of the rows of ``a`` and ``b`` (each sorted), in linear time."""
    if not len(b):
        return a
    if not len(a):
        return b
    at = np.searchsorted(a.prefix, b.prefix, side="right") + np.arange(len(b))
    from_a = np.ones(len(a) + len(b), dtype=bool)
    from_a[at] = False
    parts = []
    for x, y in ((a.prefix, b.prefix), (a.rest, b.rest), (a.refs, b.refs)):
        out = np.empty((len(from_a), *x.shape[1:]), dtype=x.dtype)
        out[at] = y
        out[from_a] = x
        parts.append(out)
    return _Run(parts[0], parts[1], parts[2])


@dataclass(frozen=True, slots=True)
class _Snapshot:
    main: _Run
    delta: _Run
    dead: NDArray[np.int64]  # sorted positions in main


class ExactIndex:
    """Exact lookups of ``width``-byte keys, each with an int64 ref.

    The same key may be present under several refs; every (key, ref) pair is
    a hit. ``add`` and ``remove`` are visible to lookups when they return;
    ``merge`` (callable from a background thread) never blocks lookups.
    """

    def __init__(self, width: int) -> None:
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"expected a key width >= 1, got {width!r}")
        self.width = width
        rest_bytes = max(0, width - _PREFIX)
        # Compare the rest as the widest words that divide it (sha256: 3 x u8).
        self._rest_dtype = np.dtype(next(f"<u{s}" for s in (8, 4, 2, 1) if rest_bytes % s == 0))
        self._lock = threading.Lock()
        self._merge_lock = threading.Lock()
        self._log: list[tuple[bool, NDArray[np.uint8], NDArray[np.int64]]] | None = None
        empty = self._run(np.empty((0, width), dtype=np.uint8), np.empty(0, dtype=np.int64))
        self._snap = _Snapshot(empty, empty, np.empty(0, dtype=np.int64))

    @classmethod
    def from_arrays(
        cls, width: int, keys: NDArray[np.uint8], refs: NDArray[np.int64]
    ) -> ExactIndex:
        """An index over ``keys`` built in one sort (no delta)."""
        index = cls(width)
        arr = check_rows(keys, width, "keys")
        run = index._run(arr, check_refs(refs, len(arr)))
        index._snap = _Snapshot(run.with_buckets(), index._snap.delta, index._snap.dead)
        return index

    def __len__(self) -> int:
        snap = self._snap
        return len(snap.main) - len(snap.dead) + len(snap.delta)

    # --- segments (node/match/index/segment.py) ---------------------------------------------

    def segment_arrays(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """The live rows as one bucketed run: ``(params, arrays)`` for a segment file.

        Reads one snapshot; a main run that has no dead rows and no delta is
        returned as it is (no copy).
        """
        snap = self._snap
        main = snap.main
        if len(snap.dead) or len(snap.delta):
            if len(snap.dead):
                alive = np.ones(len(main), dtype=bool)
                alive[snap.dead] = False
                main = main.take(alive)
            main = _merge_runs(main, snap.delta).with_buckets()
        arrays: dict[str, NDArray[Any]] = {
            "prefix": main.prefix,
            "rest": main.rest,
            "refs": main.refs,
        }
        if main.buckets is not None:
            arrays["buckets"] = main.buckets
        return {"kind": "exact", "width": self.width, "shift": main.shift}, arrays

    @classmethod
    def from_segment(cls, params: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> ExactIndex:
        """An index whose main run is the (memory-mapped, read-only) segment arrays.

        Adds go to the in-memory delta and removals mark rows dead, as
        always; :meth:`merge` leaves the shared main run alone until the
        delta is large (a new segment replaces it first).

        Raises:
            ValueError: the arrays do not fit together.
        """
        index = cls(int(params["width"]))
        prefix, rest, refs = arrays["prefix"], arrays["rest"], arrays["refs"]
        n = len(prefix)
        words = max(0, index.width - _PREFIX) // index._rest_dtype.itemsize
        buckets = arrays.get("buckets")
        shift = int(params["shift"])
        if (
            prefix.dtype != np.uint64
            or refs.dtype != np.int64
            or rest.dtype != index._rest_dtype
            or rest.shape != (n, words)
            or refs.shape != (n,)
            or (buckets is not None and (shift < 32 or len(buckets) != (1 << (64 - shift)) + 1))
            or (buckets is not None and int(buckets[-1]) != n)
        ):
            raise ValueError("segment arrays do not fit an exact index")
        run = _Run(prefix, rest, refs, shift, buckets)
        index._snap = _Snapshot(run, index._snap.delta, index._snap.dead)
        return index

    @property
    def needs_merge(self) -> bool:
        """True when the delta or the dead rows are big enough to merge."""
        snap = self._snap
        return len(snap.delta) >= _DELTA_SOFT or len(snap.dead) >= _DELTA_SOFT

    def memory_bytes(self) -> int:
        """Bytes held by the main and delta runs and the dead positions."""
        snap = self._snap
        return snap.main.nbytes + snap.delta.nbytes + snap.dead.nbytes

    def add(self, keys: NDArray[np.uint8], refs: NDArray[np.int64]) -> None:
        """Add one row per (key, ref); visible to lookups when this returns."""
        arr = check_rows(keys, self.width, "keys")
        ref_arr = check_refs(refs, len(arr))
        if not len(arr):
            return
        with self._lock:
            self._snap = self._apply(self._snap, True, arr, ref_arr)
            if self._log is not None:
                self._log.append((True, arr.copy(), ref_arr.copy()))
            too_big = len(self._snap.delta) >= _DELTA_HARD
        if too_big:
            self.merge()

    def remove(self, keys: NDArray[np.uint8], refs: NDArray[np.int64]) -> None:
        """Remove every row equal to a given (key, ref) pair; missing pairs are ignored."""
        arr = check_rows(keys, self.width, "keys")
        ref_arr = check_refs(refs, len(arr))
        if not len(arr):
            return
        with self._lock:
            self._snap = self._apply(self._snap, False, arr, ref_arr)
            if self._log is not None:
                self._log.append((False, arr.copy(), ref_arr.copy()))

    def lookup(self, keys: NDArray[np.uint8]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """``(query_index, ref)`` for every hit, ordered by query index.

        Raises:
            ValueError: ``keys`` is not uint8 of shape ``(n, width)``.
        """
        arr = check_rows(keys, self.width, "keys")
        snap = self._snap
        if len(arr) == 1:
            return self._lookup_one(snap, arr[0].tobytes())
        if len(arr) <= _LOOKUP_CHUNK:
            return self._lookup_many(snap, arr)
        parts = [
            self._lookup_many(snap, arr[lo : lo + _LOOKUP_CHUNK])
            for lo in range(0, len(arr), _LOOKUP_CHUNK)
        ]
        starts = range(0, len(arr), _LOOKUP_CHUNK)
        q = np.concatenate([p[0] + lo for p, lo in zip(parts, starts, strict=True)])
        return q, np.concatenate([p[1] for p in parts])

    def _lookup_many(
        self, snap: _Snapshot, arr: NDArray[np.uint8]
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Batch lookup in ``snap``: bucket reads and prefix compares, vectorised."""
        prefix, rest = self._split(arr)
        q_main, rows = snap.main.lookup(prefix, rest)
        if len(snap.dead) and len(rows):
            pos = np.minimum(np.searchsorted(snap.dead, rows), len(snap.dead) - 1)
            live = snap.dead[pos] != rows
            q_main, rows = q_main[live], rows[live]
        refs = snap.main.refs[rows]
        if not len(snap.delta):
            return q_main, refs
        q_delta, drows = snap.delta.lookup(prefix, rest)
        q = np.concatenate((q_main, q_delta))
        order = np.argsort(q, kind="stable")
        return q[order], np.concatenate((refs, snap.delta.refs[drows]))[order]

    def merge(self) -> None:
        """Fold the delta into the main run and drop dead rows.

        Lookups go on against the old snapshot meanwhile; adds and removes
        made while this runs are replayed onto the new one.
        """
        with self._merge_lock:
            with self._lock:
                snap = self._snap
                if not len(snap.delta) and not len(snap.dead):
                    return
                if not snap.main.prefix.flags.writeable and len(snap.delta) < _DELTA_HARD:
                    # A shared, mapped main run: copying it would make it private
                    # to this process; the next segment folds the delta instead.
                    return
                self._log = []
            try:
                main = snap.main
                if len(snap.dead):
                    alive = np.ones(len(main), dtype=bool)
                    alive[snap.dead] = False
                    main = main.take(alive)
                fresh = _Snapshot(
                    _merge_runs(main, snap.delta).with_buckets(),
                    self._run(np.empty((0, self.width), np.uint8), np.empty(0, np.int64)),
                    np.empty(0, dtype=np.int64),
                )
            except BaseException:
                with self._lock:
                    self._log = None
                raise
            with self._lock:
                log, self._log = self._log or [], None
                for is_add, keys, refs in log:
                    fresh = self._apply(fresh, is_add, keys, refs)
                self._snap = fresh

    def _apply(
        self, snap: _Snapshot, is_add: bool, keys: NDArray[np.uint8], refs: NDArray[np.int64]
    ) -> _Snapshot:
        """``snap`` with rows added, or with every row equal to a (key, ref) removed."""
        if is_add:
            return _Snapshot(snap.main, _merge_runs(snap.delta, self._run(keys, refs)), snap.dead)
        prefix, rest = self._split(keys)
        q, rows = snap.main.lookup(prefix, rest)
        rows = rows[snap.main.refs[rows] == refs[q]]
        dead = np.union1d(snap.dead, rows) if len(rows) else snap.dead
        q, drows = snap.delta.lookup(prefix, rest)
        drows = drows[snap.delta.refs[drows] == refs[q]]
        delta = snap.delta
        if len(drows):
            keep = np.ones(len(delta), dtype=bool)
            keep[drows] = False
            delta = delta.take(keep)
        return _Snapshot(snap.main, delta, dead)

    def _split(
        self, keys: NDArray[np.uint8]
    ) -> tuple[NDArray[np.uint64], NDArray[np.unsignedinteger]]:
        """Big-endian uint64 prefix and rest words of ``(n, width)`` keys."""
        n = len(keys)
        head = np.zeros((n, _PREFIX), dtype=np.uint8)
        head[:, : min(_PREFIX, self.width)] = keys[:, :_PREFIX]
        prefix = head.view(">u8").reshape(n).astype(np.uint64)
        words = max(0, self.width - _PREFIX) // self._rest_dtype.itemsize
        rest = np.ascontiguousarray(keys[:, _PREFIX:]).view(self._rest_dtype)
        return prefix, rest.reshape(n, words)

    def _run(self, keys: NDArray[np.uint8], refs: NDArray[np.int64]) -> _Run:
        """A sorted run of ``keys`` (no buckets)."""
        if len(keys) > _MAX_ROWS:
            raise ValueError(f"expected at most {_MAX_ROWS} keys, got {len(keys)}")
        prefix, rest = self._split(keys)
        order = np.argsort(prefix, kind="stable")
        return _Run(prefix[order], rest[order], refs[order])

    def _lookup_one(
        self, snap: _Snapshot, key: bytes
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """One key, in Python scalars: numpy's per-call overhead would dominate."""
        prefix = int.from_bytes(key[:_PREFIX].ljust(_PREFIX, b"\0"), "big")
        rest = key[_PREFIX:]
        refs = [
            int(snap.main.refs[i])
            for i in snap.main.lookup_one(prefix, rest)
            if not _is_dead(snap.dead, i)
        ]
        if len(snap.delta):
            refs += [int(snap.delta.refs[i]) for i in snap.delta.lookup_one(prefix, rest)]
        return np.zeros(len(refs), dtype=np.int64), np.array(refs, dtype=np.int64)


def _is_dead(dead: NDArray[np.int64], row: int) -> bool:
    if not len(dead):
        return False
    pos = int(np.searchsorted(dead, row))
    return pos < len(dead) and int(dead[pos]) == row
