"""Checkpoints (crypto/checkpoint.py): one test per rejection, named after the attack."""

from __future__ import annotations

import base64
import hashlib
import unicodedata

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    CheckpointSigner,
    format_checkpoint,
    list_origin,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from crypto.cosignature import CosignatureSigner
from crypto.errors import (
    BadSignatureError,
    ConfigError,
    InputError,
    LimitExceededError,
    MalformedCheckpointError,
    MissingCosignatureError,
    NoTrustedSignatureError,
    UnknownOriginError,
    VerificationError,
)
from crypto.keys import NoteSigner, NoteVerifier
from crypto.note import MAX_NOTE_BYTES, sign_note


def signer(name: str, label: str | None = None) -> NoteSigner:
    seed = hashlib.sha256((label or name).encode()).digest()
    return NoteSigner(name, Ed25519PrivateKey.from_private_bytes(seed))


def cosigner(name: str, label: str) -> CosignatureSigner:
    seed = hashlib.sha256(label.encode()).digest()
    return CosignatureSigner(name, Ed25519PrivateKey.from_private_bytes(seed))


OWNER = signer("hashfed.example/node-a")
OWNER_CO = cosigner("hashfed.example/node-a", "node-a cosigner")
STRANGER = signer("hashfed.example/node-z")
ORIGIN = "hashfed:node-a/baseline"
ROOT = hashlib.sha256(b"root").digest()
ROOT_B64 = base64.b64encode(ROOT).decode()
TS = 1_700_000_000
CP = Checkpoint(origin=ORIGIN, size=12, root_hash=ROOT)
TEXT = f"{ORIGIN}\n12\n{ROOT_B64}\n"
KEYS = [OWNER.verifier(), OWNER_CO.verifier()]


def body(size: str = "12", root: str = ROOT_B64, *rest: str, origin: str = ORIGIN) -> str:
    """A checkpoint text with the given lines, then ``rest`` as extension lines."""
    lines = [origin, size, root, *rest]
    return "".join(line + "\n" for line in lines)


def signed(text: str, by: NoteSigner = OWNER) -> str:
    """Sign and cosign any text, so that only the checkpoint rules can reject it."""
    return sign_note(text, [by]) + OWNER_CO.line(text, TS)


def sign(cp: Checkpoint, by: NoteSigner = OWNER) -> str:
    return sign_checkpoint(cp, by, cosigner=OWNER_CO, timestamp=TS)


def verify(note: str | bytes, origin: str = ORIGIN) -> Checkpoint:
    return verify_checkpoint(note, origin=origin, verifiers=KEYS).checkpoint


# --- format ----------------------------------------------------------------------------------


def test_format_writes_the_tlog_checkpoint_lines() -> None:
    assert format_checkpoint(CP) == TEXT


def test_extension_lines_follow_the_root() -> None:
    cp = Checkpoint(ORIGIN, 0, ROOT, ("witness example.com 3", "x"))
    assert format_checkpoint(cp) == f"{ORIGIN}\n0\n{ROOT_B64}\nwitness example.com 3\nx\n"


def test_parse_reads_what_format_writes() -> None:
    assert parse_checkpoint(TEXT) == CP


def test_list_origin_convention() -> None:
    assert list_origin("node-a", "baseline") == ORIGIN


def test_signed_checkpoint_verifies() -> None:
    note = sign(CP, OWNER)
    assert note.startswith(TEXT + "\n— hashfed.example/node-a ")
    assert note.count("\n— hashfed.example/node-a ") == 2  # log signature, then cosignature
    got = verify_checkpoint(note, origin=ORIGIN, verifiers=KEYS)
    assert got.checkpoint == CP
    assert got.timestamp == TS
    assert [c.name for c in got.cosignatures] == [OWNER_CO.name]


def test_extension_lines_preserved() -> None:
    cp = Checkpoint(ORIGIN, 3, ROOT, ("opaque line one", "— not a signature"))
    assert verify(sign(cp, OWNER)) == cp


def test_empty_tree_size_zero_accepted() -> None:
    assert verify(signed(body("0"))).size == 0


def test_largest_tree_size_accepted() -> None:
    assert verify(signed(body(str(MAX_TREE_SIZE)))).size == 2**63 - 1


# --- wrong list, wrong key -------------------------------------------------------------------


def test_checkpoint_for_other_list_rejected() -> None:
    # The owner's valid checkpoint for list A, presented as list B.
    other = Checkpoint("hashfed:node-a/restricted", 12, ROOT)
    with pytest.raises(UnknownOriginError):
        verify(sign(other, OWNER))


