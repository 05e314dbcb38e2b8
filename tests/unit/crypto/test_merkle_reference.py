"""crypto.merkle against a naive recursive RFC 6962 implementation.

The reference below transcribes the definitions of RFC 6962 §2.1 (MTH),
§2.1.1 (PATH) and §2.1.2 (PROOF / SUBPROOF) literally, the way
transparency-dev/merkle's testonly/reference_test.go does; RFC 9162 §2.1.3
and §2.1.4 define the same proofs. It hashes with hashlib directly so that it
shares no code with the module under test. Every tree size 1..64, every leaf
index and every pair of sizes is checked.
"""

from __future__ import annotations

import hashlib
from functools import cache

import pytest

from crypto.merkle import (
    EMPTY_ROOT,
    CompactRange,
    TreeLevels,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

MAX_SIZE = 64
LEAVES = tuple(f"reference leaf {i}".encode() for i in range(MAX_SIZE))


def _largest_power_of_two_smaller_than(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@cache
def mth(begin: int, end: int) -> bytes:
    """MTH(D[begin:end]) of LEAVES, straight from RFC 6962 §2.1."""
    n = end - begin
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + LEAVES[begin]).digest()
    k = _largest_power_of_two_smaller_than(n)
    return hashlib.sha256(b"\x01" + mth(begin, begin + k) + mth(begin + k, end)).digest()


def path(m: int, begin: int, end: int) -> list[bytes]:
    """PATH(m, D[begin:end]), RFC 6962 §2.1.1."""
    n = end - begin
    if n == 1:
        return []
    k = _largest_power_of_two_smaller_than(n)
    if m < k:
        return [*path(m, begin, begin + k), mth(begin + k, end)]
    return [*path(m - k, begin + k, end), mth(begin, begin + k)]


def proof(m: int, n: int) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true), RFC 6962 §2.1.2."""
    return subproof(m, 0, n, True)


def subproof(m: int, begin: int, end: int, b: bool) -> list[bytes]:
    n = end - begin
    if m == n:
        return [] if b else [mth(begin, end)]
    k = _largest_power_of_two_smaller_than(n)
    if m <= k:
        return [*subproof(m, begin, begin + k, b), mth(begin + k, end)]
    return [*subproof(m - k, begin + k, end, False), mth(begin, begin + k)]


def reference_leaf_hash(i: int) -> bytes:
    return mth(i, i + 1)


def perfect_subtrees(n: int) -> list[bytes]:
    """Roots of the perfect subtrees covering [0, n), largest first."""
    out, begin = [], 0
    for level in range(n.bit_length() - 1, -1, -1):
        if n >> level & 1:
            out.append(mth(begin, begin + (1 << level)))
            begin += 1 << level
    return out


LEAF_HASHES = [reference_leaf_hash(i) for i in range(MAX_SIZE)]
SIZES = range(1, MAX_SIZE + 1)


@pytest.fixture(scope="module")
def tree() -> TreeLevels:
    # Grown in uneven batches so that append_many's carry logic is exercised.
    levels = TreeLevels()
    pos = 0
    for step in (1, 2, 3, 1, 7, 13, 5, 32):
        levels.append_many(LEAF_HASHES[pos : pos + step])
        pos += step
    assert levels.size == MAX_SIZE
    return levels


def test_empty_tree_root_matches_reference() -> None:
    assert mth(0, 0) == EMPTY_ROOT
    assert root_from_leaf_hashes([]) == mth(0, 0)
    assert CompactRange().root() == mth(0, 0)
    assert TreeLevels().root() == mth(0, 0)


@pytest.mark.parametrize("n", SIZES)
def test_roots_match_reference(n: int, tree: TreeLevels) -> None:
    want = mth(0, n)
    assert root_from_leaf_hashes(LEAF_HASHES[:n]) == want
    assert tree.root(n) == want
    assert TreeLevels(LEAF_HASHES[:n]).root() == want

    one_by_one = CompactRange()
    for h in LEAF_HASHES[:n]:
        one_by_one.append(h)
    batched = CompactRange()
    batched.extend(LEAF_HASHES[:n])
    for compact in (one_by_one, batched, tree.compact_range(n)):
        assert compact.size == n
        assert compact.root() == want
        assert list(compact.hashes) == perfect_subtrees(n)


@pytest.mark.parametrize("n", SIZES)
def test_compact_range_extend_from_every_prefix(n: int) -> None:
    """Extending a range of any size by any batch gives the reference roots."""
    for split in range(n + 1):
        compact = CompactRange()
        compact.extend(LEAF_HASHES[:split])
        compact.extend(LEAF_HASHES[split:n])
        assert compact.root() == mth(0, n)


@pytest.mark.parametrize("n", SIZES)
def test_inclusion_proofs_match_reference(n: int, tree: TreeLevels) -> None:
    for m in range(n):
        want = path(m, 0, n)
        assert tree.inclusion_proof(m, n) == want
        assert root_from_inclusion_proof(m, n, LEAF_HASHES[m], want) == mth(0, n)
        verify_inclusion(m, n, LEAF_HASHES[m], want, mth(0, n))


@pytest.mark.parametrize("n", SIZES)
def test_consistency_proofs_match_reference(n: int, tree: TreeLevels) -> None:
    for m in range(1, n + 1):
        want = proof(m, n)
        assert tree.consistency_proof(m, n) == want
        verify_consistency(m, n, want, mth(0, m), mth(0, n))
    assert tree.consistency_proof(0, n) == []
    verify_consistency(0, n, [], EMPTY_ROOT, mth(0, n))
