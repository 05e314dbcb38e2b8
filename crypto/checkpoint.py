"""Signed checkpoints of a hash list (c2sp.org/tlog-checkpoint).

A checkpoint is a signed note (see ``crypto.note``) whose text is::

    <origin>                      hashfed:<owner>/<name>
    <tree size>                   decimal, no leading zeros, < 2^63
    <root hash>                   base64 (standard, padded) of 32 bytes
    <extension line>              optional, opaque, preserved (hashfed writes none)

signed by the owner's log key and cosigned, with a timestamp, by the owner's
cosigner key (``crypto.cosignature``, c2sp.org/tlog-cosignature): the
cosignature's time is what receivers check freshness against. Witnesses add
their cosignature lines to the same note.

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

from crypto.cosignature import (
    Cosignature,
    CosignatureSigner,
    CosignatureVerifier,
    check_distinct,
    signature_timestamp,
)
from crypto.errors import (
    InputError,
    LimitExceededError,
    MalformedCheckpointError,
    MissingCosignatureError,
    NoTrustedSignatureError,
    UnknownOriginError,
)
from crypto.keys import NoteSigner, NoteVerifier, generate_signing_key, is_valid_key_name
from crypto.note import MAX_NOTE_BYTES, VerifiedNote, open_note, sign_note

__all__ = [
    "MAX_TREE_SIZE",
    "ORIGIN_PREFIX",
    "ROOT_HASH_SIZE",
    "Checkpoint",
    "CheckpointSigner",
    "SignedCheckpoint",
    "format_checkpoint",
    "list_origin",
    "open_checkpoint",
    "parse_checkpoint",
    "sign_checkpoint",
    "verify_checkpoint",
]

ORIGIN_PREFIX = "hashfed:"
ROOT_HASH_SIZE = 32  # SHA-256, RFC 6962 §2.1
# Tree sizes are uint64 in Go and int64 in SQL; both agree below 2^63.
MAX_TREE_SIZE = 2**63 - 1
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
        extensions: Extension lines, in order, without newlines (opaque;
            hashfed writes none).

    Raises:
        MalformedCheckpointError: A field cannot be written as its line.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.extensions, tuple):
            object.__setattr__(self, "extensions", tuple(self.extensions))
        reason = _field_problem(self)
        if reason is not None:
            raise MalformedCheckpointError(reason=reason)


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint its owner signed and cosigned, as ``verify_checkpoint`` returns it.

    Attributes:
        checkpoint: The body.
        timestamp: The newest time, Unix seconds, at which one of the owner's
            cosigner keys cosigned it: how fresh it is.
        cosignatures: Every owner cosignature that verified, in note order.
        witnessed_by: Every cosignature by a trusted witness that verified
            (at most one per witness key); they do not date the checkpoint.
    """

    checkpoint: Checkpoint
    timestamp: int
    cosignatures: tuple[Cosignature, ...]
    witnessed_by: tuple[Cosignature, ...] = ()

    @property
    def origin(self) -> str:
        return self.checkpoint.origin

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root_hash(self) -> bytes:
        return self.checkpoint.root_hash

    @property
    def extensions(self) -> tuple[str, ...]:
        return self.checkpoint.extensions


@dataclass(frozen=True)
class CheckpointSigner:
    """A list owner's two keys: the log key signs, the cosigner key dates.

    Raises:
        ConfigError: both are the same key.
    """

    log: NoteSigner
    cosigner: CosignatureSigner

    def __post_init__(self) -> None:
        check_distinct([self.log.verifier()], [self.cosigner.verifier()])

    @classmethod
    def generate(cls, name: str) -> CheckpointSigner:
        """Two fresh keys named ``name`` (tests, demos; a node keeps its keys in files)."""
        return cls(
            NoteSigner(name, generate_signing_key()),
            CosignatureSigner(name, generate_signing_key()),
        )

    @property
    def name(self) -> str:
        return self.log.name

    def sign(self, cp: Checkpoint, timestamp: int) -> str:
        """The signed note of ``cp``, cosigned at ``timestamp``; see ``sign_checkpoint``."""
        return sign_checkpoint(cp, self.log, cosigner=self.cosigner, timestamp=timestamp)

    def verifiers(self) -> list[NoteVerifier]:
        """Both public keys, as a receiver configures them."""
        return [self.log.verifier(), self.cosigner.verifier()]


