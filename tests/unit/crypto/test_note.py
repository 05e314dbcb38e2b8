"""C2SP signed notes (crypto/note.py): one test per rejection, plus Go's vectors."""

from __future__ import annotations

import base64
import hashlib
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.errors import (
    BadSignatureError,
    ConfigError,
    LimitExceededError,
    MalformedNoteError,
    NoTrustedSignatureError,
    VerificationError,
)
from crypto.keys import KeyId, NoteSigner, NoteVerifier
from crypto.note import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    MIN_SIGNATURES_ACCEPTED,
    VerifiedNote,
    open_note,
    sign_note,
)

# golang.org/x/mod/sumdb/note note_test.go (TestSign, TestOpen).
PETER_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotp"
    "RZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox"
    "33WWd1RvMc+QQ=\n"
)
PETER = ("PeterNeumann", KeyId(bytes.fromhex("c74f20a3")))
ENOCH = ("EnochRoot", KeyId(bytes.fromhex("af0cfe78")))

# Real checkpoints signed by the Go checksum database (sum.golang.org), as
# quoted in public write-ups; its key is in cmd/go/internal/modfetch/key.go.
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_NOTES = [
    "go.sum database tree\n15368405\n/g9am3I6YWNKaZX/jkne1fqd9zEyjss+JXyPXG0WfkY=\n\n"
    "— sum.golang.org Az3grqJGUaSGukG9p8nI2vKgiFn7qGHxn0W+mrwyI6Gz3F0t1J3LzmWk/p96Ybf295EjwdSwl"
    "zgijq5WA9d1Ded7owM=\n",
    "go.sum database tree\n63512409\nF7eHRPqN/cqPtqti14NKdGGaI1Giw8coWP3KxihFZbg=\n\n"
    "— sum.golang.org Az3gri1OBHKT87Xj8UXU8zjoHGy/X+7Nl94f8TZkELVaasolmGApUsWqwVG9vE6hgqYb/ph/w"
    "2vdkLIVRH7bMB/FPQ4=\n",
    "go.sum database tree\n3784599\n7uvxIZ67TZygcq/AehTD8iHYt81Ih+Zl2Y7vXZbfszQ=\n\n"
    "— sum.golang.org Az3grn972wXskjQrsZhVGc93fTU2uOsmSTiId1Wn1lxDCup5z4ggl1/4gaUqOkMa6cMbYvjB7h"
    "n7yemNr7Zqanol/go=\n",
]

# c2sp.org/signed-note: the example note. Its text holds a blank line, so only
# splitting at the *last* blank line finds the signature.
C2SP_EXAMPLE = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed è subito sera.\n"
    "\n"
    "— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMou"
    "FSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)


def signer(name: str, label: str | None = None) -> NoteSigner:
    seed = hashlib.sha256((label or name).encode()).digest()
    return NoteSigner(name, Ed25519PrivateKey.from_private_bytes(seed))


TRUSTED = signer("hashfed.example/node-a")
STRANGER = signer("other.example/node-z")
TEXT = "hashfed:node-a/baseline\n12\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\ntimestamp 7\n"


def peter() -> NoteSigner:
    return NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(PETER_SEED))


def flip_signature_byte(line: str, index: int) -> str:
    """Return a signature line with one bit of the signature (not the key id) flipped."""
    prefix, name, b64 = line.rstrip("\n").split(" ")
    blob = bytearray(base64.b64decode(b64))
    blob[4 + index] ^= 0x01
    return f"{prefix} {name} {base64.b64encode(bytes(blob)).decode()}\n"


# --- Go's published vectors ------------------------------------------------------------------


def test_go_peter_neumann_signature_reproduced() -> None:
    assert sign_note(GO_TEXT, [peter()]) == GO_TEXT + "\n" + PETER_SIG


def test_go_note_with_one_known_and_one_unknown_key_verifies() -> None:
    opened = open_note(GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG, [peter().verifier()])
    assert opened == VerifiedNote(text=GO_TEXT, verified_by=(PETER,))


def test_go_note_with_two_known_keys_verifies() -> None:
    verifiers = [NoteVerifier.from_verifier_key(v) for v in (PETER_VKEY, ENOCH_VKEY)]
    opened = open_note((GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode(), verifiers)
    assert opened.verified_by == (PETER, ENOCH)


def test_go_note_with_no_known_key_rejected() -> None:
    with pytest.raises(NoTrustedSignatureError):
        open_note(GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])


