"""The federation wire format (docs/PROTOCOL.md, "Federation"): models and bounds.

Everything a peer sends is parsed here before anything else reads it. JSON
documents (node info, catalog, proofs, notify) are pydantic models with a
bound on every field; list entries arrive as NDJSON, one object per line,
and are parsed by :class:`EntryParser` on the hot path without pydantic
(a million entries through a model cost seconds, through this ~2 µs each).

An entry line is exactly::

    {"seq":0,"op":"add","type":"sha256","value":"<64 hex>","category":"A1",
     "timestamp_ms":1700000000000}

(on one line),

with the fields of the leaf encoding (node/log/entry.py). Values must already be
in canonical form: the receiver refuses a line rather than repairing it, since
the owner's signature covers the canonical bytes.
"""

from __future__ import annotations

import json
import re
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field

from crypto.errors import InputError, PeerProtocolError
from crypto.merkle import HASH_SIZE, MAX_CONSISTENCY_PROOF_HASHES, MAX_INCLUSION_PROOF_HASHES
from crypto.note import MAX_NOTE_BYTES
from node.log.hashes import REGISTRY, parse_category

if TYPE_CHECKING:
    from node.store import EntryTuple

__all__ = [
    "MAX_CATALOG_LISTS",
    "MAX_ENTRY_LINE_BYTES",
    "MAX_SIGNING_KEYS",
    "NDJSON",
    "PROTOCOL",
    "Catalog",
    "CatalogList",
    "ConsistencyProof",
    "EntryParser",
    "InclusionProof",
    "NodeInfo",
    "NotifyRequest",
    "NotifyResponse",
    "decode_proof",
    "encode_entry",
    "encode_proof",
]

PROTOCOL = "hashfed-federation/1"
NDJSON = "application/x-ndjson"

# One catalog answer lists at most this many lists: a national collection
# is tens of lists, a relay of a whole federation a few hundred.
MAX_CATALOG_LISTS = 10_000
# A node has one signing key, two while it rotates; 16 leaves room.
MAX_SIGNING_KEYS = 16
# An entry line: value ≤ 2048 printable ASCII characters (node/log/hashes.py),
# which JSON escaping can at most double (" and \), a category of ≤ 255 UTF-8
# bytes escaped as \uXXXX (6 bytes per character, 64 characters), and ~100
# bytes of keys and numbers.
MAX_ENTRY_LINE_BYTES = 2 * 2048 + 6 * 64 + 200

_OWNER = r"^[a-z0-9][a-z0-9-]{0,62}$"
_NAME = r"^[a-z0-9][a-z0-9._-]{0,99}$"
_LABEL = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_HEX_HASH = re.compile(rf"^[0-9a-f]{{{2 * HASH_SIZE}}}$")
_ENTRY_KEYS = frozenset(("seq", "op", "type", "value", "category", "timestamp_ms"))
_MAX_INT64 = 2**63 - 1

