"""Signed sightings: a reporter tells a list's owner that one of its entries was seen.

A sighting is a signed note (``crypto.note``) whose text is exactly::

    hashfed-sighting/v1
    list <owner>/<name>
    seq <entry seq>               decimal, no leading zeros, < 2^63
    when <unix seconds>           decimal, when the reporter saw it
    reporter <node id>            the key name that must sign the note
    disposition <seen|confirmed|false_positive>
    reason <code>                 optional: [a-z0-9_]{1,32}
    nonce <32 hex>                16 random bytes: two reports never share a text

It names the entry by its list and seq, never by its hash value, and carries
no content, file name or path: the grammar has no field that could hold one.
Parsing is strict and canonical (``format_sighting(parse_sighting(t)) == t``),
and verification order is signature, then syntax, then the signer's name
equals ``reporter``, so nothing is read from a text no trusted key signed.
Relays pass the note on unchanged; the owner verifies the reporter's own
signature, however many hops it travelled.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from crypto.errors import VerificationError
from crypto.keys import NoteSigner, NoteVerifier
from crypto.note import open_note, sign_note

__all__ = [
    "DISPOSITIONS",
    "HEADER",
    "MAX_SIGHTING_NOTE_BYTES",
    "MalformedSightingError",
    "SighterMismatchError",
    "Sighting",
    "format_sighting",
    "new_nonce",
    "parse_sighting",
    "sighting_digest",
    "sign_sighting",
    "unverified_reporter",
    "verify_sighting",
]

HEADER = "hashfed-sighting/v1"
DISPOSITIONS = ("seen", "confirmed", "false_positive")
# A sighting text is ~250 bytes; one Ed25519 signature line ~100. 4 KiB
# bounds what a relay or owner reads before verifying.
MAX_SIGHTING_NOTE_BYTES = 4096
_MAX_INT = 2**63 - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
# Node ids and list names as the rest of hashfed spells them.
_NODE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_LIST = re.compile(r"[a-z0-9][a-z0-9-]{0,62}/[a-z0-9][a-z0-9._-]{0,99}")
_REASON = re.compile(r"[a-z0-9_]{1,32}")
_NONCE = re.compile(r"[0-9a-f]{32}")


class MalformedSightingError(VerificationError):
    code = "malformed_sighting"

    def __init__(self, *, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed sighting: {reason}", reason=reason)


class SighterMismatchError(VerificationError):
    """The note verified, but under a key of someone other than its ``reporter``."""

    code = "sighting_signer_mismatch"

    def __init__(self, *, expected: str, got: str) -> None:
        super().__init__(
            f"sighting names reporter {expected!r} but is signed by {got!r}",
            expected=expected,
            got=got,
        )


@dataclass(frozen=True)
class Sighting:
    """The body of a signed sighting."""

    list_name: str  # owner/name
    seq: int
    when: int
    reporter: str
    disposition: str
    nonce: str
    reason: str | None = None

    @property
    def owner(self) -> str:
        return self.list_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.list_name.split("/", 1)[1]


def new_nonce() -> str:
    return secrets.token_hex(16)


def format_sighting(s: Sighting) -> str:
    """The canonical text of ``s``.

    Raises:
        MalformedSightingError: a field is out of its grammar.
    """
    _check_fields(s)
    lines = [
        HEADER,
        f"list {s.list_name}",
        f"seq {s.seq}",
        f"when {s.when}",
        f"reporter {s.reporter}",
        f"disposition {s.disposition}",
    ]
    if s.reason is not None:
        lines.append(f"reason {s.reason}")
    lines.append(f"nonce {s.nonce}")
    return "\n".join(lines) + "\n"


def _check_fields(s: Sighting) -> None:
    if not _LIST.fullmatch(s.list_name):
        raise MalformedSightingError(reason="list is not owner/name")
    for field, value in (("seq", s.seq), ("when", s.when)):
        if not 0 <= value <= _MAX_INT:
            raise MalformedSightingError(reason=f"{field} out of range")
    if not _NODE_ID.fullmatch(s.reporter):
        raise MalformedSightingError(reason="reporter is not a node id")
    if s.disposition not in DISPOSITIONS:
        raise MalformedSightingError(reason=f"disposition must be one of {', '.join(DISPOSITIONS)}")
    if s.reason is not None and not _REASON.fullmatch(s.reason):
        raise MalformedSightingError(reason="reason must match [a-z0-9_]{1,32}")
    if not _NONCE.fullmatch(s.nonce):
        raise MalformedSightingError(reason="nonce must be 32 lowercase hex digits")


def _field(line: str, key: str) -> str:
    prefix = key + " "
    if not line.startswith(prefix):
        raise MalformedSightingError(reason=f"expected a {key!r} line")
    return line[len(prefix) :]


def _decimal(text: str, key: str) -> int:
    if not _DECIMAL.fullmatch(text):
        raise MalformedSightingError(reason=f"{key} is not a canonical decimal")
    value = int(text)
    if value > _MAX_INT:
        raise MalformedSightingError(reason=f"{key} out of range")
    return value


def parse_sighting(text: str) -> Sighting:
    """Parse a sighting text (no signature check: see :func:`verify_sighting`).

    Raises:
        MalformedSightingError: the text is not exactly the grammar above.
    """
    if len(text) > MAX_SIGHTING_NOTE_BYTES or not text.endswith("\n"):
        raise MalformedSightingError(reason="too long or not ending in a newline")
    lines = text[:-1].split("\n")
    if len(lines) not in (7, 8) or lines[0] != HEADER:
        raise MalformedSightingError(reason=f"expected {HEADER} and 6 or 7 field lines")
    reason = _field(lines[6], "reason") if len(lines) == 8 else None
    s = Sighting(
        list_name=_field(lines[1], "list"),
        seq=_decimal(_field(lines[2], "seq"), "seq"),
        when=_decimal(_field(lines[3], "when"), "when"),
        reporter=_field(lines[4], "reporter"),
        disposition=_field(lines[5], "disposition"),
        reason=reason,
        nonce=_field(lines[-1], "nonce"),
    )
    _check_fields(s)
    if format_sighting(s) != text:  # e.g. a trailing space in a field
        raise MalformedSightingError(reason="not in canonical form")
    return s


def sign_sighting(s: Sighting, signer: NoteSigner) -> str:
    """The signed note of ``s``; the signer's key name must be ``s.reporter``.

    Raises:
        MalformedSightingError: a field is out of its grammar.
        ValueError: the signer is not the reporter.
    """
    if signer.name != s.reporter:
        raise ValueError(f"signer {signer.name!r} is not the reporter {s.reporter!r}")
    return sign_note(format_sighting(s), [signer])


def unverified_reporter(note: str) -> str:
    """The ``reporter`` a note claims, to choose which keys to verify it with.

    Only a routing hint: nothing else is read before :func:`verify_sighting`.

    Raises:
        MalformedSightingError: no reporter line where one must be.
    """
    if len(note.encode("utf-8")) > MAX_SIGHTING_NOTE_BYTES:
        raise MalformedSightingError(reason=f"note over {MAX_SIGHTING_NOTE_BYTES} bytes")
    lines = note.split("\n", 6)
    if len(lines) < 6 or lines[0] != HEADER:
        raise MalformedSightingError(reason=f"expected {HEADER} first")
    reporter = _field(lines[4], "reporter")
    if not _NODE_ID.fullmatch(reporter):
        raise MalformedSightingError(reason="reporter is not a node id")
    return reporter


def verify_sighting(note: str, verifiers: Sequence[NoteVerifier]) -> Sighting:
    """Verify a signed sighting with the reporter's keys and return its body.

    Args:
        note: The signed note, as received.
        verifiers: The keys trusted for the reporter the note names.

    Raises:
        MalformedSightingError: too large, or the verified text is not a sighting.
        MalformedNoteError, BadSignatureError, NoTrustedSignatureError: see
            :func:`crypto.note.open_note` (a forged or altered note).
        SighterMismatchError: a trusted key signed it, but not the reporter's.
    """
    if len(note.encode("utf-8")) > MAX_SIGHTING_NOTE_BYTES:
        raise MalformedSightingError(reason=f"note over {MAX_SIGHTING_NOTE_BYTES} bytes")
    opened = open_note(note, verifiers)
    s = parse_sighting(opened.text)
    names = {name for name, _ in opened.verified_by}
    if s.reporter not in names:
        raise SighterMismatchError(expected=s.reporter, got=", ".join(sorted(names)))
    return s


def sighting_digest(note: str) -> str:
    """SHA-256 (hex) of a sighting's text, its identity for the replay guard.

    The nonce makes every report's text unique; a note sent twice, with the
    same or another signature, has the same digest.
    """
    text = note[: note.rfind("\n\n") + 1] if "\n\n" in note else note
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