@pytest.mark.parametrize("note", SUMDB_NOTES)
def test_real_sum_golang_org_checkpoint_verifies(note: str) -> None:
    opened = open_note(note, [NoteVerifier.from_verifier_key(SUMDB_VKEY)])
    assert opened.text.startswith("go.sum database tree\n")
    assert opened.verified_by == (("sum.golang.org", bytes.fromhex("033de0ae")),)


def test_c2sp_example_splits_at_last_blank_line() -> None:
    # Unknown key: the syntax is accepted and only the trust check fails.
    with pytest.raises(NoTrustedSignatureError):
        open_note(C2SP_EXAMPLE, [TRUSTED.verifier()])


# --- unknown keys are ignored ----------------------------------------------------------------


def test_signature_by_unknown_key_ignored() -> None:
    note = sign_note(TEXT, [STRANGER, TRUSTED])
    opened = open_note(note, [TRUSTED.verifier()])
    assert opened.verified_by == ((TRUSTED.name, TRUSTED.key_id),)


def test_signature_by_other_key_with_trusted_name_ignored() -> None:
    # Same name, other key (so another key id): an unknown key, not a forgery.
    impostor = signer(TRUSTED.name, label="impostor")
    note = sign_note(TEXT, [impostor, TRUSTED])
    assert open_note(note, [TRUSTED.verifier()]).verified_by == ((TRUSTED.name, TRUSTED.key_id),)
    with pytest.raises(NoTrustedSignatureError):
        open_note(sign_note(TEXT, [impostor]), [TRUSTED.verifier()])


def test_trusted_signature_under_other_name_ignored() -> None:
    # Same key id and signature bytes, other name: unknown, so not verified.
    line = sign_note(TEXT, [TRUSTED]).split("\n\n")[1]
    renamed = line.replace(TRUSTED.name, "evil.example/node-a")
    with pytest.raises(NoTrustedSignatureError):
        open_note(TEXT + "\n" + renamed, [TRUSTED.verifier()])


def test_signature_by_untrusted_key_rejected() -> None:
    with pytest.raises(NoTrustedSignatureError):
        open_note(sign_note(TEXT, [STRANGER]), [TRUSTED.verifier()])


def test_note_with_no_verifiers_configured_rejected() -> None:
    with pytest.raises(NoTrustedSignatureError):
        open_note(sign_note(TEXT, [TRUSTED]), [])


# --- a known key's bad signature rejects the note --------------------------------------------


def test_forged_signature_rejects_note() -> None:
    line = sign_note(TEXT, [TRUSTED]).split("\n\n")[1]
    with pytest.raises(BadSignatureError):
        open_note(TEXT + "\n" + flip_signature_byte(line, 10), [TRUSTED.verifier()])


def test_forged_signature_rejects_note_despite_a_valid_one() -> None:
    # c2sp.org/signed-note: "If a signature from a known key fails to verify,
    # clients SHOULD reject the whole note", even when another one verifies.
    good = sign_note(TEXT, [TRUSTED]).split("\n\n")[1]
    bad = flip_signature_byte(good, 0)
    for block in (good + bad, bad + good):
        with pytest.raises(BadSignatureError):
            open_note(TEXT + "\n" + block, [TRUSTED.verifier()])


def test_go_signature_with_inserted_bytes_rejects_note() -> None:
    # Go TestOpen "Invalid signature": four base64 characters spliced in.
    forged = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(BadSignatureError):
        open_note(GO_TEXT + "\n" + forged, [peter().verifier()])


def test_truncated_signature_by_trusted_key_rejects_note() -> None:
    blob = bytes(TRUSTED.key_id) + TRUSTED.sign(TEXT.encode())[:40]
    line = f"— {TRUSTED.name} {base64.b64encode(blob).decode()}\n"
    with pytest.raises(BadSignatureError):
        open_note(TEXT + "\n" + line, [TRUSTED.verifier()])


def test_modified_text_rejects_note() -> None:
    note = sign_note(TEXT, [TRUSTED]).replace("\n12\n", "\n13\n")
    with pytest.raises(BadSignatureError):
        open_note(note, [TRUSTED.verifier()])


def test_signature_over_other_text_rejects_note() -> None:
    other = sign_note(TEXT.replace("12", "99"), [TRUSTED]).split("\n\n")[1]
    with pytest.raises(BadSignatureError):
        open_note(TEXT + "\n" + other, [TRUSTED.verifier()])


