"""Timestamped checkpoint cosignatures (c2sp.org/tlog-cosignature, cosignature/v1).

A cosignature is one more signature line on a signed checkpoint note::

    — <cosigner name> base64(key ID || u64 big-endian timestamp || Ed25519 signature)

    key ID  = SHA-256(<name> || 0x0A || 0x04 || 32-byte public key)[:4]
    message = "cosignature/v1\\n" "time <timestamp>\\n" <whole checkpoint text>

It states: as of ``timestamp`` (Unix seconds), this is the largest tree the
cosigner has seen consistent for that origin. A list owner cosigns its own
checkpoints with a key of its own (never its log key: the Ed25519 message
does not commit to the signature type, so C2SP requires distinct keys), which
is how receivers tell a fresh checkpoint from a replayed one; every node also
cosigns, as a witness, the checkpoints of others it verified.

A :class:`CosignatureVerifier` is a :class:`crypto.keys.NoteVerifier`, so
``crypto.note.open_note`` verifies a cosignature line exactly like any other
signature by a trusted key. No I/O.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto.errors import ConfigError, MalformedNoteError
from crypto.keys import (
    KeyId,
    NoteSigner,
    NoteVerifier,
    compute_key_id,
)

__all__ = [
    "COSIGNATURE_V1_TYPE",
    "MAX_TIMESTAMP",
    "Cosignature",
    "CosignatureSigner",
    "CosignatureVerifier",
    "add_cosignatures",
    "check_distinct",
    "cosignatures_except",
    "cosigned_message",
    "signature_timestamp",
    "signer_names",
]

# c2sp.org/signed-note "Signature types": 0x04 is an Ed25519 cosignature/v1.
COSIGNATURE_V1_TYPE = 0x04
# c2sp.org/tlog-cosignature: the timestamp "MUST NOT exceed 2^63 - 1".
MAX_TIMESTAMP = 2**63 - 1
_HEADER = "cosignature/v1\n"
_KEY_ID_SIZE = 4
_TIMESTAMP_SIZE = 8
_SIGNATURE_SIZE = 64  # RFC 8032 §5.1.6
COSIGNATURE_SIZE = _TIMESTAMP_SIZE + _SIGNATURE_SIZE


def cosigned_message(text: str, timestamp: int) -> bytes:
    """The bytes a cosigner signs: header line, time line, the checkpoint text.

    Args:
        text: The whole checkpoint note text, ending in a newline, without
            signature lines.
        timestamp: Unix seconds, 0 to 2^63-1.

    Returns:
        ``cosignature/v1\\ntime <timestamp>\\n`` followed by ``text``, UTF-8.

    Raises:
        ValueError: ``timestamp`` is out of range.
    """
    if isinstance(timestamp, bool) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError("a cosignature timestamp is an integer from 0 to 2^63-1")
    return f"{_HEADER}time {timestamp}\n{text}".encode()


def signature_timestamp(signature: bytes) -> int | None:
    """The timestamp of a cosignature (the bytes after the key ID), or None if malformed."""
    if len(signature) != COSIGNATURE_SIZE:
        return None
    timestamp = int.from_bytes(signature[:_TIMESTAMP_SIZE], "big")
    return timestamp if timestamp <= MAX_TIMESTAMP else None


class CosignatureVerifier(NoteVerifier):
    """A trusted cosigner key: verifies ``cosignature/v1`` signature lines.

    Built like a :class:`NoteVerifier` (``from_public_key``, or
    ``NoteVerifier.from_verifier_key`` on a vkey whose type byte is 0x04).
    """

    __slots__ = ()
    SIGNATURE_TYPE = COSIGNATURE_V1_TYPE

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Report whether ``signature`` cosigns the note text ``message``.

        ``signature`` is the 8-byte big-endian timestamp and the 64-byte
        Ed25519 signature over :func:`cosigned_message`. A timestamp above
        2^63-1 fails, as the spec forbids it.
        """
        timestamp = signature_timestamp(signature)
        if timestamp is None:
            return False
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return super().verify(cosigned_message(text, timestamp), signature[_TIMESTAMP_SIZE:])

    def __repr__(self) -> str:
        return f"CosignatureVerifier.from_verifier_key({self.verifier_key!r})"