Owner = Annotated[str, Field(pattern=_OWNER)]
ListName = Annotated[str, Field(pattern=_NAME)]
Size = Annotated[int, Field(ge=0, le=_MAX_INT64)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class NodeInfo(_Wire):
    """``GET /federation/v1/node``: who answers."""

    protocol: str = Field(PROTOCOL, max_length=64)
    node_id: Owner
    role: str = Field(max_length=16)
    signing_keys: list[Annotated[str, Field(max_length=200)]] = Field(
        max_length=MAX_SIGNING_KEYS, description="Note verifier keys of this node"
    )


class CatalogList(_Wire):
    """One list a caller may receive, with the newest checkpoint its owner signed."""

    owner: Owner
    name: ListName
    label: str = Field(pattern=_LABEL)
    description: str = Field("", max_length=1000)
    # Absent from older peers: a plain list.
    kind: str = Field("block", pattern=r"^(block|allow)$")
    allow_distance: int = Field(0, ge=0, le=31, description="PDQ distance of an allow-list")
    size: Size = Field(description="Tree size of the checkpoint; entries [0, size) are served")
    checkpoint: str = Field(max_length=MAX_NOTE_BYTES, description="The owner's signed note")


class Catalog(_Wire):
    """``GET /federation/v1/lists``: what this caller may receive, owned and relayed."""

    protocol: str = Field(PROTOCOL, max_length=64)
    node_id: Owner
    lists: list[CatalogList] = Field(max_length=MAX_CATALOG_LISTS)


class ConsistencyProof(_Wire):
    """``GET .../proof/consistency?from=&to=``: RFC 9162 §2.1.4, hashes in hex."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    size1: Size = Field(alias="from")
    size2: Size = Field(alias="to")
    proof: list[Annotated[str, Field(max_length=2 * HASH_SIZE)]] = Field(
        max_length=MAX_CONSISTENCY_PROOF_HASHES
    )


class InclusionProof(_Wire):
    """``GET .../proof/inclusion?index=&size=``: RFC 9162 §2.1.3, hashes in hex."""

    index: Size
    size: Size
    proof: list[Annotated[str, Field(max_length=2 * HASH_SIZE)]] = Field(
        max_length=MAX_INCLUSION_PROOF_HASHES
    )


class NotifyRequest(_Wire):
    """``POST /federation/v1/notify``: the owner (or a relay) has a new checkpoint."""

    owner: Owner
    name: ListName
    size: Size


class NotifyResponse(_Wire):
    scheduled: bool = Field(description="Whether a pull of the caller was scheduled")


def encode_proof(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def decode_proof(hashes: list[str], *, peer: str) -> list[bytes]:
    """Hex proof hashes to bytes.

    Raises:
        PeerProtocolError: a hash is not 64 lowercase hex digits.
    """
    out = []
    for i, h in enumerate(hashes):
        if not _HEX_HASH.fullmatch(h):
            raise PeerProtocolError(peer=peer, reason=f"proof hash {i} is not 64 hex digits")
        out.append(bytes.fromhex(h))
    return out


def encode_entry(entry: EntryTuple) -> bytes:
    """One NDJSON line for an entry, newline included (the server's hot path)."""
    seq, op, htype, value, category, ts = entry
    # Keys in a fixed order; strings escaped to ASCII by the C encoder.
    return (
        f'{{"seq":{seq},"op":"{op}","type":"{htype}","value":{encode_basestring_ascii(value)},'
        f'"category":{encode_basestring_ascii(category)},"timestamp_ms":{ts}}}\n'
    ).encode("ascii")


class EntryParser:
    """Parses a page of entry lines, checking each against the next expected seq.

    Strings that repeat on every line (op, type, category) are shared, which
    keeps a million pending entries at about half the memory.
    """

    def __init__(self, *, peer: str, next_seq: int) -> None:
        self.peer = peer
        self.next_seq = next_seq
        self._categories: dict[str, str] = {}

    def _bad(self, reason: str) -> PeerProtocolError:
        # Never quote the line: it holds a hash value.
        return PeerProtocolError(peer=self.peer, reason=f"entry {self.next_seq}: {reason}")

    def parse(self, line: bytes) -> EntryTuple:
        """Parse one line (without its newline).

        Raises:
            PeerProtocolError: the line is not a canonical entry with the
                expected seq.
        """
        if len(line) > MAX_ENTRY_LINE_BYTES:
            raise self._bad(f"line is over {MAX_ENTRY_LINE_BYTES} bytes")
        try:
            obj = json.loads(line)
        except ValueError:
            raise self._bad("not valid JSON") from None
        if type(obj) is not dict or obj.keys() != _ENTRY_KEYS:
            raise self._bad(f"expected an object with exactly {sorted(_ENTRY_KEYS)}")
        seq = obj["seq"]
        if type(seq) is not int or seq != self.next_seq:
            raise self._bad("seq is not the next one (entries must come in seq order, once)")
        op = obj["op"]
        if op == "add":
            op = "add"
        elif op == "remove":
            op = "remove"
        else:
            raise self._bad("op must be add or remove")
        htype = REGISTRY.get(obj["type"]) if type(obj["type"]) is str else None
        if htype is None:
            raise self._bad("unknown hash type")
        value = obj["value"]
        category = obj["category"]
        ts = obj["timestamp_ms"]
        if type(value) is not str or type(category) is not str:
            raise self._bad("value and category must be strings")
        if type(ts) is not int or not 0 <= ts <= _MAX_INT64:
            raise self._bad("timestamp_ms must be an integer from 0 to 2^63-1")
        try:
            canonical = htype.parse(value)
            shared = self._categories.get(category)
            if shared is None:
                if parse_category(category) != category:
                    raise InputError("category is not canonical")
                if len(self._categories) < 100_000:
                    self._categories[category] = category
                shared = category
        except InputError:
            raise self._bad(f"{htype.name} value or category is malformed") from None
        if canonical != value:
            raise self._bad(f"{htype.name} value is not in canonical form")
        self.next_seq += 1
        return (seq, op, htype.name, value, shared, ts)