def test_repeated_signature_line_reported_once() -> None:
    line = sign_note(TEXT, [TRUSTED]).split("\n\n")[1]
    opened = open_note(TEXT + "\n" + line * 3, [TRUSTED.verifier()])
    assert opened.verified_by == ((TRUSTED.name, TRUSTED.key_id),)


# --- syntax ----------------------------------------------------------------------------------

VALID = sign_note(TEXT, [TRUSTED])
SIG_LINE = VALID.split("\n\n")[1]


def test_missing_blank_line_rejected() -> None:
    with pytest.raises(MalformedNoteError):
        open_note(TEXT + SIG_LINE, [TRUSTED.verifier()])


@pytest.mark.parametrize("note", [TEXT, TEXT + "\n", "", "\n\n"])
def test_note_without_signatures_rejected(note: str) -> None:
    with pytest.raises(MalformedNoteError):
        open_note(note, [TRUSTED.verifier()])


def test_missing_final_newline_rejected() -> None:
    with pytest.raises(MalformedNoteError):
        open_note(VALID[:-1], [TRUSTED.verifier()])


def test_blank_line_after_signatures_rejected() -> None:
    with pytest.raises(MalformedNoteError):
        open_note(VALID + "\n", [TRUSTED.verifier()])


def test_unexpected_line_after_signatures_rejected() -> None:
    with pytest.raises(MalformedNoteError):
        open_note(VALID + "Unexpected line.\n", [TRUSTED.verifier()])


@pytest.mark.parametrize("dash", ["-", "--", "–", "―", "—"])  # hyphen, en dash, bar, no space
def test_hyphen_instead_of_em_dash_rejected(dash: str) -> None:
    line = SIG_LINE.replace("— ", dash + ("" if dash == "—" else " "), 1)
    with pytest.raises(MalformedNoteError):
        open_note(TEXT + "\n" + line, [TRUSTED.verifier()])


@pytest.mark.parametrize("char", ["\x00", "\x01", "\t", "\r", "\x0b", "\x0c", "\x1b", "\x1f"])
def test_control_character_in_text_rejected(char: str) -> None:
    # Signed over the control character, so only the syntax check can refuse it.
    text = TEXT.replace("timestamp", "time" + char + "stamp")
    blob = bytes(TRUSTED.key_id) + TRUSTED.sign(text.encode())
    note = text + "\n— " + TRUSTED.name + " " + base64.b64encode(blob).decode() + "\n"
    with pytest.raises(MalformedNoteError):
        open_note(note, [TRUSTED.verifier()])


def test_carriage_return_line_endings_rejected() -> None:
    with pytest.raises(MalformedNoteError):
        open_note(VALID.replace("\n", "\r\n"), [TRUSTED.verifier()])


def test_invalid_utf8_rejected() -> None:
    with pytest.raises(MalformedNoteError):
        open_note(b"\xff" + VALID.encode(), [TRUSTED.verifier()])


def test_overlong_utf8_encoding_rejected() -> None:
    # "/" encoded in two bytes; a lax decoder would read it as "/".
    with pytest.raises(MalformedNoteError):
        open_note(VALID.encode().replace(b"/", b"\xc0\xaf", 1), [TRUSTED.verifier()])


def test_lone_surrogate_rejected() -> None:
    with pytest.raises(MalformedNoteError):
        open_note("\ud800" + VALID, [TRUSTED.verifier()])


def test_delete_and_c1_characters_are_not_control_characters() -> None:
    # The spec forbids only characters below U+0020 other than newline.
    text = "a\x7fb\x85c\u2028d\n"
    assert open_note(sign_note(text, [TRUSTED]), [TRUSTED.verifier()]).text == text


@pytest.mark.parametrize("name", ["Bad Name", "a+b", "", "a\u00a0b"])
def test_invalid_key_name_in_signature_rejected(name: str) -> None:
    line = SIG_LINE.replace(TRUSTED.name, name, 1)
    with pytest.raises(MalformedNoteError):
        open_note(TEXT + "\n" + line, [TRUSTED.verifier()])


def test_signature_without_name_separator_rejected() -> None:
    with pytest.raises(MalformedNoteError):
        open_note(TEXT + "\n— " + TRUSTED.name + "\n", [TRUSTED.verifier()])


