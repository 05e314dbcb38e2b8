"""Generate tests/vectors/sightings/vectors.json: signed sighting vectors.

Keys come from fixed seeds and Ed25519 signatures are deterministic, so the
output is the same on every run; tests/unit/crypto/test_sighting.py
regenerates it in memory, diffs it against the file, and checks each
vector's expected answer. Usage::

    .venv/bin/python tests/vectors/generate_sightings.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto.keys import NoteSigner
from crypto.sighting import Sighting, format_sighting, sign_sighting

FILE = Path(__file__).resolve().parent / "sightings" / "vectors.json"


def signer(name: str) -> NoteSigner:
    seed = hashlib.sha256(f"hashfed sighting vector key: {name}".encode()).digest()
    return NoteSigner(name, Ed25519PrivateKey.from_private_bytes(seed))


REPORTER = signer("node-c")
OTHER = signer("node-b")
BASE = Sighting(
    list_name="node-a/series-2041",
    seq=12,
    when=1_700_000_000,
    reporter="node-c",
    disposition="false_positive",
    reason="stock_image",
    nonce="00112233445566778899aabbccddeeff",
)


def _replace_line(note: str, old: str, new: str) -> str:
    assert old in note
    return note.replace(old, new, 1)


def vectors() -> dict[str, Any]:
    good = sign_sighting(BASE, REPORTER)
    seen = Sighting(**{**BASE.__dict__, "disposition": "seen", "reason": None})
    out: list[dict[str, Any]] = [
        {"name": "valid-false-positive", "note": good, "expect": "ok"},
        {"name": "valid-seen-no-reason", "note": sign_sighting(seen, REPORTER), "expect": "ok"},
        # mutations of the valid note, named after what they change
        {
            "name": "altered-seq",
            "note": _replace_line(good, "seq 12\n", "seq 13\n"),
            "expect": "BadSignatureError",
        },
        {
            "name": "altered-disposition",
            "note": _replace_line(good, "false_positive", "confirmed"),
            "expect": "BadSignatureError",
        },
        {
            "name": "altered-list",
            "note": _replace_line(good, "series-2041", "series-2042"),
            "expect": "BadSignatureError",
        },
        {
            "name": "signed-by-another-node",
            "note": good.replace(
                good[good.rfind("\n\n") + 2 :],
                format_sighting(BASE) and _sig_block(format_sighting(BASE), OTHER),
            ),
            "expect": "SighterMismatchError",
        },
        {
            "name": "unknown-key-only",
            "note": _sig_note(format_sighting(BASE), signer("node-z")),
            "expect": "NoTrustedSignatureError",
        },
        {
            "name": "file-name-field",
            "note": _sig_note(
                format_sighting(BASE).replace("nonce ", "file IMG_0001.jpg\nnonce "), REPORTER
            ),
            "expect": "MalformedSightingError",
        },
        {
            "name": "unknown-disposition",
            "note": _sig_note(format_sighting(BASE).replace("false_positive", "deleted"), REPORTER),
            "expect": "MalformedSightingError",
        },
        {
            "name": "leading-zero-seq",
            "note": _sig_note(format_sighting(BASE).replace("seq 12", "seq 012"), REPORTER),
            "expect": "MalformedSightingError",
        },
        {
            "name": "trailing-space",
            "note": _sig_note(
                format_sighting(BASE).replace("reporter node-c", "reporter node-c "), REPORTER
            ),
            "expect": "MalformedSightingError",
        },
    ]
    return {
        "trusted": [REPORTER.verifier_key, OTHER.verifier_key],
        "vectors": out,
    }


def _sig_block(text: str, s: NoteSigner) -> str:
    from crypto.note import sign_note

    note = sign_note(text, [s])
    return note[note.rfind("\n\n") + 2 :]


def _sig_note(text: str, s: NoteSigner) -> str:
    from crypto.note import sign_note

    return sign_note(text, [s])


def render() -> str:
    return json.dumps(vectors(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    FILE.parent.mkdir(parents=True, exist_ok=True)
    FILE.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {FILE}\n")
