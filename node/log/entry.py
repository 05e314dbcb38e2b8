"""One log entry and its leaf encoding (docs/PROTOCOL.md, "Leaf encoding").

The leaf bytes are what the Merkle tree hashes, so they must be identical on
every node and in every tool: fixed field order, big-endian integers, and
length-prefixed strings. Values are in their canonical form (lowercase hex
for hex types) before they are encoded.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Literal

LEAF_VERSION = 1
Op = Literal["add", "remove"]
_OP_CODES: dict[str, int] = {"add": 1, "remove": 2}
_OP_NAMES: dict[int, Op] = {1: "add", 2: "remove"}
_HEAD = struct.Struct(">BQBQ")  # version, seq, op, timestamp_ms
# RFC 6962's 0x00 leaf-hash prefix, then the fixed head of the leaf.
_PREFIXED_HEAD = struct.Struct(">BBQBQ")
# One compiled layout per (type, value, category) length triple.
_LAYOUTS: dict[tuple[int, int, int], struct.Struct] = {}


@dataclass(frozen=True, slots=True)
class Entry:
    """An entry of a list's append-only log. ``seq`` is its leaf index."""

    seq: int
    op: Op
    hash_type: str
    value: str
    category: str
    timestamp_ms: int

    def leaf_bytes(self) -> bytes:
        return encode_leaf(
            self.seq, self.op, self.hash_type, self.value, self.category, self.timestamp_ms
        )


def encode_leaf(
    seq: int, op: str, hash_type: str, value: str, category: str, timestamp_ms: int
) -> bytes:
    """Encode one entry as leaf bytes.

    Layout: u8 version (1) | u64 seq | u8 op (1 add, 2 remove) | u64 timestamp
    in ms | u8 len + type (ASCII) | u16 len + value (ASCII) | u8 len + category
    (UTF-8).

    Raises:
        ValueError: a field does not fit the layout (non-ASCII type or value,
            unknown op, integer out of range, string too long).
    """
    t = hash_type.encode("ascii")
    v = value.encode("ascii")
    c = category.encode("utf-8")
    shape = (len(t), len(v), len(c))
    layout = _LAYOUTS.get(shape)
    if layout is None:
        if len(_LAYOUTS) > 4096:  # a few hash types and categories: a handful of shapes
            _LAYOUTS.clear()
        layout = _LAYOUTS[shape] = struct.Struct(f">BQBQB{shape[0]}sH{shape[1]}sB{shape[2]}s")
    try:
        # struct refuses what does not fit (seq or time beyond 64 bits, a
        # string longer than its length prefix): never wrapped or truncated.
        return layout.pack(
            LEAF_VERSION, seq, _OP_CODES[op], timestamp_ms, shape[0], t, shape[1], v, shape[2], c
        )
    except KeyError:
        raise ValueError("leaf op must be add or remove") from None
    except struct.error as exc:
        raise ValueError(f"leaf field does not fit the layout: {exc}") from None


def leaf_hashes(entries: Iterable[tuple[int, str, str, str, str, int]]) -> list[bytes]:
    """RFC 6962 leaf hashes of ``(seq, op, type, value, category, timestamp_ms)`` rows.

    Each is ``crypto.merkle.leaf_hash(encode_leaf(*row))``, computed in one
    loop with the short fields encoded once per distinct string: verification,
    import and sync hash millions of leaves through here.

    Raises:
        ValueError: a row does not fit the layout (as :func:`encode_leaf`).
    """
    pack = _PREFIXED_HEAD.pack
    sha256 = hashlib.sha256
    ops = _OP_CODES
    types: dict[str, bytes] = {}
    categories: dict[str, bytes] = {}
    out: list[bytes] = []
    append = out.append
    try:
        for seq, op, hash_type, value, category, ts in entries:
            t = types.get(hash_type)
            if t is None:
                t = types[hash_type] = _short_field(hash_type.encode("ascii"))
            c = categories.get(category)
            if c is None:
                c = categories[category] = _short_field(category.encode("utf-8"))
            v = value.encode("ascii")
            head = pack(0, LEAF_VERSION, seq, ops[op], ts)
            append(sha256(head + t + len(v).to_bytes(2, "big") + v + c).digest())
    except KeyError:
        raise ValueError("leaf op must be add or remove") from None
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"leaf field does not fit the layout: {exc}") from None
    return out


def _short_field(data: bytes) -> bytes:
    if len(data) > 255:
        raise ValueError("leaf field does not fit the layout: over 255 bytes")
    return bytes((len(data),)) + data


def decode_leaf(data: bytes) -> Entry:
    """Inverse of :func:`encode_leaf`; raises ``ValueError`` on malformed bytes."""
    try:
        version, seq, op, ts = _HEAD.unpack_from(data, 0)
        pos = _HEAD.size
        n = data[pos]
        t = data[pos + 1 : pos + 1 + n].decode("ascii")
        pos += 1 + n
        n = int.from_bytes(data[pos : pos + 2], "big")
        v = data[pos + 2 : pos + 2 + n].decode("ascii")
        pos += 2 + n
        n = data[pos]
        c = data[pos + 1 : pos + 1 + n].decode("utf-8")
        pos += 1 + n
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed leaf: {exc}") from None
    if version != LEAF_VERSION or op not in _OP_NAMES or pos != len(data):
        raise ValueError("malformed leaf: bad version, op or length")
    return Entry(seq, _OP_NAMES[op], t, v, c, ts)


def json_string(text: str) -> str:
    """``text`` as a JSON string with every non-ASCII character escaped (``\\u00c4``)."""
    return encode_basestring_ascii(text)


def entry_line(
    list_field: str, seq: int, op: str, hash_type: str, value: str, category: str, ts: int
) -> str:
    """One entry as its canonical NDJSON line (docs/PROTOCOL.md, "Entry line").

    Keys in this order, no spaces, non-ASCII escaped; ``list_field`` is the
    list's name already encoded with :func:`json_string` (once per list, as a
    feed streams millions of lines). Type and op are registry ASCII names.
    """
    return (
        f'{{"list":{list_field},"seq":{seq},"op":"{op}","type":"{hash_type}",'
        f'"value":{encode_basestring_ascii(value)},'
        f'"category":{encode_basestring_ascii(category)},"timestamp_ms":{ts}}}\n'
    )
