"""RFC 6962 §2.1 hashing: leaf and node hashes, the root of a list of leaf hashes.

Also the hash types and the size bounds the rest of :mod:`crypto.merkle`
checks against, and the hashing helpers its modules share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NewType

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_CONSISTENCY_PROOF_HASHES",
    "MAX_INCLUSION_PROOF_HASHES",
    "MAX_TREE_SIZE",
    "NODE_HASH_PREFIX",
    "LeafHash",
    "NodeHash",
    "RootHash",
    "check_leaf_hashes",
    "fold_right",
    "hash_pairs",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "sha256",
]

LeafHash = NewType("LeafHash", bytes)
NodeHash = NewType("NodeHash", bytes)
RootHash = NewType("RootHash", bytes)

HASH_SIZE = 32

# Tree sizes are uint64, as in checkpoints (C2SP tlog-checkpoint) and in
# transparency-dev/merkle. A tree of fewer than 2^64 leaves is at most 64
# levels high, so an inclusion proof holds at most 64 hashes. A consistency
# proof is the inclusion proof of one node plus, unless size1 is a power of
# two, that node itself: at most 65 hashes (e.g. size1 = 3, size2 = 2^63 + 1).
# The verifiers (crypto.merkle.verify) demand the exact length, which implies these maxima;
# parsers can use them to cap proof input before it reaches a verifier.
MAX_TREE_SIZE = 2**64 - 1
MAX_INCLUSION_PROOF_HASHES = 64
MAX_CONSISTENCY_PROOF_HASHES = 65

# Domain separation prefixes, RFC 6962 §2.1: "required to give second
# preimage resistance".
_LEAF_HASH_PREFIX = b"\x00"
NODE_HASH_PREFIX = b"\x01"

sha256 = hashlib.sha256

EMPTY_ROOT = RootHash(sha256(b"").digest())


def leaf_hash(data: bytes) -> LeafHash:
    """Return the RFC 6962 leaf hash ``SHA-256(0x00 || data)``."""
    return LeafHash(sha256(_LEAF_HASH_PREFIX + data).digest())


def node_hash(left: bytes, right: bytes) -> NodeHash:
    """Return the RFC 6962 interior node hash ``SHA-256(0x01 || left || right)``.

    Like Go's ``HashChildren`` it hashes whatever it is given; callers pass
    32-byte hashes.
    """
    return NodeHash(sha256(NODE_HASH_PREFIX + left + right).digest())


def hash_pairs(buf: bytes) -> bytes:
    """Hash each consecutive 64-byte pair of ``buf`` into one node hash."""
    # The fastest pure-CPython form measured: one hashlib call per node.
    return b"".join(
        [sha256(NODE_HASH_PREFIX + buf[i : i + 64]).digest() for i in range(0, len(buf), 64)]
    )


def check_leaf_hashes(hashes: Sequence[bytes]) -> None:
    if any(map(HASH_SIZE.__ne__, map(len, hashes))):
        raise ValueError(f"every leaf hash must be {HASH_SIZE} bytes")


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> RootHash:
    """Return MTH over the given leaf hashes (RFC 6962 §2.1).

    Computed level by level: pairing neighbours and promoting an odd last
    node unchanged builds exactly the RFC's left-balanced tree.

    Raises:
        ValueError: a leaf hash is not 32 bytes.
    """
    check_leaf_hashes(hashes)
    if not hashes:
        return EMPTY_ROOT
    buf = b"".join(hashes)
    while len(buf) > HASH_SIZE:
        count = len(buf) // HASH_SIZE
        paired = hash_pairs(buf[: (count & ~1) * HASH_SIZE])
        buf = paired + buf[-HASH_SIZE:] if count & 1 else paired
    return RootHash(buf)


def fold_right(hashes: Sequence[bytes]) -> bytes:
    """Hash perfect-subtree roots ordered left to right into their tree's root."""
    res = hashes[-1]
    for h in reversed(hashes[:-1]):
        res = sha256(NODE_HASH_PREFIX + h + res).digest()
    return res