class CosignatureSigner:
    """A named Ed25519 cosigner key.

    Args:
        name: The cosigner name written in signature lines.
        private_key: Its Ed25519 key; never a log's checkpoint-signing key.

    Raises:
        ConfigError: ``name`` is not a valid key name, or the key is not Ed25519.
    """

    __slots__ = ("_inner", "_key_id")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._inner = NoteSigner(name, private_key)  # name and key checks
        self._key_id = compute_key_id(name, self._inner.public_key_raw, COSIGNATURE_V1_TYPE)

    @property
    def name(self) -> str:
        """The cosigner name."""
        return self._inner.name

    @property
    def key_id(self) -> KeyId:
        """The 4-byte key ID (signature type 0x04)."""
        return self._key_id

    @property
    def public_key_raw(self) -> bytes:
        """The raw 32-byte public key."""
        return self._inner.public_key_raw

    @property
    def verifier_key(self) -> str:
        """The vkey ``<name>+<hex key id>+<base64(0x04 || key)>``."""
        return self.verifier().verifier_key

    def verifier(self) -> CosignatureVerifier:
        """The verifier for this cosigner's key."""
        return CosignatureVerifier(self.name, self._key_id, self.public_key_raw)

    def cosign(self, text: str, timestamp: int) -> bytes:
        """The 72-byte timestamped signature of the checkpoint text ``text``.

        Raises:
            ValueError: ``timestamp`` is out of range.
        """
        message = cosigned_message(text, timestamp)
        return timestamp.to_bytes(_TIMESTAMP_SIZE, "big") + self._inner.sign(message)

    def line(self, text: str, timestamp: int) -> str:
        """The signature line (with its newline) cosigning ``text`` at ``timestamp``."""
        blob = bytes(self._key_id) + self.cosign(text, timestamp)
        return f"— {self.name} {base64.b64encode(blob).decode('ascii')}\n"

    def __repr__(self) -> str:
        return f"CosignatureSigner({self.name!r}, key_id={self._key_id.hex()})"


@dataclass(frozen=True)
class Cosignature:
    """A verified cosignature: who, and when they cosigned."""

    name: str
    key_id: KeyId
    timestamp: int


def add_cosignatures(note: str, lines: Sequence[str]) -> str:
    """Append signature lines to a signed note, skipping ones it holds already.

    Args:
        note: A signed note (text, blank line, signature lines).
        lines: Signature lines, each ending in a newline.

    Returns:
        The note with the new lines at the end.

    Raises:
        MalformedNoteError: ``note`` has no signature block, or a line is not
            a single signature line.
    """
    if "\n\n" not in note or not note.endswith("\n"):
        raise MalformedNoteError(reason="not a signed note")
    present = set(note[note.rfind("\n\n") + 2 :].splitlines(keepends=True))
    out = note
    for line in lines:
        if not line.startswith("— ") or not line.endswith("\n") or "\n" in line[:-1]:
            raise MalformedNoteError(reason="a cosignature is not one signature line")
        if line not in present:
            out += line
            present.add(line)
    return out


def cosignatures_except(note: str, names: Collection[str]) -> list[str]:
    """The signature lines of ``note`` by keys whose name is not in ``names``.

    A witness's cosignature covers the checkpoint text only (origin, size,
    root), so when an owner re-signs the same tree later, the witnesses'
    lines still hold for the new note and are carried over. ``names`` are
    the owner's key names: its earlier signatures are never carried (a note
    signed by another key must not inherit the owner's). Malformed lines are
    dropped (a receiver would ignore them anyway).
    """
    return [line for name, line in _signature_lines(note) if name not in names]


def signer_names(note: str) -> set[str]:
    """The key names of ``note``'s well-formed signature lines (none verified)."""
    return {name for name, _line in _signature_lines(note)}


def _signature_lines(note: str) -> list[tuple[str, str]]:
    """``(key name, line)`` of each well-formed signature line; malformed ones are dropped."""
    if "\n\n" not in note:
        return []
    out: list[tuple[str, str]] = []
    for line in note[note.rfind("\n\n") + 2 :].splitlines(keepends=True):
        if not line.startswith("— ") or not line.endswith("\n"):
            continue
        name, _, b64 = line[2:-1].partition(" ")
        try:
            blob = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(blob) > _KEY_ID_SIZE:
            out.append((name, line))
    return out


def check_distinct(log_keys: Sequence[NoteVerifier], cosigners: Sequence[NoteVerifier]) -> None:
    """Refuse a cosigner key that is also a log key (c2sp.org/tlog-cosignature).

    Raises:
        ConfigError: one public key is configured as both.
    """
    logs = {v.public_key_raw for v in log_keys}
    for c in cosigners:
        if c.public_key_raw in logs:
            raise ConfigError(
                f"key {c.name!r} is configured both as a log key and as a cosigner key; "
                "a cosigner needs a key of its own"
            )