@pytest.mark.parametrize(
    "got",
    [
        "hashfed:node-a/baseline ",
        "HASHFED:node-a/baseline",
        "hashfed:node-a/baselinE",
        "hashfed:node-a/basel\u0131ne",  # dotless i
        "hashfed:node-a//baseline",
    ],
)
def test_lookalike_origin_rejected(got: str) -> None:
    with pytest.raises(UnknownOriginError):
        verify(sign(Checkpoint(got, 12, ROOT), OWNER))


def test_unnormalised_unicode_origin_rejected() -> None:
    # No normalisation: NFC and NFD spellings are different origins.
    nfc = list_origin("nöde", "list")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    with pytest.raises(UnknownOriginError):
        verify(sign(Checkpoint(nfd, 1, ROOT), OWNER), origin=nfc)


def test_checkpoint_signed_by_other_node_rejected() -> None:
    with pytest.raises(NoTrustedSignatureError):
        verify(sign(CP, STRANGER))


def test_checkpoint_signed_by_other_key_under_owner_name_rejected() -> None:
    impostor = signer(OWNER.name, label="stolen name")
    with pytest.raises(NoTrustedSignatureError):
        verify(sign(CP, impostor))


def test_signature_checked_before_origin() -> None:
    # An untrusted note says nothing, not even which list it is for.
    other = Checkpoint("hashfed:node-z/other", 1, ROOT)
    with pytest.raises(NoTrustedSignatureError):
        verify(sign(other, STRANGER))


def test_signature_checked_before_syntax() -> None:
    with pytest.raises(NoTrustedSignatureError):
        verify(signed(body("007"), by=STRANGER))


def test_c2sp_example_checkpoint_parses() -> None:
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    cp = parse_checkpoint(text)
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert format_checkpoint(cp) == text


def test_real_sumdb_checkpoint_opens_but_has_no_date() -> None:
    note = (
        "go.sum database tree\n15368405\n/g9am3I6YWNKaZX/jkne1fqd9zEyjss+JXyPXG0WfkY=\n\n"
        "— sum.golang.org Az3grqJGUaSGukG9p8nI2vKgiFn7qGHxn0W+mrwyI6Gz3F0t1J3LzmWk/p96Ybf295Ej"
        "wdSwlzgijq5WA9d1Ded7owM=\n"
    )
    sumdb = NoteVerifier.from_verifier_key(
        "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
    )
    cp, _ = open_checkpoint(note, origin="go.sum database tree", verifiers=[sumdb])
    assert cp.size == 15368405
    # Without a cosignature there is no trusted time: not fresh enough for a list.
    with pytest.raises(MissingCosignatureError):
        verify_checkpoint(note, origin="go.sum database tree", verifiers=[sumdb])


# --- tree size -------------------------------------------------------------------------------


def test_leading_zero_size_rejected() -> None:
    with pytest.raises(MalformedCheckpointError):
        verify(signed(body("012")))


def test_zero_padded_zero_size_rejected() -> None:
    with pytest.raises(MalformedCheckpointError):
        verify(signed(body("00")))


def test_negative_size_rejected() -> None:
    with pytest.raises(MalformedCheckpointError):
        verify(signed(body("-1")))


@pytest.mark.parametrize("size", ["+12", " 12", "12 ", "1_2", "12.0", "1e3", "0x0c", "twelve"])
def test_size_python_int_would_accept_rejected(size: str) -> None:
    with pytest.raises(MalformedCheckpointError):
        verify(signed(body(size)))


@pytest.mark.parametrize("size", ["１２", "١٢", "१२", "𝟏𝟐"])  # fullwidth, Arabic, Devanagari, math
def test_unicode_digit_size_rejected(size: str) -> None:
    assert int(size) == 12  # what a lax parser would read
    with pytest.raises(MalformedCheckpointError):
        verify(signed(body(size)))


def test_size_of_two_to_the_63_rejected() -> None:
    with pytest.raises(MalformedCheckpointError):
        verify(signed(body(str(2**63))))


def test_size_with_thousands_of_digits_rejected() -> None:
    # Past 4300 digits Python's int() raises ValueError; the length check runs first.
    with pytest.raises(MalformedCheckpointError):
        verify(signed(body("9" * 5000)))


def test_empty_size_rejected() -> None:
    with pytest.raises(MalformedCheckpointError):
        parse_checkpoint(f"{ORIGIN}\n\n{ROOT_B64}\ntimestamp 1\n")


# --- root hash -------------------------------------------------------------------------------


def test_truncated_root_rejected() -> None:
    with pytest.raises(MalformedCheckpointError):
        verify(signed(body("12", base64.b64encode(ROOT[:31]).decode())))


