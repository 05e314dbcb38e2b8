"""Multi-index hashing tables over 256-bit codes (Norouzi, Punjani & Fleet 2012).

Eleven disjoint ``bits``-wide substrings of each code (bits ``t*bits`` up, in
the word order of :mod:`._hamming`) key eleven tables. If two codes are within
distance ``r``, their substring distances add up to at most ``r``; so probing
table ``t`` with every key within ``s_t`` flips of the query's substring finds
every code within ``r`` as long as ``sum(s_t + 1) > r``. For ``r = 31`` that is
ten tables at radius 2 and one at radius 1: 10 x 277 + 24 = 2,794 probes at 23
bits. Bits the substrings leave out only add slack.

``bits`` follows ``log2(rows)`` (the substring-count rule of Norouzi et al.), so a
bucket holds about one row and a query at ``r = 31`` draws about 3,300
candidates from 10 M uniform codes, not the 41,000 of the 16 x 16-bit layout.

Each table is a CSR over its ``2**bits`` buckets: row ids (uint32) grouped by
bucket, and offsets. Offsets are stored as one int64 per block of 64 buckets
(coarse) plus a uint8 per bucket relative to it (fine): one byte per bucket,
not eight, which keeps the whole index at ~96 bytes per code. A *heavy* block,
one with more than 255 rows before its last bucket (clusters of near-duplicate
codes share substrings), keeps its 64 relative offsets as int64 in a small side
table instead; a block that heavy holds >= 256 rows, so the side table costs
< 2 bytes per row it serves.

The tables are immutable: :meth:`MihTables.extend` returns new tables with rows
appended (no re-sort of the old rows: one pass that copies the ids and patches
the offsets), so readers holding the old tables are never disturbed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import numpy as np
from numpy.typing import NDArray

TABLES = 11  # the fewest tables with floor(31 / m) = 2, so radius 2 per table suffices
MAX_BITS = 23  # 11 x 23 = 253 <= 256: the substrings stay disjoint
MIN_BITS = 6  # 2**6 buckets = one coarse block, so a block never spans two tables
MAX_RADIUS = 32  # sum(s_t + 1) > r with every s_t <= 2; beyond, probes explode (2,048/table)
_BLOCK_SHIFT = 6
_BLOCK = 1 << _BLOCK_SHIFT
_FINE_MAX = 255
MAX_ROWS = (1 << 32) - 1  # row ids are stored as uint32


def table_bits(rows: int) -> int:
    """Substring width for a table of ``rows`` codes: about one row per bucket."""
    if rows <= 1:
        return MIN_BITS
    return min(MAX_BITS, max(MIN_BITS, int(math.log2(rows) + 0.5)))


def substring(words: NDArray[np.uint64], bits: int, table: int) -> NDArray[np.int64]:
    """Substring ``table`` (``bits`` wide) of every code in ``words`` ``(n, 4)``."""
    lo = table * bits
    w, off = divmod(lo, 64)
    v = words[:, w] >> np.uint64(off)
    if off + bits > 64:
        v = v | (words[:, w + 1] << np.uint64(64 - off))
    return (v & np.uint64((1 << bits) - 1)).astype(np.int64)


def substrings(words: NDArray[np.uint64], bits: int) -> NDArray[np.int64]:
    """All substrings of ``words`` ``(n, 4)``, shape ``(n, TABLES)``."""
    if len(words) <= 4:
        # A few Python int shifts beat 4 numpy calls per table for one query.
        mask = (1 << bits) - 1
        values = [int.from_bytes(row.tobytes(), "little") for row in words]
        out = [[(v >> (t * bits)) & mask for t in range(TABLES)] for v in values]
        return np.array(out, dtype=np.int64).reshape(len(words), TABLES)
    return np.stack([substring(words, bits, t) for t in range(TABLES)], axis=1)


def radii(radius: int) -> tuple[int, ...]:
    """Per-table probe radii ``s_t`` with ``sum(s_t + 1) == radius + 1`` (-1: skip table).

    Spread evenly, because probes grow like ``bits**s``.
    """
    q, rem = divmod(radius + 1, TABLES)
    return tuple(q if t < rem else q - 1 for t in range(TABLES))


@dataclass(frozen=True)
class Plan:
    """The probe keys of one (bits, radius): XOR masks and their tables."""

    masks: NDArray[np.int64]  # (P,) flip patterns
    tables: NDArray[np.intp]  # (P,) table of each probe
    base: NDArray[np.int64]  # (P,) table << bits: global bucket = base + key


@lru_cache(maxsize=256)
def plan(bits: int, radius: int) -> Plan:
    """Probe plan for tables of ``bits`` and ``radius`` <= :data:`MAX_RADIUS`."""
    if not 0 <= radius <= MAX_RADIUS:
        raise ValueError(f"expected 0 <= radius <= {MAX_RADIUS}, got {radius}")
    masks: list[int] = []
    tables: list[int] = []
    for t, s in enumerate(radii(radius)):
        for k in range(min(s, bits) + 1):
            for flips in combinations(range(bits), k):
                masks.append(sum(1 << i for i in flips))
                tables.append(t)
    tab = np.array(tables, dtype=np.intp)
    return Plan(np.array(masks, dtype=np.int64), tab, tab.astype(np.int64) << bits)


@dataclass(frozen=True)
class MihTables:
    """Eleven CSR tables over rows ``[0, rows)`` of a code buffer."""

    bits: int
    rows: int
    coarse: NDArray[np.int64]  # offset of every 64th global bucket, (TABLES*2**bits/64 + 1,)
    fine: NDArray[np.uint8]  # offset - coarse[g >> 6], (TABLES*2**bits + 1,); 0 in heavy blocks
    ids: NDArray[np.uint32]  # row ids grouped by global bucket, (TABLES*rows,)
    heavy: NDArray[np.int64]  # sorted global ids of heavy blocks
    heavy_fine: NDArray[np.int64]  # (len(heavy), 64): their offsets relative to coarse

    @property
    def nbytes(self) -> int:
        """Bytes held by the tables (not the codes)."""
        arrays = (self.coarse, self.fine, self.ids, self.heavy, self.heavy_fine)
        return sum(a.nbytes for a in arrays)

    def offsets(self, g: NDArray[np.int64]) -> NDArray[np.int64]:
        """Start of each global bucket ``g`` in :attr:`ids`."""
        block = g >> _BLOCK_SHIFT
        start: NDArray[np.int64] = self.coarse[block] + self.fine[g]
        if len(self.heavy):
            at, hit = _find(self.heavy, block)
            start[hit] += self.heavy_fine[at[hit], g[hit] & (_BLOCK - 1)]
        return start

    @classmethod
    def build(cls, words: NDArray[np.uint64], bits: int | None = None) -> MihTables:
        """Tables over all rows of ``words`` ``(n, 4)``, sorting each substring once."""
        n = len(words)
        if n > MAX_ROWS:
            raise ValueError(f"expected at most {MAX_ROWS} rows, got {n}")
        bits = table_bits(n) if bits is None else bits
        buckets = 1 << bits
        ids = np.empty(TABLES * n, dtype=np.uint32)
        coarse = np.empty(TABLES * buckets // _BLOCK + 1, dtype=np.int64)
        fine = np.zeros(TABLES * buckets + 1, dtype=np.uint8)
        heavy: list[NDArray[np.int64]] = []
        heavy_fine: list[NDArray[np.int64]] = []
        row_numbers = np.arange(n, dtype=np.uint64)
        for t in range(TABLES):
            # Sorting (key << 32 | row) as one uint64 is a stable argsort by key,
            # and 1.6x faster than argsort(kind="stable") at 10 M.
            packed = np.sort(
                (substring(words, bits, t).view(np.uint64) << np.uint64(32)) | row_numbers
            )
            ids[t * n : (t + 1) * n] = packed.astype(np.uint32)  # the low half: the row
            counts = np.bincount((packed >> np.uint64(32)).view(np.int64), minlength=buckets)
            local = np.zeros(buckets + 1, dtype=np.int64)
            np.cumsum(counts, out=local[1:])
            del packed, counts
            block_start = local[:-1:_BLOCK]
            coarse[t * buckets // _BLOCK : (t + 1) * buckets // _BLOCK] = block_start + t * n
            rel = (local[:-1] - np.repeat(block_start, _BLOCK)).reshape(-1, _BLOCK)
            over = np.flatnonzero(rel[:, -1] > _FINE_MAX)  # offsets grow along a block
            heavy.append(over + t * buckets // _BLOCK)
            heavy_fine.append(rel[over])
            rel[over] = 0
            fine[t * buckets : (t + 1) * buckets] = rel.reshape(-1)
        coarse[-1] = TABLES * n
        return cls(bits, n, coarse, fine, ids, np.concatenate(heavy), np.concatenate(heavy_fine))

    def extend(self, words: NDArray[np.uint64]) -> MihTables:
        """New tables that also hold rows ``[rows, rows + len(words))``.

        Old rows keep their ids and their order; new ids go to the end of their
        buckets. Cost: one copy of :attr:`ids` and :attr:`fine` plus work in
        ``len(words)``; nothing old is re-sorted.
        """
        d = len(words)
        if d == 0:
            return self
        if self.rows + d > MAX_ROWS:
            raise ValueError(f"expected at most {MAX_ROWS} rows, got {self.rows + d}")
        n, bits, buckets = self.rows, self.bits, 1 << self.bits
        new_rows = np.arange(n, n + d, dtype=np.uint64)
        coarse = self.coarse.copy()
        fine = self.fine.copy()
        heavy, heavy_fine = self.heavy, self.heavy_fine
        ids = np.empty(TABLES * (n + d), dtype=np.uint32)
        keep = np.empty(n + d, dtype=bool)
        block_starts = np.arange(0, buckets, _BLOCK, dtype=np.int64)
        for t in range(TABLES):
            packed = np.sort(
                (substring(words, bits, t).view(np.uint64) << np.uint64(32)) | new_rows
            )
            key = (packed >> np.uint64(32)).view(np.int64)
            # New entry j of this table lands after every old id of its bucket
            # and after the j new ids before it.
            at = self.offsets(key + (t * buckets + 1)) - t * n + np.arange(d)
            out = ids[t * (n + d) : (t + 1) * (n + d)]
            keep.fill(True)
            keep[at] = False
            out[at] = packed.astype(np.uint32)  # the low half: the row
            out[keep] = self.ids[t * n : (t + 1) * n]
            # A block's coarse offset moves by every new entry before it.
            blocks = slice(t * buckets // _BLOCK, (t + 1) * buckets // _BLOCK)
            coarse[blocks] += t * d + np.searchsorted(key, block_starts, side="left")
            heavy, heavy_fine = _patch_fine(fine, heavy, heavy_fine, key + t * buckets)
        coarse[-1] += TABLES * d
        return MihTables(bits, n + d, coarse, fine, ids, heavy, heavy_fine)

    def candidates(
        self, subs: NDArray[np.int64], probe: Plan, limit: int
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """Candidate rows for queries with substrings ``subs`` ``(Q, TABLES)``.

        Returns ``(query_index, row, heavy)``: ``heavy`` lists the queries whose
        candidates would exceed ``limit`` (clustered data, many duplicates);
        their rows are left out and the caller scans for them instead, which
        bounds the cost of a query by the cost of a scan.
        """
        nq, nprobe = len(subs), len(probe.masks)
        g = ((subs[:, probe.tables] ^ probe.masks) + probe.base).reshape(-1)
        start, lens = self._ranges(g)
        per_query = lens.reshape(nq, nprobe).sum(axis=1)
        heavy = np.flatnonzero(per_query > limit)
        if len(heavy):
            lens.reshape(nq, nprobe)[heavy] = 0
            per_query[heavy] = 0
        ends = np.cumsum(lens)
        total = int(ends[-1]) if len(ends) else 0
        # Expand every (start, len) run into positions with one repeat and one arange.
        pos = np.repeat(start - (ends - lens), lens) + np.arange(total, dtype=np.int64)
        rows = self.ids[pos].astype(np.int64)
        qidx = np.repeat(np.arange(nq, dtype=np.int64), per_query)
        return qidx, rows, heavy

    def _ranges(self, g: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Start and length of each global bucket ``g``.

        :meth:`offsets` of ``g`` and ``g + 1`` share their coarse entry except
        at a block's last bucket, so that entry is gathered once (a random
        read saved per probe).
        """
        block = g >> _BLOCK_SHIFT
        base = self.coarse[block]
        start = base + self.fine[g]
        end = base + self.fine[g + 1]
        edge = np.flatnonzero((g & (_BLOCK - 1)) == _BLOCK - 1)
        end[edge] = self.coarse[block[edge] + 1]  # fine at a block's start is 0
        if len(self.heavy):
            at, hit = _find(self.heavy, block)
            start[hit] += self.heavy_fine[at[hit], g[hit] & (_BLOCK - 1)]
            inner = hit[(g[hit] & (_BLOCK - 1)) != _BLOCK - 1]
            end[inner] += self.heavy_fine[at[inner], (g[inner] & (_BLOCK - 1)) + 1]
        return start, end - start


