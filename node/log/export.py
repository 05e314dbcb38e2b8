"""A list's whole log as one file, and its offline verification (docs/PROTOCOL.md, "Log export").

``hashfed list export --log`` writes it; ``hashfed verify-export`` checks it
with nothing but the owner's verifier key. The format is one list section of
a feed's NDJSON without the cursor line: a header line carrying the owner's
signed note, then every entry ``[0, size)`` as its canonical entry line. The
checks reuse the leaf encoder (node/log/entry.py), the Merkle code
(crypto/merkle.py) and the checkpoint verifier (crypto/checkpoint.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from crypto.checkpoint import list_origin, verify_checkpoint
from crypto.errors import InputError, MalformedExportError, RootMismatchError
from crypto.keys import NoteVerifier
from crypto.merkle import CompactRange
from node.log.entry import entry_line, json_string, leaf_hashes
from node.log.hashes import parse_category, parse_hash
from node.store import CheckpointRow, ListRow, Store

# The header holds a note of at most 1 MiB (crypto/note.py MAX_NOTE_BYTES),
# each byte at most 6 once JSON-escaped; an entry line holds a value of at
# most 2048 printable ASCII characters (2 bytes each escaped), a category of
# at most 64 characters (12 bytes each escaped, a surrogate pair), ~200 more.
MAX_HEADER_BYTES = 6 * (1 << 20) + 4096
MAX_ENTRY_LINE_BYTES = 2 * 2048 + 12 * 64 + 200
_HEADER_KEYS = ("list", "start", "size", "checkpoint")
# Leaf hashes are computed this many entries at a time.
_BATCH = 8192


@dataclass(frozen=True)
class ExportSummary:
    """What a verified export holds."""

    list_name: str
    size: int
    root_hash: bytes
    timestamp: int
    adds: int
    removes: int


def header_line(list_name: str, size: int, note: str) -> str:
    """The export's first line: list, start 0, size and the owner's signed note."""
    header = {"list": list_name, "start": 0, "size": size, "checkpoint": note}
    return json.dumps(header, separators=(",", ":")) + "\n"


def export_lines(store: Store, *, row: ListRow, checkpoint: CheckpointRow) -> Iterator[str]:
    """The export of ``row`` at ``checkpoint``: what is signed, nothing after it."""
    yield header_line(row.full_name, checkpoint.size, checkpoint.note)
    name = json_string(row.full_name)
    for entry in store.iter_entries(list_id=row.id, start=0, end=checkpoint.size):
        yield entry_line(name, *entry)


def verify_export(lines: Iterable[bytes], verifiers: Sequence[NoteVerifier]) -> ExportSummary:
    """Check an export against the owner's keys; nothing is trusted from the file itself.

    Checks, in order: the header's shape; the note's signature by one of
    ``verifiers`` and its origin ``hashfed:<list>``; the note's size equals the
    header's. Then every entry line is canonical (re-encoding gives the same
    bytes), names the list, has the next seq from 0, a known type with its
    canonical value and a valid category; and the leaves of exactly ``size``
    entries hash to the note's root.

    Raises:
        MalformedExportError: a line breaks the format.
        RootMismatchError: the entries do not hash to the signed root.
        LimitExceededError, MalformedNoteError, MalformedCheckpointError,
        NoTrustedSignatureError, BadSignatureError, UnknownOriginError: as
            crypto.checkpoint.verify_checkpoint.
    """
    it = iter(lines)
    first = next(it, None)
    if first is None:
        raise MalformedExportError(line=1, reason="the file is empty")
    if len(first) > MAX_HEADER_BYTES:
        raise MalformedExportError(line=1, reason=f"header over {MAX_HEADER_BYTES} bytes")
    header = _json_object(first, 1)
    if tuple(header) != _HEADER_KEYS or header["start"] != 0:
        raise MalformedExportError(line=1, reason=f"expected a header {_HEADER_KEYS}, start 0")
    name, size, note = header["list"], header["size"], header["checkpoint"]
    if not (isinstance(name, str) and isinstance(note, str) and _is_count(size)):
        raise MalformedExportError(line=1, reason="list, size or checkpoint has the wrong type")
    owner, _, list_name = name.partition("/")
    try:
        origin = list_origin(owner, list_name)
    except InputError:
        raise MalformedExportError(line=1, reason="not a list name owner/name") from None
    cp = verify_checkpoint(note, origin=origin, verifiers=verifiers)
    if cp.size != size:
        raise MalformedExportError(line=1, reason=f"header size {size}, note size {cp.size}")

    list_field = json_string(name)
    tree = CompactRange()
    batch: list[tuple[int, str, str, str, str, int]] = []
    adds = removes = 0
    for seq, raw in enumerate(it):
        lineno = seq + 2
        if seq >= size:
            raise MalformedExportError(line=lineno, reason=f"more than {size} entries")
        row = _entry(raw, lineno, list_field, seq)
        adds += row[1] == "add"
        removes += row[1] == "remove"
        batch.append(row)
        if len(batch) >= _BATCH:
            tree.extend(leaf_hashes(batch))
            batch = []
    tree.extend(leaf_hashes(batch))
    if tree.size != size:
        raise MalformedExportError(
            line=tree.size + 2, reason=f"{tree.size} entries, the note signs {size}"
        )
    root = tree.root()
    if root != cp.root_hash:
        raise RootMismatchError(
            origin=origin, size=size, expected=cp.root_hash.hex(), got=root.hex()
        )
    return ExportSummary(name, size, cp.root_hash, cp.timestamp, adds, removes)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63


def _json_object(raw: bytes, lineno: int) -> dict[str, object]:
    try:
        doc = json.loads(raw)
    except ValueError:
        raise MalformedExportError(line=lineno, reason="not JSON") from None
    if not isinstance(doc, dict):
        raise MalformedExportError(line=lineno, reason="not a JSON object")
    return doc


def _entry(
    raw: bytes, lineno: int, list_field: str, seq: int
) -> tuple[int, str, str, str, str, int]:
    """One entry line, refused unless it is the canonical line of a valid entry."""
    if len(raw) > MAX_ENTRY_LINE_BYTES:
        raise MalformedExportError(line=lineno, reason=f"over {MAX_ENTRY_LINE_BYTES} bytes")
    doc = _json_object(raw, lineno)
    op, htype, value = doc.get("op"), doc.get("type"), doc.get("value")
    category, ts = doc.get("category"), doc.get("timestamp_ms")
    if not (
        isinstance(op, str)
        and op in ("add", "remove")
        and isinstance(htype, str)
        and isinstance(value, str)
        and isinstance(category, str)
        and isinstance(ts, int)
        and _is_count(ts)
        and doc.get("seq") == seq
    ):
        raise MalformedExportError(line=lineno, reason=f"expected entry seq {seq}")
    try:
        canonical = parse_hash(htype, value, where=f"line {lineno}")
        category_ok = parse_category(category) == category
    except InputError as exc:
        raise MalformedExportError(line=lineno, reason=exc.message) from None
    if canonical != (htype, value) or not category_ok:
        raise MalformedExportError(line=lineno, reason="type, value or category not canonical")
    line = entry_line(list_field, seq, op, htype, value, category, ts).encode()
    if line != raw.rstrip(b"\n") + b"\n":
        raise MalformedExportError(line=lineno, reason="not the canonical entry line")
    return seq, op, htype, value, category, ts
