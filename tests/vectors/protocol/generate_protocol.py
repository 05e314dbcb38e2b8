"""Generate tests/vectors/protocol/: one small signed list seen as a client sees it.

Run from the repository root::

    .venv/bin/python tests/vectors/protocol/generate_protocol.py          # rewrite
    .venv/bin/python tests/vectors/protocol/generate_protocol.py --check  # diff only

Files (each shown verbatim in docs/PROTOCOL.md; tests/unit/test_protocol_vectors.py
regenerates and diffs them and checks the document's examples equal them):

- ``owner.vkey``: the owner's verifier keys (key name = the bare node id): its
  log key (type 0x01), then its cosigner key (type 0x04), one a line.
- ``entries.json``: each entry's fields, its canonical entry line, leaf bytes
  and leaf hash.
- ``match-proof.json``: a near PDQ hit with ``?proof=true`` as the API answers
  it, with the leaf a client rebuilds from it.
- ``export.ndjson``: ``hashfed list export --log`` of the list.

Everything is built by the code that serves and checks it (the leaf and
entry-line encoders, crypto/merkle.py, crypto/checkpoint.py, the API's hit
model); the signing key comes from a fixed seed and Ed25519 is deterministic.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.routes.match import CheckpointOut, HitOut, ProofOut
from crypto.checkpoint import Checkpoint, CheckpointSigner, list_origin
from crypto.cosignature import CosignatureSigner
from crypto.keys import NoteSigner
from crypto.merkle import TreeLevels, leaf_hash
from node.log.entry import Entry, entry_line, json_string
from node.log.export import header_line
from node.log.hashes import hamming

DIR = Path(__file__).parent
OWNER = "au-argos"
NAME = "example"
LIST = f"{OWNER}/{NAME}"
LABEL = "baseline"
SIGNED_AT = 1_767_225_600  # 2026-01-01T00:00:00Z
# The stored PDQ code, and the query 9 bits away that hits it.
PDQ = hashlib.sha256(b"hashfed protocol vector pdq").hexdigest()
QUERY = f"{int(PDQ, 16) ^ 0x1FF:064x}"


def _digest(label: str, n: int = 32) -> str:
    return hashlib.sha256(f"hashfed protocol vector {label}".encode()).digest()[:n].hex()


ENTRIES = [
    Entry(0, "add", "sha256", _digest("sha256"), "A1", 1_767_225_000_000),
    Entry(1, "add", "pdq", PDQ, "Kategorie-Ä", 1_767_225_000_001),
    Entry(2, "add", "md5", _digest("md5", 16), "", 1_767_225_000_002),
    Entry(3, "remove", "md5", _digest("md5", 16), "", 1_767_225_300_000),
]


def owner_signer() -> CheckpointSigner:
    seed = hashlib.sha256(b"hashfed protocol vector owner key").digest()
    co_seed = hashlib.sha256(b"hashfed protocol vector owner cosigner key").digest()
    return CheckpointSigner(
        NoteSigner(OWNER, Ed25519PrivateKey.from_private_bytes(seed)),
        CosignatureSigner(OWNER, Ed25519PrivateKey.from_private_bytes(co_seed)),
    )


def _row(e: Entry) -> tuple[int, str, str, str, str, int]:
    return (e.seq, e.op, e.hash_type, e.value, e.category, e.timestamp_ms)


def build() -> dict[str, str]:
    """File name -> content."""
    tree = TreeLevels(leaf_hash(e.leaf_bytes()) for e in ENTRIES)
    size = len(ENTRIES)
    cp = Checkpoint(list_origin(OWNER, NAME), size, tree.root(size))
    note = owner_signer().sign(cp, SIGNED_AT)
    name = json_string(LIST)

    entries = [
        {
            "entry": {
                "seq": e.seq,
                "op": e.op,
                "hash_type": e.hash_type,
                "value": e.value,
                "category": e.category,
                "timestamp_ms": e.timestamp_ms,
            },
            "line": entry_line(name, *_row(e)),
            "leaf_hex": e.leaf_bytes().hex(),
            "leaf_hash_hex": leaf_hash(e.leaf_bytes()).hex(),
        }
        for e in ENTRIES
    ]

    hit_entry = ENTRIES[1]
    hit = HitOut(
        list=LIST,
        owner=OWNER,
        label=LABEL,
        category=hit_entry.category,
        type="pdq",
        distance=hamming(bytes.fromhex(QUERY), bytes.fromhex(PDQ)),
        value=PDQ,
        frozen=False,
        checkpoint=CheckpointOut(
            size=size, root_hash=cp.root_hash.hex(), timestamp=SIGNED_AT, note=note
        ),
        proof=ProofOut(
            leaf_index=hit_entry.seq,
            tree_size=size,
            timestamp_ms=hit_entry.timestamp_ms,
            hashes=[h.hex() for h in tree.inclusion_proof(hit_entry.seq, size)],
        ),
    )
    match_proof = {
        "request": {
            "method": "POST",
            "path": "/api/v1/match?proof=true",
            "body": {"hashes": [{"type": "pdq", "value": QUERY}]},
        },
        "response": {
            "queries": 1,
            "hits": 1,
            "results": [{"index": 0, "hits": [hit.model_dump()]}],
        },
        "rebuilt_leaf_hex": hit_entry.leaf_bytes().hex(),
        "rebuilt_leaf_hash_hex": leaf_hash(hit_entry.leaf_bytes()).hex(),
    }
    export = header_line(LIST, size, note) + "".join(e["line"] for e in entries)
    return {
        "owner.vkey": "".join(v.verifier_key + "\n" for v in owner_signer().verifiers()),
        "entries.json": _json(entries),
        "match-proof.json": _json(match_proof),
        "export.ndjson": export,
    }


def _json(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="diff only, write nothing")
    args = parser.parse_args(argv)
    files = build()
    if args.check:
        diff: list[str] = []
        for fname, new in files.items():
            path = DIR / fname
            old = path.read_text(encoding="utf-8") if path.exists() else ""
            diff += difflib.unified_diff(
                old.splitlines(), new.splitlines(), fname, fname, lineterm=""
            )
        print("\n".join(diff) or "up to date")
        return 1 if diff else 0
    for fname, new in files.items():
        (DIR / fname).write_text(new, encoding="utf-8")
        print(f"wrote {DIR / fname}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
