"""Inclusion and consistency proofs over a list's stored entries.

Proofs need interior tree nodes, which the database does not keep (it keeps
the entries and the right edge). A :class:`ProofCache` builds each list's
levels in memory on first use from the entries, then extends them as the
list grows; it is a cache, so losing it costs time, never correctness.
"""

from __future__ import annotations

import threading

from crypto.merkle import TreeLevels
from node.log.entry import leaf_hashes
from node.store import Store


class ProofCache:
    """Per-list Merkle levels, built lazily and extended incrementally."""

    def __init__(self) -> None:
        self._trees: dict[int, TreeLevels] = {}
        self._lock = threading.Lock()

    def _tree(self, store: Store, list_id: int, size: int) -> TreeLevels:
        with self._lock:
            tree = self._trees.setdefault(list_id, TreeLevels())
            if tree.size < size:
                tree.append_many(
                    leaf_hashes(store.iter_entries(list_id=list_id, start=tree.size, end=size))
                )
            return tree

    def inclusion(self, store: Store, *, list_id: int, index: int, size: int) -> list[bytes]:
        """Audit path of leaf ``index`` in the tree of ``size`` entries."""
        return self._tree(store, list_id, size).inclusion_proof(index, size)

    def consistency(self, store: Store, *, list_id: int, size1: int, size2: int) -> list[bytes]:
        """Proof that the tree of ``size1`` entries is a prefix of the one of ``size2``."""
        return self._tree(store, list_id, size2).consistency_proof(size1, size2)

    def forget(self, list_id: int) -> None:
        with self._lock:
            self._trees.pop(list_id, None)
