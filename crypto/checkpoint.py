"""Signed checkpoints of a hash list (c2sp.org/tlog-checkpoint + one extension).

A checkpoint is a signed note (see ``crypto.note``) whose text is::

    <origin>                      hashfed:<owner>/<name>
    <tree size>                   decimal, no leading zeros, < 2^63
    <root hash>                   base64 (standard, padded) of 32 bytes
    timestamp <unix seconds>      hashfed extension line, required, 4th line
    <extension line>              any others, opaque, preserved

Parsing is strict and canonical: ``format_checkpoint(parse_checkpoint(t)) == t``
for every text that parses. Verification order is signature, then syntax,
then origin, so nothing is read from a text no trusted key has signed.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from crypto.errors import (
    InputError,
    LimitExceededError,
    MalformedCheckpointError,
    UnknownOriginError,
)
from crypto.keys import NoteSigner, NoteVerifier, is_valid_key_name
from crypto.note import MAX_NOTE_BYTES, open_note, sign_note

__all__ = [
    "MAX_TREE_SIZE",
    "ORIGIN_PREFIX",
    "ROOT_HASH_SIZE",
    "TIMESTAMP_PREFIX",
    "Checkpoint",
    "format_checkpoint",
    "list_origin",
    "parse_checkpoint",
    "sign_checkpoint",
    "verify_checkpoint",
]

ORIGIN_PREFIX = "hashfed:"
TIMESTAMP_PREFIX = "timestamp "
ROOT_HASH_SIZE = 32  # SHA-256, RFC 6962 §2.1
# Tree sizes are uint64 in Go and int64 in SQL; both agree below 2^63.
MAX_TREE_SIZE = 2**63 - 1
_MAX_TIMESTAMP = 2**63 - 1
_MAX_DECIMAL_DIGITS = len(str(MAX_TREE_SIZE))  # 19; bounds int() before it runs
# [0-9], not \d: \d and int() also accept other scripts' digits ("１２").
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_CONTROL = re.compile(r"[\x00-\x1f]")


@dataclass(frozen=True)
class Checkpoint:
    """The body of a signed checkpoint.

    Every instance can be written as a checkpoint: the constructor checks the
    fields.

    Attributes:
        origin: Which log (list) this is, e.g. ``hashfed:owner/name``.
        size: Number of entries in the tree, 0 to 2^63-1.
        root_hash: The 32-byte RFC 6962 root hash at that size.
        timestamp: When the owner signed it, Unix seconds, 0 to 2^63-1.
        extensions: Further extension lines, in order, without newlines.

    Raises:
        MalformedCheckpointError: A field cannot be written as its line.
    """

    origin: str
    size: int
    root_hash: bytes
    timestamp: int
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.extensions, tuple):
            object.__setattr__(self, "extensions", tuple(self.extensions))
        reason = _field_problem(self)
        if reason is not None:
            raise MalformedCheckpointError(reason=reason)


def _field_problem(cp: Checkpoint) -> str | None:
    problem = _line_problem(cp.origin, "origin")
    if problem:
        return problem
    if not _is_int(cp.size) or not 0 <= cp.size <= MAX_TREE_SIZE:
        return "tree size must be an integer from 0 to 2^63-1"
    if not isinstance(cp.root_hash, bytes) or len(cp.root_hash) != ROOT_HASH_SIZE:
        return f"root hash must be {ROOT_HASH_SIZE} bytes"
    if not _is_int(cp.timestamp) or not 0 <= cp.timestamp <= _MAX_TIMESTAMP:
        return "timestamp must be an integer from 0 to 2^63-1"
    for number, line in enumerate(cp.extensions, 1):
        problem = _line_problem(line, f"extension line {number}")
        if problem:
            return problem
        if line.startswith(TIMESTAMP_PREFIX):
            return f"extension line {number} is a second timestamp line"
    return None


def _line_problem(line: object, what: str) -> str | None:
    if not isinstance(line, str):
        return f"{what} must be a string"
    if not line:
        return f"{what} is empty"
    if _CONTROL.search(line):  # includes "\n"
        return f"{what} contains a newline or another control character"
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return f"{what} is not valid UTF-8"
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def format_checkpoint(cp: Checkpoint) -> str:
    """Write the note text of a checkpoint.

    Args:
        cp: The checkpoint.

    Returns:
        Origin, size, base64 root hash, ``timestamp N`` and any other
        extension lines, each ending in a newline.
    """
    lines = [
        cp.origin,
        str(cp.size),
        base64.b64encode(cp.root_hash).decode("ascii"),
        f"{TIMESTAMP_PREFIX}{cp.timestamp}",
        *cp.extensions,
    ]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse the note text of a checkpoint.

    Rules (c2sp.org/tlog-checkpoint, plus the timestamp extension): at least
    four non-empty lines, each ending in a newline; a non-empty origin; a
    decimal tree size without leading zeros (``0`` for an empty tree) below
    2^63; a root hash in canonical padded standard base64 decoding to 32
    bytes; ``timestamp <decimal>`` as the fourth line; no second timestamp.

    Args:
        text: The note text, as returned by ``crypto.note.open_note``.

    Returns:
        The checkpoint.

    Raises:
        MalformedCheckpointError: The text breaks one of the rules.
        LimitExceededError: The text is longer than a signed note may be.
    """
    if len(text) > MAX_NOTE_BYTES:
        raise LimitExceededError(
            limit="checkpoint text bytes", value=len(text), maximum=MAX_NOTE_BYTES
        )
    if not text.endswith("\n"):
        raise MalformedCheckpointError(reason="the text does not end with a newline")
    lines = text[:-1].split("\n")  # not splitlines(): U+2028 and U+0085 are not newlines here
    if len(lines) < 3:
        raise MalformedCheckpointError(
            reason=f"{len(lines)} lines, expected origin, tree size and root hash"
        )
    if len(lines) < 4:
        raise MalformedCheckpointError(reason="the timestamp extension line is missing")
    for number, line in enumerate(lines, 1):
        if not line:
            raise MalformedCheckpointError(reason=f"line {number} is empty")
        if _CONTROL.search(line):
            raise MalformedCheckpointError(reason=f"line {number} contains a control character")
    origin, size_line, root_line, timestamp_line, *extensions = lines
    size = _parse_decimal(size_line, "tree size", MAX_TREE_SIZE)
    root_hash = _parse_root(root_line)
    if not timestamp_line.startswith(TIMESTAMP_PREFIX):
        raise MalformedCheckpointError(
            reason="line 4 must be the timestamp extension 'timestamp <unix seconds>'"
        )
    timestamp = _parse_decimal(timestamp_line[len(TIMESTAMP_PREFIX) :], "timestamp", _MAX_TIMESTAMP)
    return Checkpoint(
        origin=origin,
        size=size,
        root_hash=root_hash,
        timestamp=timestamp,
        extensions=tuple(extensions),
    )


