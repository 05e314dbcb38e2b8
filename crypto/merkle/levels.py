"""Every perfect node of a tree, level by level: roots and proofs at any size.

Nodes are named by ``(level, index)``: node ``(l, i)`` covers leaves
``[i * 2^l, (i + 1) * 2^l)``. A node wholly inside ``[0, size)`` is *perfect*
and never changes as the log grows; the nodes on the right border of a tree
whose size is not a power of two are *ephemeral* and are recomputed from the
perfect nodes below them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from crypto.merkle.compact import CompactRange
from crypto.merkle.rfc6962 import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_TREE_SIZE,
    RootHash,
    check_leaf_hashes,
    fold_right,
    hash_pairs,
)

__all__ = ["TreeLevels"]

# A node is named (level, index); see the module docstring.
_NodeId = tuple[int, int]


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
        check_leaf_hashes(items)
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
            levels[level + 1] += hash_pairs(bytes(pairs))
            level += 1

    def _node(self, node: _NodeId) -> bytes:
        level, index = node
        return bytes(self._levels[level][index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def _hash_of(self, nodes: Sequence[_NodeId]) -> bytes:
        return fold_right([self._node(n) for n in nodes])

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
