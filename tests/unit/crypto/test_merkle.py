"""Tests for crypto.merkle: RFC 6962 hashing, compact ranges, proofs.

Published values come from transparency-dev/merkle (Apache-2.0):
- rfc6962/rfc6962_test.go: TestRFC6962Hasher, TestRFC6962HasherCollisions;
- proof/verify_test.go: the eight CT test leaves, their roots for sizes 1-8,
  the inclusionProofs / consistencyProofs tables, and the corruptions of
  corruptInclusionProof / corruptConsistencyProof;
- proof/proof_test.go: TestInclusion / TestConsistency node-ID tables.
Tests that reject input are named after the mutation they apply.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.errors import ConsistencyProofError, InclusionProofError, VerificationError
from crypto.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_CONSISTENCY_PROOF_HASHES,
    MAX_INCLUSION_PROOF_HASHES,
    MAX_TREE_SIZE,
    CompactRange,
    TreeLevels,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from crypto.merkle import levels as merkle_levels
from crypto.merkle import verify as merkle_verify

VECTORS = Path(__file__).resolve().parents[2] / "vectors"


def dh(h: str) -> bytes:
    return bytes.fromhex(h)


# --- published values (transparency-dev/merkle proof/verify_test.go) ----------

CT_LEAVES = [
    dh(x)
    for x in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_LEAF_HASHES = [leaf_hash(x) for x in CT_LEAVES]
# roots[i] is the root of the tree of the first i + 1 leaves.
CT_ROOTS = [
    dh("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    dh("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    dh("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    dh("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    dh("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    dh("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    dh("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    dh("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
# (leaf, size, proof) with a 1-based leaf number, as in the Go table.
CT_INCLUSION_PROOFS = [
    (1, 1, []),
    (
        1,
        8,
        [
            dh("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            dh("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            dh("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            dh("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            dh("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            dh("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (3, 3, [dh("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        2,
        5,
        [
            dh("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            dh("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            dh("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]
CT_CONSISTENCY_PROOFS = [
    (1, 1, []),
    (
        1,
        8,
        [
            dh("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            dh("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            dh("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            dh("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            dh("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            dh("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            dh("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            dh("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            dh("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            dh("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            dh("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]
SOME_HASH = dh("abacaba000000000000000000000000000000000000000000060061e00123456")


@pytest.fixture(scope="module")
def ct_tree() -> TreeLevels:
    return TreeLevels(CT_LEAF_HASHES)


# --- RFC 6962 hashing (rfc6962/rfc6962_test.go) ----------------------------------


def test_rfc6962_hasher_vectors() -> None:
    # echo -n | sha256sum
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    # echo -n 00 | xxd -r -p | sha256sum
    assert leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    # echo -n 004C313233343536 | xxd -r -p | sha256sum
    assert leaf_hash(b"L123456").hex() == (
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    # echo -n 014E3132334E343536 | xxd -r -p | sha256sum
    assert node_hash(b"N123", b"N456").hex() == (
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


def test_empty_tree_root_is_not_empty_leaf_hash() -> None:
    assert leaf_hash(b"") != bytes(EMPTY_ROOT)
    assert len(EMPTY_ROOT) == HASH_SIZE


def test_distinct_leaves_have_distinct_hashes() -> None:
    assert leaf_hash(b"Hello") != leaf_hash(b"World")


def test_node_hash_is_not_leaf_hash_of_concatenation() -> None:
    h1, h2 = leaf_hash(b"Hello"), leaf_hash(b"World")
    assert bytes(node_hash(h1, h2)) != leaf_hash(h1 + h2)


def test_node_hash_depends_on_child_order() -> None:
    h1, h2 = leaf_hash(b"Hello"), leaf_hash(b"World")
    assert node_hash(h1, h2) != node_hash(h2, h1)


@given(st.binary(min_size=64, max_size=64))
def test_domain_separation_leaf_vs_node(data: bytes) -> None:
    """A 64-byte leaf never hashes like the node whose children it spells."""
    assert bytes(leaf_hash(data)) != node_hash(data[:32], data[32:])
    assert leaf_hash(data) == hashlib.sha256(b"\x00" + data).digest()
    assert node_hash(data[:32], data[32:]) == hashlib.sha256(b"\x01" + data).digest()


# --- roots and proofs of the CT tree -------------------------------------------


@pytest.mark.parametrize("size", range(1, 9))
def test_ct_roots(size: int, ct_tree: TreeLevels) -> None:
    want = CT_ROOTS[size - 1]
    assert root_from_leaf_hashes(CT_LEAF_HASHES[:size]) == want
    assert ct_tree.root(size) == want
    compact = CompactRange()
    compact.extend(CT_LEAF_HASHES[:size])
    assert compact.root() == want


@pytest.mark.parametrize(("leaf", "size", "proof"), CT_INCLUSION_PROOFS)
def test_ct_inclusion_proofs(leaf: int, size: int, proof: list[bytes], ct_tree: TreeLevels) -> None:
    index = leaf - 1
    assert ct_tree.inclusion_proof(index, size) == proof
    assert (
        root_from_inclusion_proof(index, size, CT_LEAF_HASHES[index], proof) == (CT_ROOTS[size - 1])
    )
    verify_inclusion(index, size, CT_LEAF_HASHES[index], proof, CT_ROOTS[size - 1])


@pytest.mark.parametrize(("size1", "size2", "proof"), CT_CONSISTENCY_PROOFS)
def test_ct_consistency_proofs(
    size1: int, size2: int, proof: list[bytes], ct_tree: TreeLevels
) -> None:
    assert ct_tree.consistency_proof(size1, size2) == proof
    verify_consistency(size1, size2, proof, CT_ROOTS[size1 - 1], CT_ROOTS[size2 - 1])


def _corrupt_inclusion(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, tuple[int, int, bytes, list[bytes], bytes]]]:
    """transparency-dev corruptInclusionProof: (desc, (index, size, leaf, proof, root))."""
    probes = [
        ("leafIndex - 1", (index - 1, size, leaf, proof, root)),
        ("leafIndex + 1", (index + 1, size, leaf, proof, root)),
        ("leafIndex ^ 2", (index ^ 2, size, leaf, proof, root)),
        ("treeSize * 2", (index, size * 2, leaf, proof, root)),
        ("treeSize / 2", (index, size // 2, leaf, proof, root)),
        ("wrong leaf", (index, size, b"WrongLeaf", proof, root)),
        ("empty root", (index, size, leaf, proof, EMPTY_ROOT)),
        ("random root", (index, size, leaf, proof, SOME_HASH)),
        ("trailing garbage", (index, size, leaf, [*proof, b""], root)),
        ("trailing root", (index, size, leaf, [*proof, root], root)),
        ("preceding garbage", (index, size, leaf, [b"", *proof], root)),
        ("preceding root", (index, size, leaf, [root, *proof], root)),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 8]) + wrong[i][1:]
        probes.append((f"modified proof[{i}] bit 3", (index, size, leaf, wrong, root)))
    if proof:
        probes.append(("removed component", (index, size, leaf, proof[:-1], root)))
    if len(proof) > 1:
        wrong = [proof[0], SOME_HASH, *proof[1:]]
        probes.append(("inserted component", (index, size, leaf, wrong, root)))
    return probes


@pytest.mark.parametrize(("leaf", "size", "proof"), CT_INCLUSION_PROOFS)
def test_ct_corrupted_inclusion_proofs_rejected(leaf: int, size: int, proof: list[bytes]) -> None:
    probes = _corrupt_inclusion(leaf - 1, size, proof, CT_ROOTS[size - 1], CT_LEAF_HASHES[leaf - 1])
    accepted = []
    for desc, (i, n, lh, p, r) in probes:
        try:
            verify_inclusion(i, n, lh, p, r)
        except InclusionProofError:
            continue
        accepted.append(desc)
    assert accepted == []


@pytest.mark.parametrize(("size1", "size2", "proof"), CT_CONSISTENCY_PROOFS[1:])
def test_ct_corrupted_consistency_proofs_rejected(
    size1: int, size2: int, proof: list[bytes]
) -> None:
    """transparency-dev corruptConsistencyProof, for every non-trivial proof."""
    root1, root2 = CT_ROOTS[size1 - 1], CT_ROOTS[size2 - 1]
    probes: list[tuple[str, tuple[int, int, list[bytes], bytes, bytes]]] = [
        ("size1 - 1", (size1 - 1, size2, proof, root1, root2)),
        ("size1 + 1", (size1 + 1, size2, proof, root1, root2)),
        ("size1 ^ 2", (size1 ^ 2, size2, proof, root1, root2)),
        ("size2 * 2", (size1, size2 * 2, proof, root1, root2)),
        ("size2 / 2", (size1, size2 // 2, proof, root1, root2)),
        ("wrong root1", (size1, size2, proof, b"WrongRoot", root2)),
        ("wrong root2", (size1, size2, proof, root1, b"WrongRoot")),
        ("swapped roots", (size1, size2, proof, root2, root1)),
        ("empty proof", (size1, size2, [], root1, root2)),
        ("trailing garbage", (size1, size2, [*proof, b""], root1, root2)),
        ("trailing root1", (size1, size2, [*proof, root1], root1, root2)),
        ("trailing root2", (size1, size2, [*proof, root2], root1, root2)),
        ("preceding garbage", (size1, size2, [b"", *proof], root1, root2)),
        ("preceding root1", (size1, size2, [root1, *proof], root1, root2)),
        ("preceding root2", (size1, size2, [root2, *proof], root1, root2)),
        ("preceding proof[0]", (size1, size2, [proof[0], *proof], root1, root2)),
        ("truncated proof", (size1, size2, proof[:-1], root1, root2)),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 16]) + wrong[i][1:]
        probes.append((f"modified proof[{i}] bit 4", (size1, size2, wrong, root1, root2)))
    accepted = []
    for desc, (m, n, p, r1, r2) in probes:
        try:
            verify_consistency(m, n, p, r1, r2)
        except ConsistencyProofError:
            continue
        accepted.append(desc)
    assert accepted == []


# --- proof node IDs (transparency-dev proof/proof_test.go) ------------------------


def _go_nodes(ids: list[tuple[int, int]], begin: int = 0, end: int = 0) -> list[list[Any]]:
    """Convert Go's Nodes{IDs, begin, end} to our groups (rehash range -> one group).

    Go lists a rehashed range lowest level first; our groups list the perfect
    nodes left to right, i.e. reversed.
    """
    if end - begin < 2:
        return [[i] for i in ids]
    singles = [[i] for i in ids]
    return [*singles[:begin], list(reversed(ids[begin:end])), *singles[end:]]


@pytest.mark.parametrize(
    ("size", "index", "want"),
    [
        (1, 0, _go_nodes([])),
        (2, 0, _go_nodes([(0, 1)])),
        (2, 1, _go_nodes([(0, 0)])),
        (3, 1, _go_nodes([(0, 0), (0, 2)])),
        (7, 0, _go_nodes([(0, 1), (1, 1), (0, 6), (1, 2)], 2, 4)),
        (7, 1, _go_nodes([(0, 0), (1, 1), (0, 6), (1, 2)], 2, 4)),
        (7, 2, _go_nodes([(0, 3), (1, 0), (0, 6), (1, 2)], 2, 4)),
        (7, 3, _go_nodes([(0, 2), (1, 0), (0, 6), (1, 2)], 2, 4)),
        (7, 4, _go_nodes([(0, 5), (0, 6), (2, 0)])),
        (7, 5, _go_nodes([(0, 4), (0, 6), (2, 0)])),
        (7, 6, _go_nodes([(1, 2), (2, 0)])),
        (4, 2, _go_nodes([(0, 3), (1, 0)])),
        (5, 3, _go_nodes([(0, 2), (1, 0), (0, 4)])),
        (6, 3, _go_nodes([(0, 2), (1, 0), (1, 2)])),
        (6, 4, _go_nodes([(0, 5), (2, 0)])),
        (15, 10, _go_nodes([(0, 11), (1, 4), (0, 14), (1, 6), (3, 0)], 2, 4)),
        (31, 24, _go_nodes([(0, 25), (1, 13), (0, 30), (1, 14), (3, 2), (4, 0)], 2, 4)),
        (
            95,
            81,
            _go_nodes([(0, 80), (1, 41), (2, 21), (0, 94), (1, 46), (2, 22), (4, 4), (6, 0)], 3, 6),
        ),
    ],
)
def test_inclusion_nodes_match_transparency_dev(size: int, index: int, want: list[Any]) -> None:
    assert merkle_levels._inclusion_nodes(index, size) == want


@pytest.mark.parametrize(
    ("size1", "size2", "want"),
    [
        (1, 2, _go_nodes([(0, 1)])),
        (1, 4, _go_nodes([(0, 1), (1, 1)])),
        (1, 6, _go_nodes([(0, 1), (1, 1), (1, 2)])),
        (2, 3, _go_nodes([(0, 2)])),
        (2, 8, _go_nodes([(1, 1), (2, 1)])),
        (3, 7, _go_nodes([(0, 2), (0, 3), (1, 0), (0, 6), (1, 2)], 3, 5)),
        (4, 7, _go_nodes([(0, 6), (1, 2)], 0, 2)),
        (5, 7, _go_nodes([(0, 4), (0, 5), (0, 6), (2, 0)])),
        (6, 7, _go_nodes([(1, 2), (0, 6), (2, 0)])),
        (7, 8, _go_nodes([(0, 6), (0, 7), (1, 2), (2, 0)])),
        (1, 1, _go_nodes([])),
        (8, 8, _go_nodes([])),
        (2, 4, _go_nodes([(1, 1)])),
        (3, 5, _go_nodes([(0, 2), (0, 3), (1, 0), (0, 4)])),
        (3, 6, _go_nodes([(0, 2), (0, 3), (1, 0), (1, 2)])),
        (4, 6, _go_nodes([(1, 2)])),
        (1, 7, _go_nodes([(0, 1), (1, 1), (0, 6), (1, 2)], 2, 4)),
        (10, 15, _go_nodes([(1, 4), (1, 5), (0, 14), (1, 6), (3, 0)], 2, 4)),
        (24, 31, _go_nodes([(3, 2), (0, 30), (1, 14), (2, 6), (4, 0)], 1, 4)),
        (
            81,
            95,
            _go_nodes(
                [(0, 80), (0, 81), (1, 41), (2, 21), (0, 94), (1, 46), (2, 22), (4, 4), (6, 0)],
                4,
                7,
            ),
        ),
    ],
)
def test_consistency_nodes_match_transparency_dev(size1: int, size2: int, want: list[Any]) -> None:
    assert merkle_levels._consistency_nodes(size1, size2) == want


# --- verification guards: one test per mutation ------------------------------------

LEAF = CT_LEAF_HASHES[5]
PROOF_5_8 = CT_INCLUSION_PROOFS[2][2]
ROOT8 = CT_ROOTS[7]
ROOT6 = CT_ROOTS[5]
CONS_6_8 = CT_CONSISTENCY_PROOFS[2][2]


def test_happy_path_verifies() -> None:
    verify_inclusion(5, 8, LEAF, PROOF_5_8, ROOT8)
    verify_consistency(6, 8, CONS_6_8, ROOT6, ROOT8)


def test_errors_are_verification_errors() -> None:
    assert issubclass(InclusionProofError, VerificationError)
    assert issubclass(ConsistencyProofError, VerificationError)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (2, 1), (8, 8), (-1, 8)])
def test_index_beyond_size_rejected(index: int, size: int) -> None:
    with pytest.raises(InclusionProofError):
        root_from_inclusion_proof(index, size, LEAF, [])
    with pytest.raises(InclusionProofError):
        verify_inclusion(index, size, LEAF, [], EMPTY_ROOT)


def test_size_beyond_uint64_rejected() -> None:
    with pytest.raises(InclusionProofError):
        verify_inclusion(0, MAX_TREE_SIZE + 1, LEAF, [SOME_HASH] * 64, ROOT8)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(1, MAX_TREE_SIZE + 1, [SOME_HASH] * 64, ROOT6, ROOT8)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(-1, 8, [], ROOT6, ROOT8)


def test_wrong_leaf_rejected() -> None:
    with pytest.raises(InclusionProofError):
        verify_inclusion(5, 8, CT_LEAF_HASHES[4], PROOF_5_8, ROOT8)


@pytest.mark.parametrize("length", [0, 9, 31, 33, 64])
def test_short_or_long_leaf_hash_rejected(length: int) -> None:
    with pytest.raises(InclusionProofError):
        verify_inclusion(5, 8, b"\x00" * length, PROOF_5_8, ROOT8)


@pytest.mark.parametrize("length", [0, 31, 33])
def test_short_or_long_root_rejected(length: int) -> None:
    with pytest.raises(InclusionProofError):
        verify_inclusion(5, 8, LEAF, PROOF_5_8, ROOT8[:length] + b"\x00" * (length - 32))
    with pytest.raises(ConsistencyProofError):
        verify_consistency(6, 8, CONS_6_8, b"\x00" * length, ROOT8)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(6, 8, CONS_6_8, ROOT6, b"\x00" * length)


def test_short_proof_hash_rejected() -> None:
    with pytest.raises(InclusionProofError):
        verify_inclusion(5, 8, LEAF, [PROOF_5_8[0][:31], *PROOF_5_8[1:]], ROOT8)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(6, 8, [CONS_6_8[0][:31], *CONS_6_8[1:]], ROOT6, ROOT8)


def test_trailing_garbage_rejected() -> None:
    with pytest.raises(InclusionProofError):
        verify_inclusion(5, 8, LEAF, [*PROOF_5_8, SOME_HASH], ROOT8)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(6, 8, [*CONS_6_8, SOME_HASH], ROOT6, ROOT8)


def test_removed_component_rejected() -> None:
    with pytest.raises(InclusionProofError):
        verify_inclusion(5, 8, LEAF, PROOF_5_8[:-1], ROOT8)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(6, 8, CONS_6_8[:-1], ROOT6, ROOT8)


def test_swapped_roots_rejected() -> None:
    with pytest.raises(ConsistencyProofError):
        verify_consistency(6, 8, CONS_6_8, ROOT8, ROOT6)


def test_wrong_root1_rejected() -> None:
    with pytest.raises(ConsistencyProofError):
        verify_consistency(6, 8, CONS_6_8, SOME_HASH, ROOT8)


def test_wrong_root2_rejected() -> None:
    with pytest.raises(ConsistencyProofError):
        verify_consistency(6, 8, CONS_6_8, ROOT6, SOME_HASH)


def test_size1_greater_than_size2_rejected() -> None:
    """Time travel to the past."""
    with pytest.raises(ConsistencyProofError):
        verify_consistency(8, 6, CONS_6_8, ROOT8, ROOT6)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(1, 0, [], CT_ROOTS[0], EMPTY_ROOT)


def test_empty_proof_rejected() -> None:
    with pytest.raises(ConsistencyProofError):
        verify_consistency(6, 8, [], ROOT6, ROOT8)


def test_equal_sizes_with_non_empty_proof_rejected() -> None:
    with pytest.raises(ConsistencyProofError):
        verify_consistency(8, 8, [EMPTY_ROOT], ROOT8, ROOT8)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(0, 0, [EMPTY_ROOT], EMPTY_ROOT, EMPTY_ROOT)


def test_equal_sizes_with_different_roots_rejected() -> None:
    with pytest.raises(ConsistencyProofError):
        verify_consistency(8, 8, [], ROOT8, ROOT6)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(0, 0, [], EMPTY_ROOT, ROOT6)


def test_equal_sizes_with_equal_roots_accepted() -> None:
    verify_consistency(8, 8, [], ROOT8, ROOT8)
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)


def test_from_empty_tree_accepts_any_later_root() -> None:
    verify_consistency(0, 1, [], EMPTY_ROOT, CT_ROOTS[0])
    verify_consistency(0, 8, [], EMPTY_ROOT, SOME_HASH)


def test_from_empty_tree_with_non_empty_proof_rejected() -> None:
    with pytest.raises(ConsistencyProofError):
        verify_consistency(0, 1, [EMPTY_ROOT], EMPTY_ROOT, CT_ROOTS[0])


def test_from_empty_tree_with_wrong_root1_rejected() -> None:
    """hashfed is stricter than Go: a size-0 tree must have the empty-tree root."""
    with pytest.raises(ConsistencyProofError):
        verify_consistency(0, 8, [], ROOT6, ROOT8)


def test_single_entry_tree() -> None:
    """transparency-dev TestVerifyInclusionSingleEntry: root == leaf hash."""
    h = leaf_hash(b"data")
    verify_inclusion(0, 1, h, [], h)
    for leaf, root in ((h, b""), (b"", h), (b"", b"")):
        with pytest.raises(InclusionProofError):
            verify_inclusion(0, 1, leaf, [], root)


@pytest.mark.parametrize("size", [1, 2, 3, 2**32 + 1, 2**63, MAX_TREE_SIZE])
def test_proof_length_bounds(size: int) -> None:
    """The longest proofs of a size fit the documented maxima; one more is rejected."""
    index = 0
    inner, border = merkle_verify._decomp_incl_proof(index, size)
    assert inner + border == (size - 1).bit_length() <= MAX_INCLUSION_PROOF_HASHES
    proof = [SOME_HASH] * (inner + border)
    root = root_from_inclusion_proof(index, size, LEAF, proof)
    verify_inclusion(index, size, LEAF, proof, root)
    with pytest.raises(InclusionProofError):
        verify_inclusion(index, size, LEAF, [*proof, SOME_HASH], root)


def test_longest_proofs_reach_the_maxima() -> None:
    assert sum(merkle_verify._decomp_incl_proof(0, MAX_TREE_SIZE)) == MAX_INCLUSION_PROOF_HASHES
    # size1 odd, size2 just above 2^63: the seed plus a 64-hash path.
    size1, size2 = 3, 2**63 + 1
    inner, border = merkle_verify._decomp_incl_proof(size1 - 1, size2)
    assert 1 + inner + border == MAX_CONSISTENCY_PROOF_HASHES


def test_guards_run_before_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_hashing(*_: object) -> None:
        raise AssertionError("hashed before every guard ran")

    monkeypatch.setattr(merkle_verify, "sha256", no_hashing)
    bad_inclusion: list[tuple[int, int, bytes, list[bytes], bytes]] = [
        (8, 8, LEAF, PROOF_5_8, ROOT8),
        (5, 8, LEAF[:31], PROOF_5_8, ROOT8),
        (5, 8, LEAF, [*PROOF_5_8, SOME_HASH], ROOT8),
        (5, 8, LEAF, [PROOF_5_8[0][:31], *PROOF_5_8[1:]], ROOT8),
        (5, 8, LEAF, PROOF_5_8, ROOT8[:31]),
    ]
    for args in bad_inclusion:
        with pytest.raises(InclusionProofError):
            verify_inclusion(*args)
    bad_consistency: list[tuple[int, int, list[bytes], bytes, bytes]] = [
        (8, 6, CONS_6_8, ROOT6, ROOT8),
        (6, 8, [], ROOT6, ROOT8),
        (6, 8, CONS_6_8[:-1], ROOT6, ROOT8),
        (6, 8, [CONS_6_8[0][:31], *CONS_6_8[1:]], ROOT6, ROOT8),
        (6, 8, CONS_6_8, ROOT6[:31], ROOT8),
        (6, 8, CONS_6_8, ROOT6, ROOT8[:31]),
        (0, 8, [SOME_HASH], EMPTY_ROOT, ROOT8),
        (8, 8, [SOME_HASH], ROOT8, ROOT8),
    ]
    for cargs in bad_consistency:
        with pytest.raises(ConsistencyProofError):
            verify_consistency(*cargs)


# --- generation arguments ------------------------------------------------------------


def test_proofs_beyond_tree_size_raise_value_error(ct_tree: TreeLevels) -> None:
    for call in (
        lambda: ct_tree.inclusion_proof(0, 9),
        lambda: ct_tree.inclusion_proof(8, 8),
        lambda: ct_tree.inclusion_proof(-1, 8),
        lambda: ct_tree.consistency_proof(5, 9),
        lambda: ct_tree.consistency_proof(6, 5),
        lambda: ct_tree.consistency_proof(-1, 5),
        lambda: ct_tree.root(9),
        lambda: ct_tree.root(-1),
        lambda: ct_tree.compact_range(9),
    ):
        with pytest.raises(ValueError, match="outside"):
            call()


def test_bad_leaf_hash_length_rejected_before_any_append() -> None:
    tree = TreeLevels(CT_LEAF_HASHES[:3])
    compact = tree.compact_range()
    for bad in ([CT_LEAF_HASHES[3], b"short"], [b"\x00" * 31, b"\x00" * 33]):
        with pytest.raises(ValueError, match="32 bytes"):
            tree.append_many(bad)
        with pytest.raises(ValueError, match="32 bytes"):
            compact.extend(bad)
        with pytest.raises(ValueError, match="32 bytes"):
            root_from_leaf_hashes(bad)
    with pytest.raises(ValueError, match="32 bytes"):
        compact.append(b"short")
    assert tree.size == compact.size == 3
    assert tree.root() == compact.root() == CT_ROOTS[2]


# --- CompactRange ---------------------------------------------------------------


def test_compact_range_copy_is_independent() -> None:
    a = CompactRange()
    a.extend(CT_LEAF_HASHES[:5])
    b = a.copy()
    b.append(CT_LEAF_HASHES[5])
    assert (a.size, a.root()) == (5, CT_ROOTS[4])
    assert (b.size, b.root()) == (6, CT_ROOTS[5])
    assert a != b


def test_compact_range_serialization_layout() -> None:
    compact = CompactRange()
    compact.extend(CT_LEAF_HASHES[:6])
    data = compact.to_bytes()
    assert data[:8] == (6).to_bytes(8, "big")
    assert len(data) == 8 + 2 * 32  # 6 = 0b110: subtrees of 4 and 2 leaves
    assert data[8:40] == CT_ROOTS[3]  # the first 4 leaves, largest first
    assert CompactRange.from_bytes(data) == compact
    assert CompactRange.from_bytes((0).to_bytes(8, "big")).root() == EMPTY_ROOT


@st.composite
def compact_ranges(draw: st.DrawFn) -> CompactRange:
    size = draw(st.integers(min_value=0, max_value=MAX_TREE_SIZE))
    hashes = draw(
        st.lists(
            st.binary(min_size=32, max_size=32),
            min_size=size.bit_count(),
            max_size=size.bit_count(),
        )
    )
    return CompactRange(size, hashes)


@settings(max_examples=50)
@given(compact_ranges())
def test_compact_range_serialization_round_trips(compact: CompactRange) -> None:
    data = compact.to_bytes()
    assert len(data) == 8 + 32 * compact.size.bit_count()
    again = CompactRange.from_bytes(data)
    assert again == compact
    assert again.hashes == compact.hashes
    assert again.to_bytes() == data


@settings(max_examples=50)
@given(compact_ranges(), st.sampled_from(["extra-hash", "missing-hash", "truncated", "empty"]))
def test_compact_range_malformed_bytes_rejected(compact: CompactRange, mutation: str) -> None:
    data = compact.to_bytes()
    bad = {
        "extra-hash": data + SOME_HASH,
        "missing-hash": data[:-32] if compact.size else data + SOME_HASH,
        "truncated": data[:-1],
        "empty": b"",
    }[mutation]
    with pytest.raises(ValueError, match=r"bytes|hashes"):
        CompactRange.from_bytes(bad)


def test_compact_range_constructor_validates() -> None:
    with pytest.raises(ValueError, match="needs 2 hashes"):
        CompactRange(3, [SOME_HASH])
    with pytest.raises(ValueError, match="32 bytes"):
        CompactRange(1, [b"short"])
    with pytest.raises(ValueError, match="outside"):
        CompactRange(-1, [])
    with pytest.raises(ValueError, match="outside"):
        CompactRange(MAX_TREE_SIZE + 1, [SOME_HASH] * 65)


def test_compact_range_refuses_to_overflow_uint64() -> None:
    full = CompactRange(MAX_TREE_SIZE, [SOME_HASH] * 64)
    with pytest.raises(OverflowError):
        full.append(SOME_HASH)
    with pytest.raises(OverflowError):
        full.extend([SOME_HASH])
    assert full.size == MAX_TREE_SIZE


# --- properties over random trees ------------------------------------------------------


def _leaf_hashes(size: int, salt: bytes) -> list[bytes]:
    # Distinct leaves: with duplicates, swapping two equal siblings is no change.
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(size)]


@st.composite
def inclusion_cases(draw: st.DrawFn) -> tuple[int, int, bytes, list[bytes], bytes]:
    size = draw(st.integers(min_value=1, max_value=130))
    index = draw(st.integers(min_value=0, max_value=size - 1))
    leaves = _leaf_hashes(size, draw(st.binary(max_size=8)))
    tree = TreeLevels(leaves)
    return index, size, leaves[index], tree.inclusion_proof(index, size), tree.root()


@st.composite
def consistency_cases(draw: st.DrawFn) -> tuple[int, int, list[bytes], bytes, bytes]:
    size2 = draw(st.integers(min_value=2, max_value=130))
    size1 = draw(st.integers(min_value=1, max_value=size2 - 1))
    tree = TreeLevels(_leaf_hashes(size2, draw(st.binary(max_size=8))))
    return size1, size2, tree.consistency_proof(size1, size2), tree.root(size1), tree.root()


def _flip_bit(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


FAST = settings(max_examples=30, deadline=None)


@FAST
@given(inclusion_cases())
def test_every_inclusion_proof_verifies(case: tuple[int, int, bytes, list[bytes], bytes]) -> None:
    index, size, leaf, proof, root = case
    assert root_from_inclusion_proof(index, size, leaf, proof) == root
    verify_inclusion(index, size, leaf, proof, root)


@FAST
@given(consistency_cases())
def test_every_consistency_proof_verifies(
    case: tuple[int, int, list[bytes], bytes, bytes],
) -> None:
    verify_consistency(*case)


@FAST
@given(inclusion_cases(), st.data())
def test_flipped_proof_bit_rejected(
    case: tuple[int, int, bytes, list[bytes], bytes], data: st.DataObject
) -> None:
    index, size, leaf, proof, root = case
    if not proof:
        return
    i = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    bad = [*proof[:i], _flip_bit(proof[i], bit), *proof[i + 1 :]]
    with pytest.raises(InclusionProofError):
        verify_inclusion(index, size, leaf, bad, root)


@FAST
@given(inclusion_cases(), st.integers(0, 255))
def test_flipped_leaf_bit_rejected(
    case: tuple[int, int, bytes, list[bytes], bytes], bit: int
) -> None:
    index, size, leaf, proof, root = case
    with pytest.raises(InclusionProofError):
        verify_inclusion(index, size, _flip_bit(leaf, bit), proof, root)


@FAST
@given(inclusion_cases(), st.integers(0, 255))
def test_flipped_root_bit_rejected(
    case: tuple[int, int, bytes, list[bytes], bytes], bit: int
) -> None:
    index, size, leaf, proof, root = case
    with pytest.raises(InclusionProofError):
        verify_inclusion(index, size, leaf, proof, _flip_bit(root, bit))


@FAST
@given(inclusion_cases(), st.data())
def test_wrong_index_rejected(
    case: tuple[int, int, bytes, list[bytes], bytes], data: st.DataObject
) -> None:
    index, size, leaf, proof, root = case
    other = data.draw(st.sampled_from([i for i in range(-1, size + 1) if i != index]))
    with pytest.raises(InclusionProofError):
        verify_inclusion(other, size, leaf, proof, root)


@FAST
@given(inclusion_cases(), st.sampled_from(["mul-2", "div-2"]))
def test_wrong_tree_size_rejected(
    case: tuple[int, int, bytes, list[bytes], bytes], mutation: str
) -> None:
    # Only these two: an inclusion proof alone does not always bind the size
    # (leaf 0 has the same proof and root in trees of 3 and 4 leaves built
    # over the same hashes); the signed checkpoint binds size to root.
    index, size, leaf, proof, root = case
    other = size * 2 if mutation == "mul-2" else size // 2
    with pytest.raises(InclusionProofError):
        verify_inclusion(index, other, leaf, proof, root)


@FAST
@given(consistency_cases(), st.data())
def test_flipped_consistency_proof_bit_rejected(
    case: tuple[int, int, list[bytes], bytes, bytes], data: st.DataObject
) -> None:
    size1, size2, proof, root1, root2 = case
    i = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    bad = [*proof[:i], _flip_bit(proof[i], bit), *proof[i + 1 :]]
    with pytest.raises(ConsistencyProofError):
        verify_consistency(size1, size2, bad, root1, root2)


@FAST
@given(consistency_cases(), st.integers(0, 255), st.booleans())
def test_flipped_consistency_root_bit_rejected(
    case: tuple[int, int, list[bytes], bytes, bytes], bit: int, first: bool
) -> None:
    size1, size2, proof, root1, root2 = case
    if first:
        root1 = _flip_bit(root1, bit)
    else:
        root2 = _flip_bit(root2, bit)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(size1, size2, proof, root1, root2)


@FAST
@given(consistency_cases())
def test_swapped_consistency_roots_rejected(
    case: tuple[int, int, list[bytes], bytes, bytes],
) -> None:
    size1, size2, proof, root1, root2 = case
    with pytest.raises(ConsistencyProofError):
        verify_consistency(size1, size2, proof, root2, root1)


@FAST
@given(consistency_cases(), st.sampled_from(["size1-sub-1", "size1-plus-1", "size1-xor-2",
                                            "size2-mul-2", "size2-div-2"]))  # fmt: skip
def test_wrong_consistency_sizes_rejected(
    case: tuple[int, int, list[bytes], bytes, bytes], mutation: str
) -> None:
    size1, size2, proof, root1, root2 = case
    m, n = {
        "size1-sub-1": (size1 - 1, size2),
        "size1-plus-1": (size1 + 1, size2),
        "size1-xor-2": (size1 ^ 2, size2),
        "size2-mul-2": (size1, size2 * 2),
        "size2-div-2": (size1, size2 // 2),
    }[mutation]
    with pytest.raises(ConsistencyProofError):
        verify_consistency(m, n, proof, root1, root2)


@FAST
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=80), st.data())
def test_compact_range_matches_root_from_leaf_hashes(
    hashes: list[bytes], data: st.DataObject
) -> None:
    split = data.draw(st.integers(0, len(hashes)))
    compact = CompactRange()
    compact.extend(hashes[:split])
    for h in hashes[split:]:
        compact.append(h)
    tree = TreeLevels(hashes[:split])
    tree.append_many(hashes[split:])
    assert compact.root() == root_from_leaf_hashes(hashes) == tree.root()
    assert compact == tree.compact_range()


# --- JSON vectors -------------------------------------------------------------------------


def _load_generator() -> ModuleType:
    path = VECTORS / "generate_merkle.py"
    spec = importlib.util.spec_from_file_location("generate_merkle", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vector_files() -> list[Path]:
    return sorted((VECTORS / "merkle").rglob("*.json"))


def test_vectors_are_up_to_date(tmp_path: Path) -> None:
    _load_generator().generate(tmp_path)
    committed = {p.relative_to(VECTORS / "merkle") for p in _vector_files()}
    fresh = {p.relative_to(tmp_path) for p in tmp_path.rglob("*.json")}
    assert committed == fresh
    stale = [
        str(rel)
        for rel in sorted(fresh)
        if (tmp_path / rel).read_bytes() != (VECTORS / "merkle" / rel).read_bytes()
    ]
    assert stale == [], "run tests/vectors/generate_merkle.py and review the diff"


def _run_inclusion(p: dict[str, Any]) -> None:
    verify_inclusion(
        p["leafIndex"],
        p["treeSize"],
        dh(p["leafHash"]),
        [dh(h) for h in p["proof"]],
        dh(p["root"]),
    )


def _run_consistency(p: dict[str, Any]) -> None:
    verify_consistency(
        p["size1"], p["size2"], [dh(h) for h in p["proof"]], dh(p["root1"]), dh(p["root2"])
    )


@pytest.mark.parametrize("path", _vector_files(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_vectors(path: Path) -> None:
    run: Callable[[dict[str, Any]], None]
    error: type[VerificationError]
    if path.parent.name == "inclusion":
        run, error = _run_inclusion, InclusionProofError
    else:
        run, error = _run_consistency, ConsistencyProofError
    vector = json.loads(path.read_text(encoding="utf-8"))
    wrong = []  # collect every failure, as transparency-dev's runner does
    for probe in vector["probes"]:
        try:
            run(probe)
        except error:
            if not probe["wantErr"]:
                wrong.append(f"rejected: {probe['mutation']}")
        else:
            if probe["wantErr"]:
                wrong.append(f"accepted: {probe['mutation']}")
    assert wrong == []
    assert vector["probes"][0]["mutation"] == "happy-path"


def test_vectors_cover_the_published_proofs() -> None:
    data = json.loads((VECTORS / "merkle/consistency/6-to-8.json").read_text())
    assert [dh(h) for h in data["probes"][0]["proof"]] == CT_CONSISTENCY_PROOFS[2][2]
    data = json.loads((VECTORS / "merkle/inclusion/5-of-8.json").read_text())
    assert [dh(h) for h in data["probes"][0]["proof"]] == CT_INCLUSION_PROOFS[2][2]


# --- speed ------------------------------------------------------------------------------


@pytest.mark.serial  # it measures time (see tests/conftest.py)
def test_compact_range_extend_is_fast() -> None:
    """A smoke check at 50k leaves; the 1M figures are in the module report."""
    hashes = [i.to_bytes(32, "big") for i in range(50_000)]
    start = time.perf_counter()
    compact = CompactRange()
    compact.extend(hashes)
    elapsed = time.perf_counter() - start
    assert compact.size == len(hashes)
    assert elapsed < 1.0
