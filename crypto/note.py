"""C2SP signed notes (c2sp.org/signed-note), with no checkpoint semantics.

A signed note is a text ending in a newline, a blank line, and one or more
signature lines ``— <key name> <base64(4-byte key ID || signature)>``::

    <text line>
    ...

    — <key name> <base64>
    ...

This follows golang.org/x/mod/sumdb/note (``Open`` and ``Sign``) rule by rule,
and is stricter in three places, each noted where it happens: every signature
by a known key is verified (Go skips repeats), base64 must be canonical, and
the whole note has a size bound.

Verification does no I/O and ignores the text until a trusted key's signature
over it has verified.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from crypto.errors import (
    BadSignatureError,
    ConfigError,
    LimitExceededError,
    MalformedNoteError,
    NoTrustedSignatureError,
)
from crypto.keys import KeyId, NoteSigner, NoteVerifier, is_valid_key_name

__all__ = [
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "MIN_SIGNATURES_ACCEPTED",
    "VerifiedNote",
    "open_note",
    "sign_note",
]

# c2sp.org/signed-note: verifiers "MUST accept at least up to 16 signatures".
MIN_SIGNATURES_ACCEPTED = 16
# golang.org/x/mod/sumdb/note Open: "if numSig++; numSig > 100 { ... }"
# ("Avoid spending forever parsing a note with many signatures").
MAX_SIGNATURES = 100
# Ours: Go's note.go bounds only the signature count, C2SP asks for a count
# *or* a size bound. 100 post-quantum signature lines of ~5 kB each (the size
# C2SP warns about) fit in 1 MiB; a checkpoint with one Ed25519 signature is
# ~200 bytes.
MAX_NOTE_BYTES = 1024 * 1024

_SIG_PREFIX = "— "  # em dash U+2014, space
_SIG_SPLIT = "\n\n"
# c2sp.org/signed-note: "MUST NOT contain any ASCII control characters (those
# below U+0020) other than newline". DEL and C1 controls are not forbidden.
_FORBIDDEN_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_KEY_ID_SIZE = 4
# golang.org/x/mod/sumdb/note Open: "len(sig) < 5" is malformed, i.e. a key ID
# and at least one byte of signature.
_MIN_SIGNATURE_BYTES = _KEY_ID_SIZE + 1
# How much of an unverified first line an error message may quote.
_ORIGIN_HINT_CHARS = 100


@dataclass(frozen=True)
class VerifiedNote:
    """A note whose text a trusted key has signed.

    Attributes:
        text: The note text, ending in a newline, without the blank line
            that separates it from the signatures.
        verified_by: The ``(key name, key ID)`` of every trusted key whose
            signature verified, in the order they appear, without repeats.
        signatures: ``(key name, key ID, signature)`` of every verified
            signature line (a cosignature's carries its timestamp).
    """

    text: str
    verified_by: tuple[tuple[str, KeyId], ...]
    signatures: tuple[tuple[str, KeyId, bytes], ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class _SignatureLine:
    name: str
    key_id: KeyId
    signature: bytes


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    """Sign ``text`` with each signer and return the signed note.

    Args:
        text: The note text. It must end with a newline, and may not contain
            control characters other than newline (nor lone surrogates).
        signers: One or more signers, at most ``MAX_SIGNATURES``, no two with
            the same name and key ID. Signature lines appear in this order.

    Returns:
        ``text``, a blank line, and one signature line per signer.

    Raises:
        MalformedNoteError: ``text`` is not a valid note text.
        LimitExceededError: The signed note would be larger than
            ``MAX_NOTE_BYTES``, so no verifier here would open it.
        ValueError: ``signers`` is empty, too long, or repeats a key.
    """
    text_bytes = _encode_text(text)
    if not text.endswith("\n"):
        raise MalformedNoteError(reason="the text does not end with a newline")
    if not signers:
        raise ValueError("sign_note needs at least one signer")
    if len(signers) > MAX_SIGNATURES:
        raise ValueError(f"sign_note takes at most {MAX_SIGNATURES} signers")
    seen: set[tuple[str, bytes]] = set()
    lines: list[str] = []
    for signer in signers:
        ident = (signer.name, bytes(signer.key_id))
        if ident in seen:
            raise ValueError(f"signer {signer.name}+{signer.key_id.hex()} is given twice")
        seen.add(ident)
        blob = bytes(signer.key_id) + signer.sign(text_bytes)
        lines.append(f"{_SIG_PREFIX}{signer.name} {base64.b64encode(blob).decode('ascii')}\n")
    note = text + "\n" + "".join(lines)
    size = len(note.encode("utf-8"))
    if size > MAX_NOTE_BYTES:
        raise LimitExceededError(limit="signed note bytes", value=size, maximum=MAX_NOTE_BYTES)
    return note


def open_note(note: str | bytes, verifiers: Sequence[NoteVerifier]) -> VerifiedNote:
    """Check a signed note's syntax and signatures and return its text.

    Every guard runs before any signature is checked: size, UTF-8, control
    characters, the blank line, the signature count and each line's syntax.
    Then, per c2sp.org/signed-note: a signature whose (name, key ID) pair
    matches no verifier is ignored, even if the name or the ID alone matches;
    every signature whose pair matches is verified, and one that fails rejects
    the whole note; at least one must verify.

    Args:
        note: The signed note, as text or as UTF-8 bytes.
        verifiers: The trusted keys. Two verifiers with the same name and key
            ID but different public keys are a configuration error.

    Returns:
        The text and the trusted keys whose signatures verified.

    Raises:
        LimitExceededError: The note is larger than ``MAX_NOTE_BYTES`` or has
            more than ``MAX_SIGNATURES`` signature lines.
        MalformedNoteError: The note is not a syntactically valid signed note.
        BadSignatureError: A signature by a trusted key does not verify.
        NoTrustedSignatureError: No signature is by a trusted key.
        ConfigError: ``verifiers`` holds two different keys with the same name
            and key ID.
    """
    known = _index_verifiers(verifiers)
    message = _decode_note(note)

    split = message.rfind(_SIG_SPLIT)  # the *last* blank line ends the text
    if split < 0:
        raise MalformedNoteError(reason="no blank line before the signatures")
    text, block = message[: split + 1], message[split + 2 :]
    if not block or not block.endswith("\n"):
        raise MalformedNoteError(reason="the signature block does not end with a newline")
    raw_lines = block[:-1].split("\n")
    if len(raw_lines) > MAX_SIGNATURES:
        raise LimitExceededError(
            limit="note signatures", value=len(raw_lines), maximum=MAX_SIGNATURES
        )
    parsed = [_parse_signature_line(line, number) for number, line in enumerate(raw_lines, 1)]

    text_bytes = text.encode("utf-8")
    verified: list[tuple[str, KeyId]] = []
    signatures: list[tuple[str, KeyId, bytes]] = []
    checked: set[tuple[str, bytes, bytes]] = set()
    for sig in parsed:
        verifier = known.get((sig.name, bytes(sig.key_id)))
        if verifier is None:
            continue  # "Verifiers MUST ignore signatures from unknown keys"
        ident = (sig.name, bytes(sig.key_id), sig.signature)
        if ident in checked:
            continue  # a byte-identical repeat of a line that already verified
        # Go's Open skips any repeat by the same key unverified; C2SP says a
        # known key's signature "MUST" be verified, so we check each one.
        if not verifier.verify(text_bytes, sig.signature):
            raise BadSignatureError(origin=_origin_hint(text), key_name=sig.name)
        checked.add(ident)
        signatures.append((sig.name, sig.key_id, sig.signature))
        if (sig.name, sig.key_id) not in verified:
            verified.append((sig.name, sig.key_id))

    if not verified:
        trusted = ", ".join(f"{n}+{k.hex()}" for n, k in known) or "none configured"
        raise NoTrustedSignatureError(origin=_origin_hint(text), trusted=trusted)
    return VerifiedNote(text=text, verified_by=tuple(verified), signatures=tuple(signatures))


def _index_verifiers(verifiers: Sequence[NoteVerifier]) -> dict[tuple[str, bytes], NoteVerifier]:
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for verifier in verifiers:
        ident = (verifier.name, bytes(verifier.key_id))
        other = known.get(ident)
        if other is not None and other != verifier:
            # Go's VerifierList reports this as an "ambiguous key".
            raise ConfigError(
                f"two trusted keys share the name {verifier.name!r} and key id "
                f"{verifier.key_id.hex()}; remove one"
            )
        known[ident] = verifier
    return known


def _encode_text(text: str) -> bytes:
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedNoteError(reason="the text is not valid UTF-8") from exc
    if _FORBIDDEN_CONTROL.search(text):
        raise MalformedNoteError(reason="the text contains a control character")
    return encoded


def _decode_note(note: str | bytes) -> str:
    """Bound, decode and screen a note for forbidden characters."""
    if isinstance(note, str):
        if len(note) > MAX_NOTE_BYTES:  # every character is at least one byte
            raise LimitExceededError(
                limit="signed note bytes", value=len(note), maximum=MAX_NOTE_BYTES
            )
        try:
            data = note.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MalformedNoteError(reason="the note is not valid UTF-8") from exc
    else:
        data = bytes(note)
    if len(data) > MAX_NOTE_BYTES:
        raise LimitExceededError(limit="signed note bytes", value=len(data), maximum=MAX_NOTE_BYTES)
    try:
        message = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedNoteError(reason="the note is not valid UTF-8") from exc
    if _FORBIDDEN_CONTROL.search(message):
        raise MalformedNoteError(reason="the note contains a control character")
    return message


def _parse_signature_line(line: str, number: int) -> _SignatureLine:
    if not line.startswith(_SIG_PREFIX):
        raise MalformedNoteError(
            reason=f"signature line {number} does not start with an em dash and a space"
        )
    # The name cannot contain a space, so the first space ends it.
    name, _, b64 = line[len(_SIG_PREFIX) :].partition(" ")
    if not is_valid_key_name(name):
        raise MalformedNoteError(reason=f"signature line {number} has an invalid key name")
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedNoteError(reason=f"signature line {number} is not base64") from exc
    if base64.b64encode(blob).decode("ascii") != b64:
        # Stricter than Go: no second spelling (non-zero pad bits) of a line.
        raise MalformedNoteError(reason=f"signature line {number} is not canonical base64")
    if len(blob) < _MIN_SIGNATURE_BYTES:
        raise MalformedNoteError(
            reason=f"signature line {number} is {len(blob)} bytes, expected a key id and a "
            "signature"
        )
    return _SignatureLine(
        name=name, key_id=KeyId(blob[:_KEY_ID_SIZE]), signature=blob[_KEY_ID_SIZE:]
    )


def _origin_hint(text: str) -> str:
    """The first line of a note, shortened, to say which note an error is about."""
    first = text.split("\n", 1)[0]
    if len(first) > _ORIGIN_HINT_CHARS:
        return first[:_ORIGIN_HINT_CHARS] + "…"
    return first