def test_extended_root_rejected() -> None:
    with pytest.raises(MalformedCheckpointError):
        verify(signed(body("12", base64.b64encode(ROOT + b"\x00").decode())))


def test_empty_root_rejected() -> None:
    with pytest.raises(MalformedCheckpointError):
        parse_checkpoint(f"{ORIGIN}\n12\n\ntimestamp 1\n")


def test_unpadded_root_rejected() -> None:
    with pytest.raises(MalformedCheckpointError):
        verify(signed(body("12", ROOT_B64.rstrip("="))))


def test_urlsafe_root_rejected() -> None:
    root = bytes([0xFB, 0xFF] * 16)  # encodes with "+" and "/" in standard base64
    urlsafe = base64.urlsafe_b64encode(root).decode()
    assert urlsafe != base64.b64encode(root).decode()
    with pytest.raises(MalformedCheckpointError):
        verify(signed(body("12", urlsafe)))


def test_hex_root_rejected() -> None:
    with pytest.raises(MalformedCheckpointError):
        verify(signed(body("12", ROOT.hex())))


def test_non_canonical_root_rejected() -> None:
    # 32 bytes leave 2 spare bits in the last character; setting one spells
    # the same root another way, which would give one root two signed texts.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = ROOT_B64[:-2] + alphabet[alphabet.index(ROOT_B64[-2]) ^ 0x01] + "="
    assert base64.b64decode(twin) == ROOT
    with pytest.raises(MalformedCheckpointError):
        verify(signed(body("12", twin)))


def test_root_with_whitespace_rejected() -> None:
    with pytest.raises(MalformedCheckpointError):
        verify(signed(body("12", ROOT_B64[:20] + " " + ROOT_B64[20:])))


# --- cosignature (the date) and extension lines ---------------------------------------------


def test_checkpoint_without_owner_cosignature_rejected() -> None:
    # A replayed note from before cosignatures, or one the log key alone signed.
    with pytest.raises(MissingCosignatureError):
        verify(sign_note(TEXT, [OWNER]))


def test_cosignature_by_unknown_cosigner_does_not_date_it() -> None:
    other = cosigner(OWNER_CO.name, "someone else's cosigner")
    with pytest.raises(MissingCosignatureError):
        verify(sign_note(TEXT, [OWNER]) + other.line(TEXT, TS))


def test_cosignature_over_other_checkpoint_rejected() -> None:
    # The owner's cosignature of size 11 pasted under a size-12 checkpoint.
    line = OWNER_CO.line(body("11"), TS)
    with pytest.raises(BadSignatureError):
        verify(sign_note(TEXT, [OWNER]) + line)


def test_cosigner_alone_without_log_signature_rejected() -> None:
    with pytest.raises(NoTrustedSignatureError):
        verify(sign_note(TEXT, [STRANGER]) + OWNER_CO.line(TEXT, TS))


def test_newest_owner_cosignature_is_the_date() -> None:
    note = sign_note(TEXT, [OWNER]) + OWNER_CO.line(TEXT, 5) + OWNER_CO.line(TEXT, 9)
    assert verify_checkpoint(note, origin=ORIGIN, verifiers=KEYS).timestamp == 9


def test_log_key_configured_as_cosigner_refused() -> None:
    same = NoteVerifier.from_verifier_key(OWNER.verifier_key)
    as_cosigner = cosigner(OWNER.name, OWNER.name)  # signer() seeds from the name
    assert as_cosigner.public_key_raw == same.public_key_raw
    with pytest.raises(ConfigError):
        verify_checkpoint(sign(CP), origin=ORIGIN, verifiers=[same, as_cosigner.verifier()])
    with pytest.raises(ConfigError):
        CheckpointSigner(OWNER, as_cosigner)


def test_old_timestamp_line_is_an_opaque_extension() -> None:
    # The mandatory 4th line of earlier versions: now any extension line.
    cp = verify(signed(body("12", ROOT_B64, "timestamp 5")))
    assert cp.extensions == ("timestamp 5",)


def test_empty_extension_line_rejected() -> None:
    # c2sp.org/tlog-checkpoint: extension lines "MUST be non-empty".
    with pytest.raises(MalformedCheckpointError):
        verify(signed(body("12", ROOT_B64, "x", "", "after")))


# --- overall shape ---------------------------------------------------------------------------


def test_empty_origin_rejected() -> None:
    with pytest.raises(MalformedCheckpointError):
        verify(signed(body(origin="")), origin="")


