"""Generate the Merkle proof test vectors in tests/vectors/merkle/.

Usage (from the repository root)::

    .venv/bin/python tests/vectors/generate_merkle.py [--out DIR]

Output is deterministic; tests/unit/crypto/test_merkle.py regenerates it into
a temporary folder and diffs it with the committed files, and checks every
probe against crypto.merkle.

Layout, modelled on transparency-dev/merkle ``testdata/``: one JSON file per
scenario, ``inclusion/<index>-of-<size>.json`` and
``consistency/<size1>-to-<size2>.json``. Each file holds the scenario's
``desc``, how its leaves were made, and a list of ``probes``; each probe names
the ``mutation`` it applies (``happy-path``, ``wrong-leaf``,
``swapped-roots``, ``modified-proof@1-bit-@3``, ...), carries every input of
the verifier (hashes in lowercase hex) and ``wantErr``. The mutation set
follows transparency-dev ``proof/verify_test.go`` (``corruptInclusionProof``,
``corruptConsistencyProof``), plus hashfed's own guards (short hashes, the
empty-tree root).

Leaves: indices 0-7 are the eight leaves of the certificate-transparency
tests (hex ``""``, ``00``, ``10``, ``2021``, ``3031``, ``40414243``,
``5051525354555657``, ``606162636465666768696a6b6c6d6e6f``); leaf ``i >= 8``
is the ASCII text ``hashfed vector leaf <i>``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from crypto.merkle import EMPTY_ROOT, TreeLevels, leaf_hash

DEFAULT_OUT = Path(__file__).resolve().parent / "merkle"

CT_LEAVES_HEX = (
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)
LEAVES_DESC = (
    "leaves 0-7: the certificate-transparency test leaves "
    + ", ".join(repr(x) for x in CT_LEAVES_HEX)
    + " (hex); leaf i >= 8: ASCII 'hashfed vector leaf <i>'"
)
MAX_LEAVES = 100

# (leaf index, tree size). The first five are transparency-dev's published
# inclusion proofs (verify_test.go, 1-based there).
INCLUSION_SCENARIOS = ((0, 1), (0, 8), (5, 8), (2, 3), (1, 5), (12, 13), (40, 100), (63, 65))
# (size1, size2). The first four are transparency-dev's published proofs.
CONSISTENCY_SCENARIOS = (
    (1, 8), (6, 8), (2, 5), (6, 7), (4, 13), (7, 100), (64, 65), (0, 5), (5, 5),
)  # fmt: skip

SOME_HASH = hashlib.sha256(b"hashfed vector: some other hash").digest()
WRONG_LEAF = leaf_hash(b"hashfed vector: wrong leaf")


def leaf_data(i: int) -> bytes:
    if i < len(CT_LEAVES_HEX):
        return bytes.fromhex(CT_LEAVES_HEX[i])
    return f"hashfed vector leaf {i}".encode()


def _flip(h: bytes, bit: int) -> bytes:
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


def _inclusion_probe(
    mutation: str,
    index: int,
    size: int,
    leaf: bytes,
    proof: list[bytes],
    root: bytes,
    want_err: bool = True,
) -> dict[str, Any]:
    return {
        "mutation": mutation,
        "leafIndex": index,
        "treeSize": size,
        "leafHash": leaf.hex(),
        "proof": [h.hex() for h in proof],
        "root": root.hex(),
        "wantErr": want_err,
    }


def inclusion_probes(
    index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes
) -> list[dict[str, Any]]:
    def probe(
        mutation: str,
        *,
        i: int = index,
        n: int = size,
        lh: bytes = leaf,
        p: list[bytes] = proof,
        r: bytes = root,
    ) -> dict[str, Any]:
        return _inclusion_probe(mutation, i, n, lh, p, r)

    probes = [
        _inclusion_probe("happy-path", index, size, leaf, proof, root, want_err=False),
        probe("leaf-index-sub-@1", i=index - 1),
        probe("leaf-index-plus-@1", i=index + 1),
        probe("leaf-index-XOR-@2", i=index ^ 2),
        probe("tree-size-mul-@2", n=size * 2),
        probe("tree-size-div-@2", n=size // 2),
        probe("wrong-leaf", lh=WRONG_LEAF),
        probe("short-leaf-hash", lh=b"WrongLeaf"),
        probe("empty-root", r=EMPTY_ROOT),
        probe("random-root", r=SOME_HASH),
        probe("short-root", r=root[:31]),
        probe("trailing-garbage", p=[*proof, b""]),
        probe("trailing-root", p=[*proof, root]),
        probe("preceding-garbage", p=[b"", *proof]),
        probe("preceding-root", p=[root, *proof]),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = _flip(wrong[i], 3)
        probes.append(probe(f"modified-proof@{i}-bit-@3", p=wrong))
    if proof:
        probes.append(probe("removed-component", p=proof[:-1]))
        probes.append(probe("short-proof-hash", p=[proof[0][:31], *proof[1:]]))
    if len(proof) > 1:
        probes.append(probe("inserted-component", p=[proof[0], SOME_HASH, *proof[1:]]))
    return probes


def consistency_probes(
    size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes
) -> list[dict[str, Any]]:
    def probe(
        mutation: str,
        *,
        m: int = size1,
        n: int = size2,
        p: list[bytes] = proof,
        r1: bytes = root1,
        r2: bytes = root2,
        want_err: bool = True,
    ) -> dict[str, Any]:
        return {
            "mutation": mutation,
            "size1": m,
            "size2": n,
            "proof": [h.hex() for h in p],
            "root1": r1.hex(),
            "root2": r2.hex(),
            "wantErr": want_err,
        }

    if size1 == size2:
        return [
            probe("happy-path", want_err=False),
            probe("different-roots", r2=SOME_HASH),
            probe("non-empty-proof", p=[root1]),
            probe("size1-plus-@1", m=size1 + 1),
        ]
    if size1 == 0:
        return [
            probe("happy-path", want_err=False),
            # Every tree is consistent with the empty tree.
            probe("any-root2", r2=SOME_HASH, want_err=False),
            probe("non-empty-proof", p=[root2]),
            probe("wrong-root1", r1=SOME_HASH),
            probe("short-root2", r2=root2[:31]),
        ]

    probes = [
        probe("happy-path", want_err=False),
        probe("size1-sub-@1", m=size1 - 1),
        probe("size1-plus-@1", m=size1 + 1),
        probe("size1-XOR-@2", m=size1 ^ 2),
        probe("size2-mul-@2", n=size2 * 2),
        probe("size2-div-@2", n=size2 // 2),
        probe("wrong-root1", r1=SOME_HASH),
        probe("wrong-root2", r2=SOME_HASH),
        probe("short-root1", r1=root1[:31]),
        probe("swapped-roots", r1=root2, r2=root1),
        probe("empty-proof", p=[]),
        probe("trailing-garbage", p=[*proof, b""]),
        probe("trailing-root1", p=[*proof, root1]),
        probe("trailing-root2", p=[*proof, root2]),
        probe("preceding-garbage", p=[b"", *proof]),
        probe("preceding-root1", p=[root1, *proof]),
        probe("preceding-root2", p=[root2, *proof]),
        probe("preceding-proof-@0", p=[proof[0], *proof]),
        probe("truncated-proof", p=proof[:-1]),
        probe("short-proof-hash", p=[proof[0][:31], *proof[1:]]),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = _flip(wrong[i], 4)
        probes.append(probe(f"modified-proof@{i}-bit-@4", p=wrong))
    return probes


def build() -> dict[str, dict[str, Any]]:
    """Return every vector file, keyed by its path relative to the output dir."""
    tree = TreeLevels(leaf_hash(leaf_data(i)) for i in range(MAX_LEAVES))
    files: dict[str, dict[str, Any]] = {}
    for index, size in INCLUSION_SCENARIOS:
        leaf = leaf_hash(leaf_data(index))
        proof = tree.inclusion_proof(index, size)
        files[f"inclusion/{index}-of-{size}.json"] = {
            "desc": f"inclusion proof of leaf {index} in the tree of size {size}",
            "leaves": LEAVES_DESC,
            "probes": inclusion_probes(index, size, leaf, proof, tree.root(size)),
        }
    for size1, size2 in CONSISTENCY_SCENARIOS:
        proof = tree.consistency_proof(size1, size2)
        files[f"consistency/{size1}-to-{size2}.json"] = {
            "desc": f"consistency proof from tree size {size1} to {size2}",
            "leaves": LEAVES_DESC,
            "probes": consistency_probes(size1, size2, proof, tree.root(size1), tree.root(size2)),
        }
    return files


def generate(out: Path) -> list[Path]:
    """Write every vector file under ``out``; return the paths written."""
    written = []
    for rel, content in build().items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    for path in generate(args.out):
        print(path)


if __name__ == "__main__":
    main()
