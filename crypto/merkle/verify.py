"""Inclusion and consistency proof verification, RFC 9162 §2.1.3 and §2.1.4.

Ported from transparency-dev/merkle ``proof/verify.go``, keeping its helper
names (``_decomp_incl_proof``, ``_inner_proof_size``, ``_chain_inner``,
``_chain_inner_right``, ``_chain_border_right``) so that it can be read side
by side with the Go code. Every guard runs before any hashing.
"""

from __future__ import annotations

from collections.abc import Sequence

from crypto.errors import ConsistencyProofError, InclusionProofError
from crypto.merkle.rfc6962 import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_TREE_SIZE,
    NODE_HASH_PREFIX,
    RootHash,
    sha256,
)

__all__ = ["root_from_inclusion_proof", "verify_consistency", "verify_inclusion"]


def root_from_inclusion_proof(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> RootHash:
    """Compute the root of a tree of ``size`` from a leaf and its inclusion proof.

    Args:
        index: the leaf's index, ``0 <= index < size``.
        size: the tree size, at most 2^64 - 1.
        leaf_hash: the 32-byte leaf hash.
        proof: sibling hashes, bottom-up (RFC 9162 §2.1.3).

    Raises:
        InclusionProofError: a bad index or size, a hash that is not 32 bytes,
            or a proof of the wrong length.
    """
    if not 0 <= size <= MAX_TREE_SIZE:
        raise InclusionProofError(reason=f"size {size} is outside [0, 2^64)")
    if not 0 <= index < size:
        raise InclusionProofError(reason=f"index {index} is outside [0, size {size})")
    if len(leaf_hash) != HASH_SIZE:
        raise InclusionProofError(reason=f"leaf hash is {len(leaf_hash)} bytes, expected 32")
    inner, border = _decomp_incl_proof(index, size)
    # inner + border <= 64 = MAX_INCLUSION_PROOF_HASHES, so this bounds the proof.
    if len(proof) != inner + border:
        raise InclusionProofError(
            reason=f"expected proof of {inner + border} hashes, got {len(proof)}"
        )
    for i, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise InclusionProofError(reason=f"proof hash {i} is {len(h)} bytes, expected 32")
    res = _chain_inner(leaf_hash, proof[:inner], index)
    res = _chain_border_right(res, proof[inner:])
    return RootHash(res)


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree ``(size, root)``.

    Raises:
        InclusionProofError: any guard of ``root_from_inclusion_proof`` fails,
            ``root`` is not 32 bytes, or the computed root differs from it.
    """
    if len(root) != HASH_SIZE:
        raise InclusionProofError(reason=f"root is {len(root)} bytes, expected 32")
    calculated = root_from_inclusion_proof(index, size, leaf_hash, proof)
    if calculated != root:
        raise InclusionProofError(
            reason=f"calculated root {calculated.hex()}, expected {root.hex()}"
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree ``(size2, root2)`` extends the tree ``(size1, root1)``.

    Follows transparency-dev ``VerifyConsistency``: every size is consistent
    with size 0 (the proof must be empty; hashfed also requires ``root1`` to be
    the empty-tree root), and equal sizes need an empty proof and equal roots.

    Args:
        size1: the older tree size.
        size2: the newer tree size, ``size1 <= size2 <= 2^64 - 1``.
        proof: the consistency proof (RFC 9162 §2.1.4).
        root1: the 32-byte root at size1.
        root2: the 32-byte root at size2.

    Raises:
        ConsistencyProofError: a bad size, a hash that is not 32 bytes, a proof
            of the wrong length, or a computed root that differs.
    """
    if not 0 <= size1 <= MAX_TREE_SIZE or not 0 <= size2 <= MAX_TREE_SIZE:
        raise ConsistencyProofError(reason=f"sizes {size1}, {size2} are outside [0, 2^64)")
    if size2 < size1:
        raise ConsistencyProofError(reason=f"size2 ({size2}) < size1 ({size1})")
    for name, root in (("root1", root1), ("root2", root2)):
        if len(root) != HASH_SIZE:
            raise ConsistencyProofError(reason=f"{name} is {len(root)} bytes, expected 32")
    if size1 == size2:
        if proof:
            raise ConsistencyProofError(
                reason=f"size1 == size2 but the proof has {len(proof)} hashes"
            )
        if root1 != root2:
            raise ConsistencyProofError(
                reason=f"equal sizes {size1} with roots {root1.hex()} != {root2.hex()}"
            )
        return
    if size1 == 0:
        # Any size greater than 0 is consistent with size 0.
        if proof:
            raise ConsistencyProofError(
                reason=f"expected empty proof from size 0, got {len(proof)} hashes"
            )
        if root1 != EMPTY_ROOT:
            raise ConsistencyProofError(reason=f"root1 {root1.hex()} is not the empty-tree root")
        return
    if not proof:
        raise ConsistencyProofError(reason="empty proof")

    inner, border = _decomp_incl_proof(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1  # trailing zeros of size1
    inner -= shift  # Note: shift < inner if size1 < size2.

    # The proof includes the root hash for the sub-tree of size 2^shift,
    # unless size1 is that very 2^shift (then it is root1).
    seed_in_proof = size1 != 1 << shift
    start = 1 if seed_in_proof else 0
    # start + inner + border <= 65 = MAX_CONSISTENCY_PROOF_HASHES.
    if len(proof) != start + inner + border:
        raise ConsistencyProofError(
            reason=f"expected proof of {start + inner + border} hashes, got {len(proof)}"
        )
    for i, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise ConsistencyProofError(reason=f"proof hash {i} is {len(h)} bytes, expected 32")
    seed = proof[0] if seed_in_proof else root1
    rest = proof[start:]
    # Now len(rest) == inner + border, and rest is effectively a suffix of the
    # inclusion proof for entry |size1 - 1| in a tree of size |size2|.

    # Verify the first root.
    mask = (size1 - 1) >> shift  # Start chaining from level |shift|.
    hash1 = _chain_inner_right(seed, rest[:inner], mask)
    hash1 = _chain_border_right(hash1, rest[inner:])
    if hash1 != root1:
        raise ConsistencyProofError(
            reason=f"calculated root1 {hash1.hex()}, expected {root1.hex()}"
        )

    # Verify the second root.
    hash2 = _chain_inner(seed, rest[:inner], mask)
    hash2 = _chain_border_right(hash2, rest[inner:])
    if hash2 != root2:
        raise ConsistencyProofError(
            reason=f"calculated root2 {hash2.hex()}, expected {root2.hex()}"
        )


def _decomp_incl_proof(index: int, size: int) -> tuple[int, int]:
    """Split the inclusion proof of |index| in a tree of |size| into 2 parts.

    The splitting point is where the paths to leaves |index| and |size - 1|
    diverge. Returns the lengths of the bottom (inner) and upper (border)
    parts; their sum is the exact length of the proof.
    """
    inner = _inner_proof_size(index, size)
    border = (index >> inner).bit_count()
    return inner, border


def _inner_proof_size(index: int, size: int) -> int:
    # Height of the subtree where the paths to |index| and |size - 1| meet.
    return (index ^ (size - 1)).bit_length()


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Hash up from |seed|, at |index| on its level, through inner siblings.

    |proof| is ordered from lower levels to upper; bit i of |index| says
    whether the path node at level i is a right child.
    """
    for i, h in enumerate(proof):
        if (index >> i) & 1 == 0:
            seed = sha256(NODE_HASH_PREFIX + seed + h).digest()
        else:
            seed = sha256(NODE_HASH_PREFIX + h + seed).digest()
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Like ``_chain_inner`` but uses only siblings to the left of the path.

    The result is the hash of the earlier version of this subtree.
    """
    for i, h in enumerate(proof):
        if (index >> i) & 1 == 1:
            seed = sha256(NODE_HASH_PREFIX + h + seed).digest()
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    """Chain along the tree's right border, where every sibling is on the left."""
    for h in proof:
        seed = sha256(NODE_HASH_PREFIX + h + seed).digest()
    return seed
