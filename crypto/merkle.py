"""RFC 6962 / RFC 9162 Merkle tree hashing, compact ranges, proofs.

Every hashfed list is an append-only log whose tree is exactly the one of
RFC 6962 §2.1 (RFC 9162 §2.1 keeps the construction)::

    MTH({})    = SHA-256()
    MTH({d0})  = SHA-256(0x00 || d0)                      leaf hash
    MTH(D[n])  = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))
                 with k the largest power of two < n       node hash

Nodes are named by ``(level, index)``: node ``(l, i)`` covers leaves
``[i * 2^l, (i + 1) * 2^l)``. A node wholly inside ``[0, size)`` is *perfect*
and never changes as the log grows; the nodes on the right border of a tree
whose size is not a power of two are *ephemeral* and are recomputed from the
perfect nodes below them.

Proof verification is ported from transparency-dev/merkle ``proof/verify.go``
and keeps its helper names (``_decomp_incl_proof``, ``_inner_proof_size``,
``_chain_inner``, ``_chain_inner_right``, ``_chain_border_right``) so that it
can be read side by side with the Go code. Every guard runs before any hashing.

This module is pure: no I/O, no logging.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import NewType

from crypto.errors import ConsistencyProofError, InclusionProofError

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

LeafHash = NewType("LeafHash", bytes)
NodeHash = NewType("NodeHash", bytes)
RootHash = NewType("RootHash", bytes)

HASH_SIZE = 32

# Tree sizes are uint64, as in checkpoints (C2SP tlog-checkpoint) and in
# transparency-dev/merkle. A tree of fewer than 2^64 leaves is at most 64
# levels high, so an inclusion proof holds at most 64 hashes. A consistency
# proof is the inclusion proof of one node plus, unless size1 is a power of
# two, that node itself: at most 65 hashes (e.g. size1 = 3, size2 = 2^63 + 1).
# The verifiers below demand the exact length, which implies these maxima;
# parsers can use them to cap proof input before it reaches a verifier.
MAX_TREE_SIZE = 2**64 - 1
MAX_INCLUSION_PROOF_HASHES = 64
MAX_CONSISTENCY_PROOF_HASHES = 65

# Domain separation prefixes, RFC 6962 §2.1: "required to give second
# preimage resistance".
_LEAF_HASH_PREFIX = b"\x00"
_NODE_HASH_PREFIX = b"\x01"

_sha256 = hashlib.sha256

EMPTY_ROOT = RootHash(_sha256(b"").digest())

# A node is named (level, index); see the module docstring.
_NodeId = tuple[int, int]


def leaf_hash(data: bytes) -> LeafHash:
    """Return the RFC 6962 leaf hash ``SHA-256(0x00 || data)``."""
    return LeafHash(_sha256(_LEAF_HASH_PREFIX + data).digest())


def node_hash(left: bytes, right: bytes) -> NodeHash:
    """Return the RFC 6962 interior node hash ``SHA-256(0x01 || left || right)``.

    Like Go's ``HashChildren`` it hashes whatever it is given; callers pass
    32-byte hashes.
    """
    return NodeHash(_sha256(_NODE_HASH_PREFIX + left + right).digest())


def _hash_pairs(buf: bytes) -> bytes:
    """Hash each consecutive 64-byte pair of ``buf`` into one node hash."""
    # The fastest pure-CPython form measured: one hashlib call per node.
    return b"".join(
        [_sha256(_NODE_HASH_PREFIX + buf[i : i + 64]).digest() for i in range(0, len(buf), 64)]
    )


def _check_leaf_hashes(hashes: Sequence[bytes]) -> None:
    if any(map(HASH_SIZE.__ne__, map(len, hashes))):
        raise ValueError(f"every leaf hash must be {HASH_SIZE} bytes")


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> RootHash:
    """Return MTH over the given leaf hashes (RFC 6962 §2.1).

    Computed level by level: pairing neighbours and promoting an odd last
    node unchanged builds exactly the RFC's left-balanced tree.

    Raises:
        ValueError: a leaf hash is not 32 bytes.
    """
    _check_leaf_hashes(hashes)
    if not hashes:
        return EMPTY_ROOT
    buf = b"".join(hashes)
    while len(buf) > HASH_SIZE:
        count = len(buf) // HASH_SIZE
        paired = _hash_pairs(buf[: (count & ~1) * HASH_SIZE])
        buf = paired + buf[-HASH_SIZE:] if count & 1 else paired
    return RootHash(buf)


def _fold_right(hashes: Sequence[bytes]) -> bytes:
    """Hash perfect-subtree roots ordered left to right into their tree's root."""
    res = hashes[-1]
    for h in reversed(hashes[:-1]):
        res = _sha256(_NODE_HASH_PREFIX + h + res).digest()
    return res


