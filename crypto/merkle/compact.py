"""The compact range: the right edge of a tree, one hash per set bit of its size.

It is all the state a log needs to keep appending leaves and to compute its
root (transparency-dev ``compact.Range``); the writer stores it with each list.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from crypto.merkle.rfc6962 import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_TREE_SIZE,
    NODE_HASH_PREFIX,
    RootHash,
    check_leaf_hashes,
    fold_right,
    hash_pairs,
    sha256,
)

__all__ = ["CompactRange"]


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
        check_leaf_hashes(hashes)
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
            subtree = sha256(NODE_HASH_PREFIX + hashes.pop() + subtree).digest()
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
            subtree = sha256(NODE_HASH_PREFIX + hashes.pop() + subtree).digest()
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
        check_leaf_hashes(items)
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
                buf = hash_pairs(buf)
            self._push(buf, level)
            pos += 1 << level

    def root(self) -> RootHash:
        """Return the tree's root hash (``EMPTY_ROOT`` for size 0)."""
        if not self._hashes:
            return EMPTY_ROOT
        return RootHash(fold_right(self._hashes))

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