@pytest.mark.parametrize("b64", ["not base64!", "AAAA AAAA", "AAAAAAA", "AAAAAAA=\tx", "AA==AA=="])
def test_non_base64_signature_rejected(b64: str) -> None:
    with pytest.raises(MalformedNoteError):
        open_note(TEXT + "\n— " + TRUSTED.name + " " + b64 + "\n", [TRUSTED.verifier()])


def test_urlsafe_base64_signature_rejected() -> None:
    blob = bytes(TRUSTED.key_id) + TRUSTED.sign(TEXT.encode())
    b64 = base64.urlsafe_b64encode(blob).decode()
    assert b64 != base64.b64encode(blob).decode()  # this key's signature has a + or /
    with pytest.raises(MalformedNoteError):
        open_note(TEXT + "\n— " + TRUSTED.name + " " + b64 + "\n", [TRUSTED.verifier()])


def test_non_canonical_base64_signature_rejected() -> None:
    # 68 bytes encode to 91 characters and "="; the last character carries 2
    # spare bits. Setting one gives another spelling of the same signature.
    prefix, name, b64 = SIG_LINE.rstrip("\n").split(" ")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet[alphabet.index(b64[-2]) ^ 0x01]
    twin = b64[:-2] + last + "="
    assert base64.b64decode(twin) == base64.b64decode(b64)
    with pytest.raises(MalformedNoteError):
        open_note(f"{TEXT}\n{prefix} {name} {twin}\n", [TRUSTED.verifier()])


@pytest.mark.parametrize("size", [0, 1, 4])
def test_signature_shorter_than_five_bytes_rejected(size: int) -> None:
    b64 = base64.b64encode(bytes(TRUSTED.key_id)[:size]).decode()
    with pytest.raises(MalformedNoteError):
        open_note(TEXT + "\n— " + TRUSTED.name + " " + b64 + "\n", [TRUSTED.verifier()])


def test_text_may_contain_blank_lines() -> None:
    text = "first\n\nthird\n\n"
    note = sign_note(text, [TRUSTED])
    assert open_note(note, [TRUSTED.verifier()]).text == text


def test_text_may_be_a_lone_newline() -> None:
    assert open_note(sign_note("\n", [TRUSTED]), [TRUSTED.verifier()]).text == "\n"


# --- bounds ----------------------------------------------------------------------------------


def unknown_lines(count: int) -> str:
    """Syntactically valid signature lines by ``count`` keys nobody trusts."""
    blob = base64.b64encode(b"\x00\x00\x00\x00" + b"\x00" * 64).decode()
    return "".join(f"— unknown.example/{i} {blob}\n" for i in range(count))


@pytest.mark.parametrize("count", [MIN_SIGNATURES_ACCEPTED, MAX_SIGNATURES])
def test_many_signatures_up_to_the_bound_accepted(count: int) -> None:
    note = TEXT + "\n" + unknown_lines(count - 1) + SIG_LINE
    assert open_note(note, [TRUSTED.verifier()]).verified_by == ((TRUSTED.name, TRUSTED.key_id),)


def test_too_many_signatures_rejected() -> None:
    note = TEXT + "\n" + SIG_LINE + unknown_lines(MAX_SIGNATURES)
    with pytest.raises(LimitExceededError):
        open_note(note, [TRUSTED.verifier()])


def test_too_many_signatures_rejected_before_parsing_them() -> None:
    note = TEXT + "\n" + "garbage\n" * (MAX_SIGNATURES + 1)
    with pytest.raises(LimitExceededError):
        open_note(note, [TRUSTED.verifier()])


def test_oversized_note_rejected() -> None:
    padding = "x" * (MAX_NOTE_BYTES - len(VALID.encode()) + 1)
    note = padding + VALID
    with pytest.raises(LimitExceededError):
        open_note(note, [TRUSTED.verifier()])
    with pytest.raises(LimitExceededError):
        open_note(note.encode(), [TRUSTED.verifier()])


def test_note_of_exactly_the_size_bound_accepted() -> None:
    text = "x" * (MAX_NOTE_BYTES - len(SIG_LINE.encode()) - 2) + "\n"
    note = sign_note(text, [TRUSTED])
    assert len(note.encode()) == MAX_NOTE_BYTES
    assert open_note(note, [TRUSTED.verifier()]).text == text