def _parse_decimal(field: str, what: str, maximum: int) -> int:
    if not _DECIMAL.fullmatch(field):
        raise MalformedCheckpointError(
            reason=f"{what} is not a decimal number without leading zeros"
        )
    if len(field) > _MAX_DECIMAL_DIGITS or int(field) > maximum:
        raise MalformedCheckpointError(reason=f"{what} is larger than 2^63-1")
    return int(field)


def _parse_root(field: str) -> bytes:
    try:
        root = base64.b64decode(field, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedCheckpointError(reason="root hash is not padded standard base64") from exc
    if len(root) != ROOT_HASH_SIZE:
        raise MalformedCheckpointError(
            reason=f"root hash is {len(root)} bytes, expected {ROOT_HASH_SIZE}"
        )
    if base64.b64encode(root).decode("ascii") != field:
        # Another spelling of the same 32 bytes (non-zero pad bits).
        raise MalformedCheckpointError(reason="root hash is not canonical base64")
    return root


def sign_checkpoint(cp: Checkpoint, signer: NoteSigner) -> str:
    """Sign a checkpoint and return the signed note.

    Args:
        cp: The checkpoint.
        signer: The list owner's signing key.

    Returns:
        The signed note: checkpoint text, blank line, one signature line.
    """
    return sign_note(format_checkpoint(cp), [signer])


def verify_checkpoint(
    note: str | bytes, *, origin: str, verifiers: Sequence[NoteVerifier]
) -> Checkpoint:
    """Verify a signed checkpoint for one list and return its body.

    Order: the note's signatures (``crypto.note.open_note``), then the
    checkpoint syntax, then the origin, so a valid checkpoint for another list
    signed by the same key is not accepted for this one.

    Args:
        note: The signed note.
        origin: The origin this checkpoint must have, see ``list_origin``.
        verifiers: The keys trusted to sign this list.

    Returns:
        The verified checkpoint.

    Raises:
        LimitExceededError: The note is too large or has too many signatures.
        MalformedNoteError: The note syntax is invalid.
        BadSignatureError: A trusted key's signature does not verify.
        NoTrustedSignatureError: No trusted key signed the note.
        MalformedCheckpointError: The signed text is not a valid checkpoint.
        UnknownOriginError: The checkpoint is for another origin.
        ConfigError: ``verifiers`` holds two different keys with the same
            name and key ID.
    """
    opened = open_note(note, verifiers)
    cp = parse_checkpoint(opened.text)
    if cp.origin != origin:
        raise UnknownOriginError(expected=origin, got=cp.origin)
    return cp


def list_origin(owner: str, name: str) -> str:
    """Return the checkpoint origin of the list ``owner/name``.

    The result is ``hashfed:{owner}/{name}``. Neither part may be empty or
    contain ``/``, so two different lists never share an origin, nor spaces,
    ``+`` or control characters (c2sp.org/tlog-checkpoint recommends origins
    "containing neither Unicode spaces nor plus").

    Args:
        owner: The owning node's id.
        name: The list's name within that node.

    Returns:
        The origin line.

    Raises:
        InputError: ``owner`` or ``name`` cannot be part of an origin.
    """
    for what, part in (("owner", owner), ("list name", name)):
        if not part:
            raise InputError(f"the {what} is empty", where="list origin")
        if "/" in part or not is_valid_key_name(part):
            raise InputError(
                f"the {what} {part!r} contains '/', '+', a space or a control character",
                where="list origin",
            )
    return f"{ORIGIN_PREFIX}{owner}/{name}"
