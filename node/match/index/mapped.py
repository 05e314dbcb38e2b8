"""MappedPdqIndex: a PDQ index over a shared, read-only segment plus a private delta.

:class:`PdqIndex` appends rows to one buffer, so an add to an index over a
memory-mapped segment would copy every code into private memory. Here the
segment's index only ever has rows marked dead (a small private array); adds
go to a second, in-memory :class:`PdqIndex`; a query asks both and orders the
union as :class:`PdqIndex` does. The next segment folds the delta in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from node.match.index._hamming import hit_order, order_hits
from node.match.index._mih import MihTables, table_bits
from node.match.index._pdq import PdqIndex, segment_parts


class MappedPdqIndex:
    """The :class:`PdqIndex` interface over ``base`` (shared) and an in-memory delta."""

    def __init__(self, base: PdqIndex) -> None:
        self.base = base
        self.delta = PdqIndex()

    def __len__(self) -> int:
        return len(self.base) + len(self.delta)

    @property
    def needs_merge(self) -> bool:
        return self.delta.needs_merge

    def memory_bytes(self) -> int:
        """Private bytes: the delta and the base's dead-row ids (not the mapped arrays)."""
        return self.delta.memory_bytes() + self.base._snap.dead.nbytes

    def add(self, codes: NDArray[np.uint8], refs: NDArray[np.int64]) -> None:
        self.delta.add(codes, refs)

    def remove(self, codes: NDArray[np.uint8], refs: NDArray[np.int64]) -> None:
        self.base.remove(codes, refs)
        self.delta.remove(codes, refs)

    def merge(self) -> None:
        self.delta.merge()

    def search(
        self, queries: NDArray[np.uint8], max_distance: int = 31
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int32]]:
        qb, rb, db = self.base.search(queries, max_distance)
        if not len(self.delta):
            return qb, rb, db
        qd, rd, dd = self.delta.search(queries, max_distance)
        return order_hits(
            np.concatenate((qb, qd)), np.concatenate((rb, rd)), np.concatenate((db, dd))
        )

    def search_codes(
        self, queries: NDArray[np.uint8], max_distance: int = 31
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int32], NDArray[np.uint8]]:
        base = self.base.search_codes(queries, max_distance)
        if not len(self.delta):
            return base
        delta = self.delta.search_codes(queries, max_distance)
        q = np.concatenate((base[0], delta[0]))
        refs = np.concatenate((base[1], delta[1]))
        dist = np.concatenate((base[2], delta[2]))
        codes = np.concatenate((base[3], delta[3]))
        order = hit_order(q, refs, dist)
        if order is None:
            return q, refs, dist, codes
        return q[order], refs[order], dist[order], codes[order]

    def segment_arrays(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """Base and delta live rows as one segment's ``(params, arrays)``.

        With no dead base rows and the same table width, the base's tables
        are extended (no re-sort of the old rows); otherwise rebuilt.
        """
        if not len(self.delta) and not len(self.base._snap.dead):
            return self.base.segment_arrays()
        bw, br = self.base.live_rows()
        dw, dr = self.delta.live_rows()
        words, refs = np.concatenate((bw, dw)), np.concatenate((br, dr))
        old = self.base._snap.tables
        if (
            not len(self.base._snap.dead)
            and old is not None
            and old.rows == len(bw)
            and table_bits(len(words)) == old.bits
        ):
            tables = old.extend(dw)
        else:
            tables = MihTables.build(words)
        return segment_parts(words, refs, tables)
