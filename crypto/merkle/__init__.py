"""RFC 6962 / RFC 9162 Merkle tree hashing, compact ranges, proofs.

Every hashfed list is an append-only log whose tree is exactly the one of
RFC 6962 §2.1 (RFC 9162 §2.1 keeps the construction)::

    MTH({})    = SHA-256()
    MTH({d0})  = SHA-256(0x00 || d0)                      leaf hash
    MTH(D[n])  = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))
                 with k the largest power of two < n       node hash

One module per concept, as transparency-dev/merkle lays them out; other
packages import from here:

    rfc6962   leaf and node hashes, the root of a list of leaf hashes, bounds
    compact   CompactRange: the right edge of a tree, enough to append and
              to compute the root
    levels    TreeLevels: every perfect node, for roots and proofs at any size
    verify    inclusion and consistency proof verification

This package is pure: no I/O, no logging.
"""

from __future__ import annotations

from crypto.merkle.compact import CompactRange
from crypto.merkle.levels import TreeLevels
from crypto.merkle.rfc6962 import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_CONSISTENCY_PROOF_HASHES,
    MAX_INCLUSION_PROOF_HASHES,
    MAX_TREE_SIZE,
    LeafHash,
    NodeHash,
    RootHash,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
)
from crypto.merkle.verify import root_from_inclusion_proof, verify_consistency, verify_inclusion

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_CONSISTENCY_PROOF_HASHES",
    "MAX_INCLUSION_PROOF_HASHES",
    "MAX_TREE_SIZE",
    "CompactRange",
    "LeafHash",
    "NodeHash",
    "RootHash",
    "TreeLevels",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]