def _field_problem(cp: Checkpoint) -> str | None:
    problem = _line_problem(cp.origin, "origin")
    if problem:
        return problem
    if not _is_int(cp.size) or not 0 <= cp.size <= MAX_TREE_SIZE:
        return "tree size must be an integer from 0 to 2^63-1"
    if not isinstance(cp.root_hash, bytes) or len(cp.root_hash) != ROOT_HASH_SIZE:
        return f"root hash must be {ROOT_HASH_SIZE} bytes"
    for number, line in enumerate(cp.extensions, 1):
        problem = _line_problem(line, f"extension line {number}")
        if problem:
            return problem
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
        Origin, size, base64 root hash and any extension lines, each ending
        in a newline.
    """
    lines = [
        cp.origin,
        str(cp.size),
        base64.b64encode(cp.root_hash).decode("ascii"),
        *cp.extensions,
    ]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse the note text of a checkpoint.

    Rules (c2sp.org/tlog-checkpoint): at least three non-empty lines, each
    ending in a newline; a non-empty origin; a decimal tree size without
    leading zeros (``0`` for an empty tree) below 2^63; a root hash in
    canonical padded standard base64 decoding to 32 bytes; then any number
    of non-empty extension lines, kept opaque.

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
    for number, line in enumerate(lines, 1):
        if not line:
            raise MalformedCheckpointError(reason=f"line {number} is empty")
        if _CONTROL.search(line):
            raise MalformedCheckpointError(reason=f"line {number} contains a control character")
    origin, size_line, root_line, *extensions = lines
    size = _parse_decimal(size_line, "tree size", MAX_TREE_SIZE)
    root_hash = _parse_root(root_line)
    return Checkpoint(origin=origin, size=size, root_hash=root_hash, extensions=tuple(extensions))


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


def sign_checkpoint(
    cp: Checkpoint, signer: NoteSigner, *, cosigner: CosignatureSigner, timestamp: int
) -> str:
    """Sign a checkpoint with the log key and cosign it, dated, with the owner's cosigner key.

    Args:
        cp: The checkpoint.
        signer: The list owner's log (checkpoint-signing) key.
        cosigner: The list owner's cosigner key, distinct from ``signer``.
        timestamp: When, Unix seconds: the freshness receivers check.

    Returns:
        The signed note: checkpoint text, blank line, the log's signature
        line, then the cosignature line.

    Raises:
        ConfigError: ``signer`` and ``cosigner`` are the same key.
        ValueError: ``timestamp`` is out of range.
    """
    check_distinct([signer.verifier()], [cosigner.verifier()])
    text = format_checkpoint(cp)
    return sign_note(text, [signer]) + cosigner.line(text, timestamp)


def open_checkpoint(
    note: str | bytes, *, origin: str, verifiers: Sequence[NoteVerifier]
) -> tuple[Checkpoint, VerifiedNote]:
    """Verify a log's signature on a checkpoint, with no freshness (a witness's view).

    Cosigner keys among ``verifiers`` are checked too (a bad cosignature by
    one rejects the note) but do not count as the log's signature.

    Returns:
        The checkpoint, and the opened note (who signed, their signatures).

    Raises:
        as ``verify_checkpoint``, without ``MissingCosignatureError``.
    """
    opened = open_note(note, verifiers)
    logs = {(v.name, bytes(v.key_id)) for v in verifiers if not isinstance(v, CosignatureVerifier)}
    if not any((name, bytes(kid)) in logs for name, kid in opened.verified_by):
        text = opened.text
        raise NoTrustedSignatureError(
            origin=text.split("\n", 1)[0][:100],
            trusted=", ".join(f"{n}+{k.hex()}" for n, k in sorted(logs)) or "none configured",
        )
    cp = parse_checkpoint(opened.text)
    if cp.origin != origin:
        raise UnknownOriginError(expected=origin, got=cp.origin)
    return cp, opened


def verify_checkpoint(
    note: str | bytes,
    *,
    origin: str,
    verifiers: Sequence[NoteVerifier],
    witnesses: Sequence[CosignatureVerifier] = (),
) -> SignedCheckpoint:
    """Verify a signed, cosigned checkpoint for one list and return it with its date.

    Order: the note's signatures (``crypto.note.open_note``), one of them by
    a log key; the checkpoint syntax; the origin, so a valid checkpoint for
    another list signed by the same key is not accepted for this one; then
    at least one cosignature by a trusted cosigner key
    (``crypto.cosignature.CosignatureVerifier``), whose newest timestamp
    says how fresh the checkpoint is.

    Args:
        note: The signed note.
        origin: The origin this checkpoint must have, see ``list_origin``.
        verifiers: The keys trusted for this list: the owner's log keys and
            cosigner keys (see ``NoteVerifier.from_verifier_key``).
        witnesses: Cosigner keys of witnesses whose cosignatures to report
            (a bad one rejects the note, like any trusted key's).

    Returns:
        The verified checkpoint with its timestamp.

    Raises:
        LimitExceededError: The note is too large or has too many signatures.
        MalformedNoteError: The note syntax is invalid.
        BadSignatureError: A trusted key's signature (or cosignature) does not verify.
        NoTrustedSignatureError: No trusted log key signed the note.
        MalformedCheckpointError: The signed text is not a valid checkpoint.
        UnknownOriginError: The checkpoint is for another origin.
        MissingCosignatureError: No trusted cosigner key cosigned it (a
            note from before cosignatures, or the owner's cosigner key is
            not configured).
        ConfigError: ``verifiers`` holds two different keys with the same
            name and key ID, or one key as both log key and cosigner key.
    """
    cosigners = [v for v in verifiers if isinstance(v, CosignatureVerifier)]
    check_distinct([v for v in verifiers if not isinstance(v, CosignatureVerifier)], cosigners)
    cp, opened = open_checkpoint(note, origin=origin, verifiers=[*verifiers, *witnesses])
    ids = {(v.name, bytes(v.key_id)) for v in cosigners}
    witness_ids = {(v.name, bytes(v.key_id)) for v in witnesses} - ids
    cosigs: list[Cosignature] = []
    seen: dict[tuple[str, bytes], Cosignature] = {}
    for name, kid, sig in opened.signatures:
        ident = (name, bytes(kid))
        if ident in ids or ident in witness_ids:
            ts = signature_timestamp(sig)
            assert ts is not None  # verified above
            if ident in ids:
                cosigs.append(Cosignature(name, kid, ts))
            elif ident not in seen:
                seen[ident] = Cosignature(name, kid, ts)
    if not cosigs:
        raise MissingCosignatureError(
            origin=origin,
            trusted=", ".join(f"{n}+{k.hex()}" for n, k in sorted(ids)) or "none configured",
        )
    return SignedCheckpoint(
        cp, max(c.timestamp for c in cosigs), tuple(cosigs), tuple(seen.values())
    )


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
