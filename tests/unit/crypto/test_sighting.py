"""Signed sightings: vectors, round trips, and one test per mutation an attacker may try."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

import crypto.errors as errors
import crypto.sighting as sighting_mod
from crypto.keys import NoteSigner, NoteVerifier, generate_signing_key
from crypto.sighting import (
    MalformedSightingError,
    SighterMismatchError,
    Sighting,
    format_sighting,
    new_nonce,
    parse_sighting,
    sighting_digest,
    sign_sighting,
    unverified_reporter,
    verify_sighting,
)

VECTORS = Path(__file__).parents[2] / "vectors"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_s", VECTORS / "generate_sightings.py")
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_vectors_are_up_to_date() -> None:
    on_disk = (VECTORS / "sightings" / "vectors.json").read_text(encoding="utf-8")
    assert _generator().render() == on_disk


def _vectors() -> list[dict[str, Any]]:
    data = json.loads((VECTORS / "sightings" / "vectors.json").read_text(encoding="utf-8"))
    return [dict(v, trusted=data["trusted"]) for v in data["vectors"]]


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["name"])
def test_vector(vector: dict[str, Any]) -> None:
    verifiers = [NoteVerifier.from_verifier_key(k) for k in vector["trusted"]]
    if vector["expect"] == "ok":
        s = verify_sighting(vector["note"], verifiers)
        assert format_sighting(s) in vector["note"]
        return
    exc = getattr(sighting_mod, vector["expect"], None) or getattr(errors, vector["expect"])
    with pytest.raises(exc):
        verify_sighting(vector["note"], verifiers)


@pytest.fixture
def reporter() -> NoteSigner:
    return NoteSigner("node-c", generate_signing_key())


def _sighting(**kw: Any) -> Sighting:
    base: dict[str, Any] = {
        "list_name": "node-a/base",
        "seq": 0,
        "when": 1_700_000_000,
        "reporter": "node-c",
        "disposition": "seen",
        "nonce": new_nonce(),
    }
    return Sighting(**(base | kw))


def test_round_trip(reporter: NoteSigner) -> None:
    s = _sighting(disposition="confirmed", reason="victim_identified")
    note = sign_sighting(s, reporter)
    assert verify_sighting(note, [reporter.verifier()]) == s
    assert parse_sighting(format_sighting(s)) == s
    assert unverified_reporter(note) == "node-c"
    assert (s.owner, s.name) == ("node-a", "base")


def test_forged_signature_refused(reporter: NoteSigner) -> None:
    forger = NoteSigner("node-c", generate_signing_key())  # the reporter's name, another key
    note = sign_sighting(_sighting(), forger)
    with pytest.raises(errors.NoTrustedSignatureError):
        verify_sighting(note, [reporter.verifier()])
    # the reporter's key id on a forged signature
    good = sign_sighting(_sighting(), reporter)
    text, sig = good.rsplit("\n\n", 1)
    forged = text.replace("seq 0", "seq 1") + "\n\n" + sig
    with pytest.raises(errors.BadSignatureError):
        verify_sighting(forged, [reporter.verifier()])


def test_signer_must_be_the_reporter(reporter: NoteSigner) -> None:
    with pytest.raises(ValueError, match="not the reporter"):
        sign_sighting(_sighting(reporter="node-d"), reporter)


def test_relay_signing_in_the_reporters_name_is_refused(reporter: NoteSigner) -> None:
    relay = NoteSigner("node-b", generate_signing_key())
    from crypto.note import sign_note

    note = sign_note(format_sighting(_sighting()), [relay])
    with pytest.raises(SighterMismatchError):
        verify_sighting(note, [reporter.verifier(), relay.verifier()])


@pytest.mark.parametrize(
    "kw",
    [
        {"list_name": "no-slash"},
        {"list_name": "a/../etc"},
        {"seq": -1},
        {"seq": 2**63},
        {"reporter": "Node C"},
        {"disposition": "deleted"},
        {"reason": "has space"},
        {"reason": "x" * 33},
        {"nonce": "short"},
    ],
    ids=str,
)
def test_malformed_fields_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(MalformedSightingError):
        format_sighting(_sighting(**kw))


def test_digest_ignores_the_signature(reporter: NoteSigner) -> None:
    s = _sighting()
    a = sign_sighting(s, reporter)
    b = sign_sighting(s, NoteSigner("node-c", generate_signing_key()))
    assert a != b
    assert sighting_digest(a) == sighting_digest(b) == sighting_digest(format_sighting(s))
    assert sighting_digest(sign_sighting(_sighting(), reporter)) != sighting_digest(a)


def test_oversized_note_refused(reporter: NoteSigner) -> None:
    note = sign_sighting(_sighting(), reporter) + "x" * 5000
    with pytest.raises(MalformedSightingError):
        verify_sighting(note, [reporter.verifier()])
    with pytest.raises(MalformedSightingError):
        unverified_reporter(note)
