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
OP_CODES: dict[str, int] = {"add": 1, "remove": 2}
_OP_NAMES: dict[int, Op] = {1: "add", 2: "remove"}
_HEAD = struct.Struct(">BQBQ")  # version, seq, op, timestamp_ms
# RFC 6962's 0x00 leaf-hash prefix, then the fixed head of the leaf.
_pack_prefixed_head = struct.Struct(">BBQBQ").pack


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


def leaf_hash_input(
    seq: int,
    op_code: int,
    timestamp_ms: int,
    type_field: bytes,
    value: bytes,
    category_field: bytes,
) -> bytes:
    """``0x00 || leaf bytes`` of one entry from its encoded fields: the one leaf encoder.

    Layout of the leaf bytes: u8 version (1) | u64 seq | u8 op (1 add, 2
    remove) | u64 timestamp in ms | u8 len + type (ASCII) | u16 len + value
    (ASCII) | u8 len + category (UTF-8). ``type_field`` and ``category_field``
    come from :func:`short_field`, ``op_code`` from :data:`OP_CODES`.

    ``sha256(leaf_hash_input(...))`` is the RFC 6962 leaf hash
    (``crypto.merkle.leaf_hash`` of the leaf bytes) without copying the leaf
    once more: verification, import, sync and feeds hash millions of leaves.

    Raises:
        struct.error: ``seq``, ``op_code`` or ``timestamp_ms`` out of range.
        OverflowError: ``value`` over 65,535 bytes.
    """
    return (
        _pack_prefixed_head(0, LEAF_VERSION, seq, op_code, timestamp_ms)
        + type_field
        + len(value).to_bytes(2, "big")
        + value
        + category_field
    )


def short_field(data: bytes) -> bytes:
    """A type or category as the leaf holds it: its length in one byte, then the bytes.

    Raises:
        ValueError: over 255 bytes.
    """
    if len(data) > 255:
        raise ValueError("leaf field does not fit the layout: over 255 bytes")
    return bytes((len(data),)) + data


def encode_leaf(
    seq: int, op: str, hash_type: str, value: str, category: str, timestamp_ms: int
) -> bytes:
    """Encode one entry as leaf bytes (the layout of :func:`leaf_hash_input`).

    Raises:
        ValueError: a field does not fit the layout (non-ASCII type or value,
            unknown op, integer out of range, string too long).
    """
    try:
        # Refused, never wrapped or truncated: a seq or time beyond 64 bits, a
        # string longer than its length prefix.
        return leaf_hash_input(
            seq,
            OP_CODES[op],
            timestamp_ms,
            short_field(hash_type.encode("ascii")),
            value.encode("ascii"),
            short_field(category.encode("utf-8")),
        )[1:]
    except KeyError:
        raise ValueError("leaf op must be add or remove") from None
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"leaf field does not fit the layout: {exc}") from None


def leaf_hashes(entries: Iterable[tuple[int, str, str, str, str, int]]) -> list[bytes]:
    """RFC 6962 leaf hashes of ``(seq, op, type, value, category, timestamp_ms)`` rows.

    Each is ``crypto.merkle.leaf_hash(encode_leaf(*row))``, computed in one
    loop with the short fields encoded once per distinct string.

    Raises:
        ValueError: a row does not fit the layout (as :func:`encode_leaf`).
    """
    encode = leaf_hash_input
    sha256 = hashlib.sha256
    ops = OP_CODES
    types: dict[str, bytes] = {}
    categories: dict[str, bytes] = {}
    out: list[bytes] = []
    append = out.append
    try:
        for seq, op, hash_type, value, category, ts in entries:
            t = types.get(hash_type)
            if t is None:
                t = types[hash_type] = short_field(hash_type.encode("ascii"))
            c = categories.get(category)
            if c is None:
                c = categories[category] = short_field(category.encode("utf-8"))
            append(sha256(encode(seq, ops[op], ts, t, value.encode("ascii"), c)).digest())
    except KeyError:
        raise ValueError("leaf op must be add or remove") from None
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"leaf field does not fit the layout: {exc}") from None
    return out


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
