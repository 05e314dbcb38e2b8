"""256-bit codes as uint64 words, Hamming distances, and brute-force scans.

A PDQ code arrives as 32 bytes (``uint8`` shape ``(n, 32)``, the byte order of
its 64-hex form). Everything here works on the little-endian ``uint64`` view of
those bytes, shape ``(n, 4)``: word ``j`` holds bytes ``8j..8j+7``, so bit ``i``
of the 256-bit little-endian integer is bit ``i % 64`` of word ``i // 64``. The
order does not change any distance; it only fixes which bits form the
substrings of the multi-index tables.

:func:`brute_force_pdq` is the plain reference the tests compare the index
with; :func:`scan` is the faster scan the index itself falls back to.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

CODE_BYTES = 32
WORDS = 4
_WORD = np.dtype("<u8")
# Rows per scan block: 64 Ki rows x 2 words x 8 B = 1 MiB, which stays in L2.
_SCAN_BLOCK = 1 << 16
# The byte sum mod 256 of within() is wrong only when all 256 bits differ
# (every word count 64), so that one pattern is checked apart.
_ALL_DIFFER = np.uint32(0x40404040)

Hits = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int32]]


def check_refs(refs: NDArray[np.int64], n: int) -> NDArray[np.int64]:
    """Return ``refs`` as a contiguous int64 vector of length ``n``.

    Raises:
        ValueError: the shape is not ``(n,)`` or the values do not fit int64.
    """
    arr = np.asarray(refs)
    if arr.shape != (n,):
        raise ValueError(f"expected refs of shape ({n},), got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"expected integer refs, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_rows(keys: NDArray[np.uint8], width: int, what: str) -> NDArray[np.uint8]:
    """Return ``keys`` as a C-contiguous ``uint8`` array of shape ``(n, width)``.

    Raises:
        ValueError: the array is not 2-D uint8 with ``width`` columns.
    """
    arr = np.asarray(keys)
    if arr.ndim != 2 or arr.shape[1] != width or arr.dtype != np.uint8:
        raise ValueError(
            f"expected {what} as uint8 of shape (n, {width}), got {arr.dtype} {arr.shape}"
        )
    return np.ascontiguousarray(arr)


def as_words(codes: NDArray[np.uint8]) -> NDArray[np.uint64]:
    """View validated ``(n, 32)`` uint8 codes as ``(n, 4)`` little-endian uint64."""
    arr = check_rows(codes, CODE_BYTES, "PDQ codes")
    return arr.view(_WORD).reshape(len(arr), WORDS)


def check_radius(max_distance: int) -> int:
    """Return ``max_distance`` as an int, refusing negatives.

    Raises:
        ValueError: the distance is negative or not an integer.
    """
    if isinstance(max_distance, bool) or not isinstance(max_distance, int | np.integer):
        raise ValueError(f"expected an integer max_distance, got {type(max_distance).__name__}")
    if max_distance < 0:
        raise ValueError(f"expected max_distance >= 0, got {max_distance}")
    return int(max_distance)


def within(
    xor_words: NDArray[np.uint64], radius: int
) -> tuple[NDArray[np.int64], NDArray[np.int32]]:
    """Rows of ``code ^ query`` words ``(k, 4)`` within ``radius``, and their distances.

    The four per-word counts (uint8) are read as one uint32; times
    0x01010101 its top byte is their sum mod 256.
    """
    packed = np.bitwise_count(xor_words).view(np.uint32).reshape(len(xor_words))
    total = packed * np.uint32(0x01010101)
    total >>= np.uint32(24)
    if radius >= 256:
        rows = np.arange(len(total), dtype=np.int64)
    else:
        rows = np.flatnonzero(total <= radius)
    dist = total[rows].astype(np.int32)
    dist[packed[rows] == _ALL_DIFFER] = 256
    if radius < 256:
        keep = dist <= radius
        rows, dist = rows[keep], dist[keep]
    return rows, dist


class HitParts:
    """Collects ``(query_index, row_or_ref, distance)`` parts to concatenate once."""

    __slots__ = ("dists", "qs", "rows")

    def __init__(self) -> None:
        self.qs: list[NDArray[np.int64]] = []
        self.rows: list[NDArray[np.int64]] = []
        self.dists: list[NDArray[np.int32]] = []

    def add(self, hits: Hits, query_offset: int = 0) -> None:
        """Append one part, shifting its query indexes by ``query_offset``."""
        q, r, d = hits
        if len(q):
            self.qs.append(q + query_offset if query_offset else q)
            self.rows.append(r)
            self.dists.append(d)

    def result(self) -> Hits:
        """All parts concatenated, in the order added."""
        return concat_hits(self.qs, self.rows, self.dists)


def scan(
    words: NDArray[np.uint64],
    queries: NDArray[np.uint64],
    radius: int,
    first_row: int = 0,
    head: NDArray[np.uint64] | None = None,
) -> Hits:
    """Brute-force every query against every row of ``words``.

    Returns ``(query_index, row, distance)`` with rows numbered from
    ``first_row``. The first two words are counted first and only rows still
    within ``radius`` get the other two: for random codes and radius < 64
    almost none do. ``head``, if given, holds those two words column-major
    (shape ``(2, n)``), which the scan reads 2x faster than strided columns.
    """
    n = len(words)
    parts = HitParts()
    size = min(n, _SCAN_BLOCK)
    acc = np.empty(size, dtype=np.uint8)
    tmp = np.empty(size, dtype=np.uint8)
    xor = np.empty(size, dtype=np.uint64)
    for qi in range(len(queries)):
        q = queries[qi]
        for lo in range(0, n, _SCAN_BLOCK):
            hi = min(n, lo + _SCAN_BLOCK)
            k = hi - lo
            w0 = words[lo:hi, 0] if head is None else head[0, lo:hi]
            w1 = words[lo:hi, 1] if head is None else head[1, lo:hi]
            # Two words give at most 128, so the uint8 sum cannot wrap.
            np.bitwise_xor(w0, q[0], out=xor[:k])
            np.bitwise_count(xor[:k], out=acc[:k])
            np.bitwise_xor(w1, q[1], out=xor[:k])
            np.bitwise_count(xor[:k], out=tmp[:k])
            np.add(acc[:k], tmp[:k], out=acc[:k])
            near = np.flatnonzero(acc[:k] <= radius)
            if not len(near):
                continue
            ok, dist = within(words[lo + near] ^ q, radius)
            rows = near[ok] + (lo + first_row)
            parts.add((np.full(len(rows), qi, dtype=np.int64), rows, dist))
    return parts.result()


def equal_rows(words: NDArray[np.uint64], queries: NDArray[np.uint64], first_row: int = 0) -> Hits:
    """``scan(words, queries, 0, first_row)``, by sorting instead of one pass per query.

    Removals search for exact codes, a batch at a time: sorting the rows on
    their first word and binary-searching every query is O((n + q) log n)
    where the scan is O(n * q) (30 ms for 1,000 removals against a delta of
    1,000 rows). Hits come ordered by query index, then row.
    """
    if not len(words) or not len(queries):
        return empty_hits()
    order = np.argsort(words[:, 0], kind="stable")
    first = words[order, 0]
    lo = np.searchsorted(first, queries[:, 0], side="left")
    hi = np.searchsorted(first, queries[:, 0], side="right")
    counts = hi - lo
    qidx = np.repeat(np.arange(len(queries), dtype=np.int64), counts)
    # Every position in [lo, hi) of each query, flattened.
    offsets = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(counts) - counts, counts
    )
    rows = order[np.repeat(lo, counts) + offsets].astype(np.int64)
    ok = (words[rows] == queries[qidx]).all(axis=1)
    qidx, rows = qidx[ok], rows[ok]
    arrange = np.lexsort((rows, qidx))
    return qidx[arrange], rows[arrange] + first_row, np.zeros(len(rows), dtype=np.int32)


def concat_hits(
    qs: list[NDArray[np.int64]], rows: list[NDArray[np.int64]], dists: list[NDArray[np.int32]]
) -> Hits:
    """Concatenate hit parts, giving empty arrays of the right dtypes for none."""
    if not qs:
        return empty_hits()
    return np.concatenate(qs), np.concatenate(rows), np.concatenate(dists)


def empty_hits() -> Hits:
    """``(query_index, row_or_ref, distance)`` with no hits."""
    return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int32)


def brute_force_pdq(
    codes: NDArray[np.uint8],
    refs: NDArray[np.int64],
    queries: NDArray[np.uint8],
    max_distance: int,
) -> Hits:
    """Every ``(query_index, ref, distance)`` with distance <= ``max_distance``.

    The reference the index is tested against: a full popcount of every
    (query, code) pair, nothing clever. Results are ordered by query index,
    then distance, then ref, like :meth:`PdqIndex.search`.

    Raises:
        ValueError: shapes or dtypes are wrong, or ``max_distance`` is negative.
    """
    words = as_words(codes)
    ref_arr = check_refs(refs, len(words))
    qwords = as_words(queries)
    radius = check_radius(max_distance)
    out_q, out_r, out_d = [], [], []
    for qi in range(len(qwords)):
        dist = np.bitwise_count(words ^ qwords[qi]).sum(axis=1, dtype=np.int64)
        rows = np.flatnonzero(dist <= radius)
        out_q.append(np.full(len(rows), qi, dtype=np.int64))
        out_r.append(ref_arr[rows])
        out_d.append(dist[rows].astype(np.int32))
    q, r, d = concat_hits(out_q, out_r, out_d)
    return order_hits(q, r, d)


def hit_order(
    q: NDArray[np.int64], refs: NDArray[np.int64], dist: NDArray[np.int32]
) -> NDArray[np.intp] | None:
    """The order of hits by query index, then distance, then ref; None if already so."""
    return np.lexsort((refs, dist, q)) if len(q) > 1 else None


def order_hits(q: NDArray[np.int64], refs: NDArray[np.int64], dist: NDArray[np.int32]) -> Hits:
    """Sort hits by query index, then distance, then ref."""
    order = hit_order(q, refs, dist)
    if order is None:
        return q, refs, dist
    return q[order], refs[order], dist[order]
