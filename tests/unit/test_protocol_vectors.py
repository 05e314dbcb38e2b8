"""tests/vectors/protocol/ is what the code produces, checks as a client would, and
is what docs/PROTOCOL.md shows.

A client implemented from the document alone must reach the same bytes: each
vector is checked here with the same steps the document gives.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from crypto.checkpoint import list_origin, verify_checkpoint
from crypto.keys import NoteVerifier
from crypto.merkle import leaf_hash, verify_inclusion
from node.log.entry import decode_leaf, encode_leaf
from node.log.export import verify_export
from node.log.hashes import hamming

ROOT = Path(__file__).parents[2]
VECTORS = ROOT / "tests" / "vectors" / "protocol"
PROTOCOL = ROOT / "docs" / "PROTOCOL.md"
# A document example is a fenced block right after a marker naming its file.
_EXAMPLE = re.compile(r"<!-- vector: (\S+) -->\n```[a-z]*\n(.*?)```\n", re.DOTALL)


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_protocol", VECTORS / "generate_protocol.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def _owner() -> list[NoteVerifier]:
    lines = (VECTORS / "owner.vkey").read_text().splitlines()
    return [NoteVerifier.from_verifier_key(k) for k in lines]


def test_vectors_are_up_to_date() -> None:
    """Regenerate every file and diff: the code and the committed vectors must agree."""
    for name, content in _generator().build().items():
        assert (VECTORS / name).read_text(encoding="utf-8") == content, (
            f"tests/vectors/protocol/{name} is out of date; run "
            "`.venv/bin/python tests/vectors/protocol/generate_protocol.py` and review the diff"
        )


def test_protocol_examples_are_the_vector_files() -> None:
    doc = PROTOCOL.read_text(encoding="utf-8")
    shown = {path: block for path, block in _EXAMPLE.findall(doc)}
    files = {f"tests/vectors/protocol/{p.name}" for p in VECTORS.iterdir() if p.suffix != ".py"}
    assert files <= set(shown), f"not shown in PROTOCOL.md: {sorted(files - set(shown))}"
    for path, block in shown.items():
        assert block == (ROOT / path).read_text(encoding="utf-8"), f"{path} differs from the doc"


def test_protocol_leaf_examples_are_in_the_leaf_vectors() -> None:
    doc = PROTOCOL.read_text(encoding="utf-8")
    leaves = json.loads((ROOT / "tests/vectors/leaves/leaves.json").read_text(encoding="utf-8"))
    hashes = {v["leaf_hash_hex"] for v in leaves["valid"]}
    shown = re.findall(r"leaf hash: `([0-9a-f]{64})`", doc)
    assert shown
    assert set(shown) <= hashes


def test_entry_lines_carry_exactly_the_leaf_fields() -> None:
    for v in _load("entries.json"):
        e = v["entry"]
        line = json.loads(v["line"])
        assert v["line"].endswith("}\n")
        assert v["line"].isascii()  # non-ASCII is escaped
        assert list(line) == [
            "list", "seq", "op", "type", "value", "category", "timestamp_ms"
        ]  # fmt: skip
        fields = (line["seq"], line["op"], line["type"], line["value"], line["category"])
        assert fields == (e["seq"], e["op"], e["hash_type"], e["value"], e["category"])
        leaf = encode_leaf(
            line["seq"], line["op"], line["type"], line["value"], line["category"],
            line["timestamp_ms"],
        )  # fmt: skip
        assert leaf.hex() == v["leaf_hex"]
        assert leaf_hash(leaf).hex() == v["leaf_hash_hex"]
        assert decode_leaf(leaf).value == e["value"]


def test_match_proof_object_lets_a_client_check_a_near_hit() -> None:
    """The document's client steps: distance, note, leaf, inclusion."""
    v = _load("match-proof.json")
    query = v["request"]["body"]["hashes"][0]["value"]
    hit = v["response"]["results"][0]["hits"][0]
    proof, cp = hit["proof"], hit["checkpoint"]
    assert hamming(bytes.fromhex(query), bytes.fromhex(hit["value"])) == hit["distance"] > 0
    owner, name = hit["list"].split("/")
    signed = verify_checkpoint(cp["note"], origin=list_origin(owner, name), verifiers=_owner())
    # The root is hex in the object and base64 in the note: the same 32 bytes.
    assert signed.root_hash == bytes.fromhex(cp["root_hash"])
    assert base64.b64encode(signed.root_hash).decode() == cp["note"].split("\n")[2]
    assert signed.size == proof["tree_size"] == cp["size"]
    seq, ts = proof["leaf_index"], proof["timestamp_ms"]
    leaf = encode_leaf(seq, "add", hit["type"], hit["value"], hit["category"], ts)
    assert leaf.hex() == v["rebuilt_leaf_hex"]
    verify_inclusion(
        proof["leaf_index"],
        proof["tree_size"],
        leaf_hash(leaf),
        [bytes.fromhex(h) for h in proof["hashes"]],
        signed.root_hash,
    )


def test_export_vector_verifies_with_the_owner_key_alone() -> None:
    with (VECTORS / "export.ndjson").open("rb") as fh:
        got = verify_export(fh, _owner())
    assert (got.list_name, got.size, got.adds, got.removes) == ("au-argos/example", 4, 3, 1)


def test_generator_check_mode_reports_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert _generator().main(["--check"]) == 0
    assert "up to date" in capsys.readouterr().out