def test_oversized_multibyte_note_rejected() -> None:
    # Few characters, many bytes: the bound is on bytes.
    note = "€" * (MAX_NOTE_BYTES // 3) + VALID
    with pytest.raises(LimitExceededError):
        open_note(note, [TRUSTED.verifier()])


# --- verifier sets ---------------------------------------------------------------------------


def test_same_verifier_twice_is_fine() -> None:
    verifier = TRUSTED.verifier()
    assert open_note(VALID, [verifier, TRUSTED.verifier()]).verified_by == (
        (TRUSTED.name, TRUSTED.key_id),
    )


def test_colliding_trusted_keys_are_a_config_error() -> None:
    # Two different keys with one name and key id (a 32-bit collision someone
    # searched for) make the trusted set ambiguous; Go's VerifierList refuses too.
    twin = SimpleNamespace(name=TRUSTED.name, key_id=TRUSTED.key_id)
    with pytest.raises(ConfigError):
        open_note(VALID, [TRUSTED.verifier(), twin])  # type: ignore[list-item]


# --- signing ---------------------------------------------------------------------------------


def test_signature_lines_follow_signer_order() -> None:
    note = sign_note(TEXT, [STRANGER, TRUSTED])
    names = [line.split(" ")[1] for line in note.split("\n\n")[1].splitlines()]
    assert names == [STRANGER.name, TRUSTED.name]
    opened = open_note(note, [TRUSTED.verifier(), STRANGER.verifier()])
    assert opened.verified_by == ((STRANGER.name, STRANGER.key_id), (TRUSTED.name, TRUSTED.key_id))


@pytest.mark.parametrize("text", ["abc", "", "a\tb\n", "a\rb\n", "\ud800\n"])
def test_signing_malformed_text_refused(text: str) -> None:
    with pytest.raises(MalformedNoteError):
        sign_note(text, [TRUSTED])


def test_signing_without_signers_refused() -> None:
    with pytest.raises(ValueError, match="signer"):
        sign_note(TEXT, [])


def test_signing_twice_with_one_key_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        sign_note(TEXT, [TRUSTED, TRUSTED])


def test_signing_oversized_text_refused() -> None:
    with pytest.raises(LimitExceededError):
        sign_note("x" * MAX_NOTE_BYTES + "\n", [TRUSTED])


# --- properties ------------------------------------------------------------------------------

# Any character a note may hold, newline included; no lone surrogates.
note_chars = st.characters(
    codec="utf-8", exclude_characters=[chr(c) for c in range(0x20) if c != 0x0A]
)


@settings(max_examples=150)
@given(body=st.text(note_chars, max_size=200))
def test_any_text_signs_and_opens(body: str) -> None:
    text = body + "\n"
    note = sign_note(text, [TRUSTED, STRANGER])
    assert open_note(note, [TRUSTED.verifier()]) == VerifiedNote(
        text=text, verified_by=((TRUSTED.name, TRUSTED.key_id),)
    )
    assert open_note(note.encode(), [TRUSTED.verifier()]).text == text


FLIP_NOTE = sign_note(TEXT, [TRUSTED, STRANGER]).encode()
_STRANGER_LINE_START = FLIP_NOTE.rindex("— ".encode())


@settings(max_examples=200)
@given(
    index=st.integers(min_value=0, max_value=len(FLIP_NOTE) - 1),
    mask=st.integers(min_value=1, max_value=255),
)
def test_any_flipped_byte_rejected_unless_in_an_unknown_signature(index: int, mask: int) -> None:
    tampered = bytearray(FLIP_NOTE)
    tampered[index] ^= mask
    try:
        opened = open_note(bytes(tampered), [TRUSTED.verifier()])
    except VerificationError:
        return
    # Only damage to the signature nobody trusts may go unnoticed, and then the
    # note still stands on the trusted signature alone.
    assert index >= _STRANGER_LINE_START
    assert opened == VerifiedNote(text=TEXT, verified_by=((TRUSTED.name, TRUSTED.key_id),))


def test_every_single_bit_flip_rejected_unless_in_an_unknown_signature() -> None:
    for index in range(len(FLIP_NOTE)):
        for bit in range(8):
            tampered = bytearray(FLIP_NOTE)
            tampered[index] ^= 1 << bit
            try:
                opened = open_note(bytes(tampered), [TRUSTED.verifier()])
            except VerificationError:
                continue
            assert index >= _STRANGER_LINE_START, (index, bit)
            assert opened.text == TEXT
            assert opened.verified_by == ((TRUSTED.name, TRUSTED.key_id),)