def _find(
    sorted_keys: NDArray[np.int64], keys: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.intp]]:
    """Position of each key in ``sorted_keys`` (clipped) and the indexes of keys found."""
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return at, np.flatnonzero(sorted_keys[at] == keys)


def _patch_fine(
    fine: NDArray[np.uint8],
    heavy: NDArray[np.int64],
    heavy_fine: NDArray[np.int64],
    g: NDArray[np.int64],
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Add new entries at sorted global buckets ``g``: ``fine`` in place, heavy blocks anew.

    Within a block, bucket ``j`` starts later by the number of new entries in
    earlier buckets of the same block; other blocks move only through
    ``coarse``. A block that passes 255 moves to the heavy side table.
    """
    block = g >> _BLOCK_SHIFT
    local = g - (block << _BLOCK_SHIFT)
    first = np.ones(len(block), dtype=bool)
    first[1:] = block[1:] != block[:-1]
    touched = block[first]
    which = np.cumsum(first) - 1
    # An entry in bucket j shifts buckets j+1.. of its block; j = 63 shifts none.
    # g is sorted, so equal (block, j + 1) cells are runs: count them by run.
    inside = local < _BLOCK - 1
    cell = (which[inside] << _BLOCK_SHIFT) + local[inside] + 1
    starts = np.flatnonzero(np.diff(cell, prepend=-1))
    shift = np.zeros(len(touched) * _BLOCK, dtype=np.int64)
    shift[cell[starts]] = np.diff(starts, append=len(cell))
    grid = fine[:-1].reshape(-1, _BLOCK)
    updated = grid[touched] + np.cumsum(shift.reshape(len(touched), _BLOCK), axis=1)
    was_heavy = np.zeros(len(touched), dtype=bool)
    if len(heavy):
        at, hit = _find(heavy, touched)
        was_heavy[hit] = True
        updated[hit] += heavy_fine[at[hit]]  # their fine is 0
    now_heavy = was_heavy | (updated[:, -1] > _FINE_MAX)
    grid[touched[~now_heavy]] = updated[~now_heavy]
    if not now_heavy.any():
        return heavy, heavy_fine
    grid[touched[now_heavy]] = 0
    untouched = np.ones(len(heavy), dtype=bool)
    if len(heavy):
        untouched[at[hit]] = False
    blocks = np.concatenate((heavy[untouched], touched[now_heavy]))
    offsets = np.concatenate((heavy_fine[untouched], updated[now_heavy]))
    order = np.argsort(blocks)
    return blocks[order], offsets[order]