class CompactRange:
    """The right edge of a tree ``[0, size)``: one hash per set bit of size.

    ``hashes`` are the roots of the perfect subtrees that cover the leaves,
    largest (leftmost) first, as in transparency-dev ``compact.Range``. That
    is all the state needed to keep appending and to compute the root.

    Serialization (``to_bytes``): the size as 8 bytes big-endian, then the
    32-byte hashes in the same order; popcount(size) hashes exactly.
    """

    __slots__ = ("_hashes", "_size")

    # Below this subtree height, extend() appends leaf by leaf.
    _BATCH_MIN_LEVEL = 4

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        """Create a range from its size and subtree hashes (empty by default).

        Raises:
            ValueError: size out of range, wrong hash count or hash length.
        """
        if not 0 <= size <= MAX_TREE_SIZE:
            raise ValueError(f"size {size} is outside [0, 2^64)")
        if len(hashes) != size.bit_count():
            raise ValueError(f"size {size} needs {size.bit_count()} hashes, got {len(hashes)}")
        _check_leaf_hashes(hashes)
        self._size = size
        self._hashes = [bytes(h) for h in hashes]

    @property
    def size(self) -> int:
        """Number of leaves covered."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Roots of the perfect subtrees, largest first."""
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> None:
        """Append one leaf hash; O(log n) worst case, O(1) amortised.

        Raises:
            ValueError: the hash is not 32 bytes.
            OverflowError: the tree already holds 2^64 - 1 leaves.
        """
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf_hash)}")
        # _push(leaf_hash, 0) inlined: this is the per-entry hot path.
        size = self._size
        if size >= MAX_TREE_SIZE:
            raise OverflowError("tree size would exceed 2^64 - 1")
        hashes = self._hashes
        subtree = bytes(leaf_hash)
        while size & 1:
            subtree = _sha256(_NODE_HASH_PREFIX + hashes.pop() + subtree).digest()
            size >>= 1
        hashes.append(subtree)
        self._size += 1

    def _push(self, subtree: bytes, level: int) -> None:
        """Append a perfect subtree of 2^level leaves; size must be a multiple of it."""
        if self._size + (1 << level) > MAX_TREE_SIZE:
            raise OverflowError("tree size would exceed 2^64 - 1")
        hashes = self._hashes
        # Each 1 bit of size (counted in units of the new subtree) is a
        # same-sized subtree on the left that now merges, as in binary carry.
        carry = self._size >> level
        while carry & 1:
            subtree = _sha256(_NODE_HASH_PREFIX + hashes.pop() + subtree).digest()
            carry >>= 1
        hashes.append(subtree)
        self._size += 1 << level

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes; all are checked before any is appended.

        Aligned runs of 2^k leaves are hashed level by level into one subtree,
        which is much faster in CPython than appending them one at a time.

        Raises:
            ValueError: a hash is not 32 bytes.
            OverflowError: the tree would exceed 2^64 - 1 leaves.
        """
        items = list(leaf_hashes)
        _check_leaf_hashes(items)
        if self._size + len(items) > MAX_TREE_SIZE:
            raise OverflowError("tree size would exceed 2^64 - 1")
        pos, end = 0, len(items)
        while pos < end:
            # Largest 2^level run that fits and keeps the range aligned.
            level = (end - pos).bit_length() - 1
            if self._size:
                level = min(level, (self._size & -self._size).bit_length() - 1)
            if level < self._BATCH_MIN_LEVEL:
                self._push(bytes(items[pos]), 0)
                pos += 1
                continue
            buf = b"".join(items[pos : pos + (1 << level)])
            while len(buf) > HASH_SIZE:
                buf = _hash_pairs(buf)
            self._push(buf, level)
            pos += 1 << level

    def root(self) -> RootHash:
        """Return the tree's root hash (``EMPTY_ROOT`` for size 0)."""
        if not self._hashes:
            return EMPTY_ROOT
        return RootHash(_fold_right(self._hashes))

    def copy(self) -> CompactRange:
        """Return an independent copy."""
        other = CompactRange.__new__(CompactRange)
        other._size = self._size
        other._hashes = list(self._hashes)
        return other

    def to_bytes(self) -> bytes:
        """Serialize: 8-byte big-endian size, then the hashes largest first."""
        return self._size.to_bytes(8, "big") + b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactRange:
        """Parse the ``to_bytes`` form.

        Raises:
            ValueError: truncated data, or a hash count other than popcount(size).
        """
        if len(data) < 8 or (len(data) - 8) % HASH_SIZE:
            raise ValueError(f"compact range of {len(data)} bytes is not 8 + 32k bytes")
        size = int.from_bytes(data[:8], "big")
        body = data[8:]
        return cls(size, [body[i : i + HASH_SIZE] for i in range(0, len(body), HASH_SIZE)])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"


