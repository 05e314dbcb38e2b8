"""The signed-note vectors in tests/vectors/notes/: up to date, and still answered right.

If the diff fails after an intended change, regenerate with
``.venv/bin/python tests/vectors/generate_notes.py`` and review the diff.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from crypto import errors
from crypto.checkpoint import Checkpoint, SignedCheckpoint, verify_checkpoint
from crypto.keys import NoteVerifier
from crypto.note import open_note

HERE = Path(__file__).resolve().parent
FOLDER = HERE / "notes"
DOCS = HERE.parent.parent / "docs"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_notes", HERE / "generate_notes.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["generate_notes"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _index() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((FOLDER / "index.json").read_text("utf-8"))
    return entries


def test_vectors_match_the_generator() -> None:
    generated: dict[str, bytes] = _load_generator().build()
    on_disk = {p.name: p.read_bytes() for p in FOLDER.iterdir() if p.is_file()}
    assert sorted(on_disk) == sorted(generated), "run tests/vectors/generate_notes.py"
    changed = sorted(name for name in generated if generated[name] != on_disk[name])
    assert not changed, f"stale vectors {changed}: run tests/vectors/generate_notes.py"


@pytest.mark.parametrize("vector", _index(), ids=lambda v: str(v["name"]))
def test_vector_gets_its_expected_answer(vector: dict[str, Any]) -> None:
    note = (FOLDER / vector["note_file"]).read_bytes()
    verifiers = [NoteVerifier.from_verifier_key(k) for k in vector["verifier_keys"]]
    want = vector["want"]

    def run() -> object:
        if vector["kind"] == "note":
            return open_note(note, verifiers).text
        return verify_checkpoint(note, origin=vector["origin"], verifiers=verifiers)

    if "error" in want:
        error_class = getattr(errors, want["error"])
        with pytest.raises(error_class):
            run()
        return
    got = run()
    if vector["kind"] == "note":
        assert got == want["text"]
    else:
        cp = want["checkpoint"]
        assert isinstance(got, SignedCheckpoint)
        assert got.checkpoint == Checkpoint(
            origin=cp["origin"],
            size=cp["size"],
            root_hash=base64.b64decode(cp["root_hash"]),
            extensions=tuple(cp["extensions"]),
        )
        assert got.timestamp == cp["timestamp"]


def test_vector_keys_reproduce_from_their_seeds() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from crypto.cosignature import CosignatureSigner
    from crypto.keys import NoteSigner

    for key in json.loads((FOLDER / "keys.json").read_text("utf-8")):
        private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key["seed"]))
        kind = CosignatureSigner if key["kind"] == "cosigner" else NoteSigner
        signer = kind(key["name"], private)
        assert signer.verifier_key == key["verifier_key"]
        assert signer.key_id.hex() == key["key_id"]
        assert signer.public_key_raw.hex() == key["public_key"]


# A docs page shows a vector by putting this marker line right before a fenced block.
_MARKER = re.compile(
    r"<!-- vector: tests/vectors/notes/(?P<file>[\w.-]+) -->\s*```[^\n]*\n(?P<body>.*?)```",
    re.DOTALL,
)


def test_worked_examples_in_docs_are_the_vectors() -> None:
    shown = [
        (page.name, match)
        for page in sorted(DOCS.glob("*.md"))
        for match in _MARKER.finditer(page.read_text("utf-8"))
    ]
    assert shown, "the protocol docs should show tests/vectors/notes/valid-checkpoint.note"
    for page, match in shown:
        vector = (FOLDER / match["file"]).read_text("utf-8")
        assert match["body"] == vector, f"{page}: worked example differs from {match['file']}"