@pytest.mark.parametrize("text", ["", "\n", f"{ORIGIN}\n", f"{ORIGIN}\n12\n"])
def test_fewer_than_three_lines_rejected(text: str) -> None:
    with pytest.raises(MalformedCheckpointError):
        parse_checkpoint(text)


def test_text_without_final_newline_rejected() -> None:
    with pytest.raises(MalformedCheckpointError):
        parse_checkpoint(TEXT[:-1])


@pytest.mark.parametrize("char", ["\t", "\r", "\x00"])
def test_control_character_in_checkpoint_text_rejected(char: str) -> None:
    with pytest.raises(MalformedCheckpointError):
        parse_checkpoint(TEXT.replace("baseline", "base" + char + "line"))


def test_unicode_line_separators_are_not_newlines() -> None:
    # U+2028 and U+0085 end lines for str.splitlines(), not for checkpoints.
    origin = "hashfed:a\u2028b\x85c/list"
    cp = Checkpoint(origin, 1, ROOT)
    assert verify(sign(cp, OWNER), origin=origin) == cp


def test_oversized_checkpoint_text_rejected() -> None:
    with pytest.raises(LimitExceededError):
        parse_checkpoint(TEXT + "x" * MAX_NOTE_BYTES + "\n")


# --- the Checkpoint type refuses what it could not write -------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"origin": ""},
        {"origin": "a\nb"},
        {"origin": "a\tb"},
        {"origin": "\ud800"},
        {"size": -1},
        {"size": 2**63},
        {"size": True},
        {"size": 1.0},
        {"root_hash": ROOT[:31]},
        {"root_hash": ROOT + b"\x00"},
        {"root_hash": ROOT_B64},
        {"extensions": ("",)},
        {"extensions": ("a\nb",)},
    ],
)
def test_checkpoint_with_unwritable_field_refused(fields: dict[str, object]) -> None:
    values: dict[str, object] = {
        "origin": ORIGIN,
        "size": 1,
        "root_hash": ROOT,
        "extensions": (),
    }
    values.update(fields)
    with pytest.raises(MalformedCheckpointError):
        Checkpoint(**values)  # type: ignore[arg-type]


def test_extensions_given_as_list_stored_as_tuple() -> None:
    cp = Checkpoint(ORIGIN, 1, ROOT, ["a", "b"])  # type: ignore[arg-type]
    assert cp.extensions == ("a", "b")
    assert hash(cp) == hash(Checkpoint(ORIGIN, 1, ROOT, ("a", "b")))


# --- list origins ----------------------------------------------------------------------------


def test_slash_in_owner_rejected() -> None:
    # ("a/b", "c") and ("a", "b/c") would share the origin hashfed:a/b/c.
    with pytest.raises(InputError):
        list_origin("a/b", "c")
    with pytest.raises(InputError):
        list_origin("a", "b/c")


@pytest.mark.parametrize(
    ("owner", "name"),
    [("", "x"), ("x", ""), ("a b", "x"), ("x", "a+b"), ("x", "a\nb"), ("x", "a\u3000b")],
)
def test_unusable_list_origin_parts_rejected(owner: str, name: str) -> None:
    with pytest.raises(InputError):
        list_origin(owner, name)


# --- properties ------------------------------------------------------------------------------

line_chars = st.characters(codec="utf-8", min_codepoint=0x20)
lines = st.text(line_chars, min_size=1, max_size=40)
checkpoints = st.builds(
    Checkpoint,
    origin=lines,
    size=st.integers(min_value=0, max_value=MAX_TREE_SIZE),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=st.lists(lines, max_size=3).map(tuple),
)


@settings(max_examples=100)
@given(cp=checkpoints)
def test_any_checkpoint_signs_and_verifies(cp: Checkpoint) -> None:
    note = sign(cp, OWNER)
    assert verify(note, origin=cp.origin) == cp


@settings(max_examples=200)
@given(cp=checkpoints)
def test_format_and_parse_are_inverse(cp: Checkpoint) -> None:
    text = format_checkpoint(cp)
    assert parse_checkpoint(text) == cp
    assert format_checkpoint(parse_checkpoint(text)) == text


SIGNED = sign(CP, OWNER).encode()


@settings(max_examples=200)
@given(
    index=st.integers(min_value=0, max_value=len(SIGNED) - 1),
    mask=st.integers(min_value=1, max_value=255),
)
def test_any_flipped_byte_in_signed_checkpoint_rejected(index: int, mask: int) -> None:
    tampered = bytearray(SIGNED)
    tampered[index] ^= mask
    with pytest.raises(VerificationError):
        verify(bytes(tampered))