def _range_nodes(begin: int, end: int) -> list[_NodeId]:
    """Perfect nodes covering ``[begin, end)``, largest (leftmost) first.

    ``begin`` must be a multiple of a power of two >= ``end - begin``, which
    holds for every subtree of the RFC 6962 tree.
    """
    nodes = []
    remaining = end - begin
    for level in range(remaining.bit_length() - 1, -1, -1):
        if remaining >> level & 1:
            nodes.append((level, begin >> level))
            begin += 1 << level
    return nodes


def _path_nodes(level: int, index: int, size: int) -> list[list[_NodeId]]:
    """Siblings of node ``(level, index)`` on its path to the root of ``size``.

    Bottom-up, as RFC 6962 PATH orders them. Each sibling is given as the
    perfect nodes covering it, left to right: one node if the sibling is
    perfect, several if it is ephemeral (cut by the tree's right border).
    Levels where the path node has no sibling (it is promoted) are skipped.
    """
    path = []
    for lvl in range(level, (size - 1).bit_length()):
        begin = ((index >> (lvl - level)) ^ 1) << lvl
        if begin < size:
            path.append(_range_nodes(begin, min(begin + (1 << lvl), size)))
    return path


def _inclusion_nodes(index: int, size: int) -> list[list[_NodeId]]:
    """Nodes of the inclusion proof of leaf ``index`` (RFC 9162 §2.1.3.1)."""
    return _path_nodes(0, index, size)


def _consistency_nodes(size1: int, size2: int) -> list[list[_NodeId]]:
    """Nodes of the consistency proof ``size1 -> size2`` (RFC 9162 §2.1.4.1).

    The proof is the largest perfect node ending at size1 (left out when
    size1 is a power of two: it is root1, which the verifier holds), then
    that node's inclusion path in the tree of size2.
    """
    if size1 in (0, size2):
        return []
    level = (size1 & -size1).bit_length() - 1
    index = (size1 - 1) >> level
    head = [[(level, index)]] if index else []
    return head + _path_nodes(level, index, size2)


