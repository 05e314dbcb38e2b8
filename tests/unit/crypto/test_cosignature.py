"""Cosignatures (crypto/cosignature.py, c2sp.org/tlog-cosignature): format, keys, mutations."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.cosignature import (
    COSIGNATURE_V1_TYPE,
    MAX_TIMESTAMP,
    CosignatureSigner,
    CosignatureVerifier,
    add_cosignatures,
    cosignatures_except,
    cosigned_message,
    signature_timestamp,
    signer_names,
)
from crypto.errors import (
    BadSignatureError,
    ConfigError,
    MalformedNoteError,
    NoTrustedSignatureError,
)
from crypto.keys import NoteSigner, NoteVerifier
from crypto.note import open_note, sign_note

SEED = hashlib.sha256(b"hashfed test cosigner").digest()
KEY = Ed25519PrivateKey.from_private_bytes(SEED)
CO = CosignatureSigner("witness.example/w1", KEY)
TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
T = 1679315147


def test_key_id_uses_signature_type_4() -> None:
    raw = CO.public_key_raw
    want = hashlib.sha256(b"witness.example/w1\n\x04" + raw).digest()[:4]
    assert CO.key_id == want
    assert NoteSigner("witness.example/w1", KEY).key_id != want  # same key, type 0x01


def test_signed_message_is_header_time_and_whole_body() -> None:
    # The spec's example message, byte for byte.
    assert cosigned_message(TEXT, T) == (
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
        b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )


def test_signature_is_big_endian_time_then_ed25519() -> None:
    sig = CO.cosign(TEXT, T)
    assert len(sig) == 72
    assert sig[:8] == T.to_bytes(8, "big")
    KEY.public_key().verify(sig[8:], cosigned_message(TEXT, T))
    assert signature_timestamp(sig) == T


def test_verifier_key_round_trips_as_a_cosigner() -> None:
    vkey = CO.verifier_key
    name, hex_id, b64 = vkey.split("+", 2)
    assert (name, hex_id) == ("witness.example/w1", CO.key_id.hex())
    assert base64.b64decode(b64)[0] == COSIGNATURE_V1_TYPE
    parsed = NoteVerifier.from_verifier_key(vkey)
    assert isinstance(parsed, CosignatureVerifier)
    assert parsed == CO.verifier()
    assert parsed.verifier_key == vkey


def test_log_key_string_is_not_a_cosigner_key() -> None:
    with pytest.raises(ConfigError):
        CosignatureVerifier.from_verifier_key(NoteSigner("x", KEY).verifier_key)


def test_log_verifier_and_cosigner_verifier_of_one_key_differ() -> None:
    log = NoteSigner("witness.example/w1", KEY).verifier()
    assert log != CO.verifier()
    assert len({log, CO.verifier()}) == 2


def test_cosignature_line_opens_with_the_cosigner_key() -> None:
    note = sign_note(TEXT, [NoteSigner("log", Ed25519PrivateKey.generate())])
    note += CO.line(TEXT, T)
    opened = open_note(note, [CO.verifier()])
    assert opened.verified_by == ((CO.name, CO.key_id),)
    assert signature_timestamp(opened.signatures[0][2]) == T


def test_cosignature_read_as_a_plain_signature_is_refused() -> None:
    # A cosigner's line checked by the same key as a log key: a different key
    # ID, so it is ignored, never mistaken for a log signature.
    note = sign_note(TEXT, [NoteSigner("other", Ed25519PrivateKey.generate())]) + CO.line(TEXT, T)
    log_view = NoteSigner("witness.example/w1", KEY).verifier()
    with pytest.raises(NoTrustedSignatureError):
        open_note(note, [log_view])


def test_timestamp_above_two_to_the_63_is_refused() -> None:
    big = 2**63
    message = f"cosignature/v1\ntime {big}\n{TEXT}".encode()
    sig = big.to_bytes(8, "big") + KEY.sign(message)
    assert signature_timestamp(sig) is None
    assert not CO.verifier().verify(TEXT.encode(), sig)


@pytest.mark.parametrize("bad", [-1, MAX_TIMESTAMP + 1, True])
def test_unwritable_timestamp_refused_when_signing(bad: int) -> None:
    with pytest.raises(ValueError, match="2\\^63"):
        CO.cosign(TEXT, bad)


def test_cosignature_for_another_time_is_refused() -> None:
    sig = bytearray(CO.cosign(TEXT, T))
    sig[7] ^= 1
    assert not CO.verifier().verify(TEXT.encode(), bytes(sig))


def test_cosignature_of_another_body_is_refused() -> None:
    sig = CO.cosign(TEXT, T)
    assert not CO.verifier().verify(TEXT.replace("20852163", "20852164").encode(), sig)


def test_plain_signature_without_a_timestamp_is_refused() -> None:
    assert not CO.verifier().verify(TEXT.encode(), KEY.sign(TEXT.encode()))


def test_add_cosignatures_appends_once() -> None:
    note = sign_note(TEXT, [NoteSigner("log", KEY)])
    line = CO.line(TEXT, T)
    once = add_cosignatures(note, [line])
    assert once == note + line
    assert add_cosignatures(once, [line, line]) == once


@pytest.mark.parametrize("line", ["no dash\n", "— a b", "— a b\n— c d\n"])
def test_add_cosignatures_refuses_what_is_not_one_line(line: str) -> None:
    note = sign_note(TEXT, [NoteSigner("log", KEY)])
    with pytest.raises(MalformedNoteError):
        add_cosignatures(note, [line])


def test_forged_cosignature_by_a_trusted_cosigner_rejects_the_note() -> None:
    note = sign_note(TEXT, [NoteSigner("log", KEY)])
    line = CO.line(TEXT.replace("20852163", "1"), T)  # over another body
    with pytest.raises(BadSignatureError):
        open_note(note + line, [CO.verifier(), NoteSigner("log", KEY).verifier()])


SIG = CO.cosign(TEXT, T)


@settings(max_examples=300)
@given(
    index=st.integers(min_value=0, max_value=len(SIG) - 1),
    mask=st.integers(min_value=1, max_value=255),
)
def test_any_flipped_bit_in_a_cosignature_is_refused(index: int, mask: int) -> None:
    bad = bytearray(SIG)
    bad[index] ^= mask
    assert not CO.verifier().verify(TEXT.encode(), bytes(bad))


@settings(max_examples=100)
@given(
    body=st.text(st.characters(codec="utf-8", min_codepoint=0x20), min_size=1, max_size=60),
    when=st.integers(min_value=0, max_value=MAX_TIMESTAMP),
)
def test_any_body_and_time_cosign_and_verify(body: str, when: int) -> None:
    text = body + "\n"
    sig = CO.cosign(text, when)
    assert CO.verifier().verify(text.encode(), sig)
    assert signature_timestamp(sig) == when


def test_cosignatures_except_keeps_only_other_names_lines() -> None:
    log_key = NoteSigner("example.com/behind-the-sofa", Ed25519PrivateKey.generate())
    note = sign_note(TEXT, [log_key])
    own = CosignatureSigner("example.com/behind-the-sofa", Ed25519PrivateKey.generate())
    line_w, line_own = CO.line(TEXT, T), own.line(TEXT, T)
    both = add_cosignatures(note, [line_own, line_w])
    assert cosignatures_except(both, {"example.com/behind-the-sofa"}) == [line_w]
    assert cosignatures_except(both, set()) == both[both.index("\n\n") + 2 :].splitlines(True)
    assert cosignatures_except(TEXT, set()) == []  # no signature block


@pytest.mark.parametrize(
    "junk",
    [
        "— w not-base64!\n",  # not base64
        "— w AAA=\n",  # shorter than a key id and a signature
        "- w AAAAAAAAAAAA\n",  # a hyphen, not an em dash
    ],
)
def test_cosignatures_except_drops_malformed_lines(junk: str) -> None:
    note = sign_note(TEXT, [NoteSigner("a", Ed25519PrivateKey.generate())]) + junk
    assert cosignatures_except(note, set()) == note[note.index("\n\n") + 2 :].splitlines(True)[:1]


def test_signer_names_are_the_names_of_well_formed_lines() -> None:
    note = sign_note(TEXT, [NoteSigner("a", Ed25519PrivateKey.generate())])
    both = add_cosignatures(note, [CO.line(TEXT, T)])
    assert signer_names(both) == {"a", CO.name}
    assert signer_names(both + "— w AAA=\n") == {"a", CO.name}  # too short: not a signature
    assert signer_names(TEXT) == set()