class TreeLevels:
    """Every perfect node of a tree, level by level, for proof generation.

    Level ``l`` is a bytearray of ``size >> l`` 32-byte hashes, about 64 bytes
    per leaf in total. Ephemeral nodes are computed on demand, so roots and
    proofs work for every size up to the current one.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        """Create the tree, optionally from initial leaf hashes.

        Raises:
            ValueError: a hash is not 32 bytes.
        """
        self._levels: list[bytearray] = [bytearray()]
        self.append_many(leaf_hashes)

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0]) // HASH_SIZE

    def append_many(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append leaf hashes and every perfect node they complete.

        Raises:
            ValueError: a hash is not 32 bytes (nothing is appended).
            OverflowError: the tree would exceed 2^64 - 1 leaves.
        """
        items = list(leaf_hashes)
        _check_leaf_hashes(items)
        if self.size + len(items) > MAX_TREE_SIZE:
            raise OverflowError("tree size would exceed 2^64 - 1")
        levels = self._levels
        levels[0] += b"".join(items)
        level = 0
        while len(levels[level]) >= 2 * HASH_SIZE:
            if level + 1 == len(levels):
                levels.append(bytearray())
            have = len(levels[level + 1]) // HASH_SIZE
            want = len(levels[level]) // (2 * HASH_SIZE)
            if have == want:
                break  # nothing new here, so nothing new above either
            pairs = levels[level][have * 2 * HASH_SIZE : want * 2 * HASH_SIZE]
            levels[level + 1] += _hash_pairs(bytes(pairs))
            level += 1

    def _node(self, node: _NodeId) -> bytes:
        level, index = node
        return bytes(self._levels[level][index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def _hash_of(self, nodes: Sequence[_NodeId]) -> bytes:
        return _fold_right([self._node(n) for n in nodes])

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"size {size} is outside [0, {self.size}]")

    def root(self, size: int | None = None) -> RootHash:
        """Return the root of the tree of the first ``size`` leaves (default all).

        Raises:
            ValueError: size is negative or larger than the tree.
        """
        size = self.size if size is None else size
        self._check_size(size)
        return RootHash(self._hash_of(_range_nodes(0, size))) if size else EMPTY_ROOT

    def compact_range(self, size: int | None = None) -> CompactRange:
        """Return the compact range of the first ``size`` leaves (default all).

        Raises:
            ValueError: size is negative or larger than the tree.
        """
        size = self.size if size is None else size
        self._check_size(size)
        return CompactRange(size, [self._node(n) for n in _range_nodes(0, size)])

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """Return the inclusion proof of leaf ``index`` in the tree of ``size``.

        Raises:
            ValueError: not ``0 <= index < size <= self.size``.
        """
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"index {index} is outside [0, {size})")
        return [self._hash_of(nodes) for nodes in _inclusion_nodes(index, size)]

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """Return the consistency proof from ``size1`` to ``size2``.

        The proof is empty when ``size1`` is 0 or equals ``size2``.

        Raises:
            ValueError: not ``0 <= size1 <= size2 <= self.size``.
        """
        self._check_size(size2)
        if not 0 <= size1 <= size2:
            raise ValueError(f"size1 {size1} is outside [0, {size2}]")
        return [self._hash_of(nodes) for nodes in _consistency_nodes(size1, size2)]


# --- verification, ported from transparency-dev/merkle proof/verify.go ---------


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
            seed = _sha256(_NODE_HASH_PREFIX + seed + h).digest()
        else:
            seed = _sha256(_NODE_HASH_PREFIX + h + seed).digest()
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Like ``_chain_inner`` but uses only siblings to the left of the path.

    The result is the hash of the earlier version of this subtree.
    """
    for i, h in enumerate(proof):
        if (index >> i) & 1 == 1:
            seed = _sha256(_NODE_HASH_PREFIX + h + seed).digest()
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    """Chain along the tree's right border, where every sibling is on the left."""
    for h in proof:
        seed = _sha256(_NODE_HASH_PREFIX + h + seed).digest()
    return seed
