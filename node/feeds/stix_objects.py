"""The STIX 2.1 objects a TAXII collection serves, rendered straight to JSON text.

**Indicators.** One per log entry version (node/feeds/stix.py says which).
Each names its list's owner as ``created_by_ref`` (an ``identity`` object
served in the same collection), carries the TLP 2.0 marking of its sharing
label in ``object_marking_refs``, ``confidence`` 100 (a cryptographic hash
of material the owner classified), and hashfed's provenance properties
(``x_hashfed_list``, ``_seq``, ``_category``, ``_checkpoint``) under the
``extension-definition`` object served with them.

**Ids.** Every id is a UUIDv5 (RFC 9562 §5.5) under hashfed's namespace:
an indicator's of ``list | type | value`` (and ``| n`` for the n-th re-add
after a remove), an identity's of ``identity:<owner>``. Every node serving
a list therefore gives the same id to the same hash, and a SIEM that pulls
the list from two nodes deduplicates it. STIX 2.1 §2.9 recommends UUIDv4
for SDOs, so ``stix2-validator --strict`` reports warning 103 on each id:
that warning is the documented, deliberate exception (docs/FEEDS.md).

**TLP.** The label → TLP 2.0 table is :data:`LABEL_TLP`; a label it does not
name gets TLP:AMBER+STRICT (the recipient's organisation only), never a
wider one. Marking ids are the OASIS TLP 2.0 marking definitions
(cti-stix-common-objects, ``extension-definition--60a3c5c5-…``).

**Speed.** A page of 1,000 indicators is a hot path (1M over TAXII is a
thousand pages): objects are built as JSON text from per-list parts, ids
hash with ``hashlib`` directly, and timestamps are formatted once per
millisecond, not once per field.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = [
    "EXTENSION_ID",
    "LABEL_TLP",
    "NAMESPACE",
    "TLP_MARKINGS",
    "IndicatorParts",
    "collection_id",
    "extension_definition",
    "format_date_added",
    "format_stix_time",
    "identity_id",
    "identity_object",
    "indicator_id",
    "indicator_json",
    "stix_pattern",
    "tlp_for_label",
    "tlp_marking",
]

NAMESPACE = uuid.UUID("5d1b7c39-5d0a-4c55-9a44-2f3f0b8c6f2e")  # hashfed's, fixed forever
_NS = NAMESPACE.bytes
EXTENSION_ID = "extension-definition--" + str(uuid.uuid5(NAMESPACE, "hashfed:x_hashfed:1"))
_HASH_NAMES = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256"}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# When the extension-definition and the identities were first defined; fixed
# so that every node serves byte-identical objects.
_DEFINED = "2026-01-01T00:00:00.000Z"

# TLP 2.0 marking definitions (OASIS cti-stix-common-objects, TLP 2.0 extension).
TLP_EXTENSION_ID = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP_MARKINGS = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
_TLP_IDENTITY = "identity--b3bca3c2-1f3d-4b54-b44f-dac42c3a8f01"  # the TLP objects' creator
# Sharing label -> TLP 2.0 level (docs/FEEDS.md). Baseline material may go to
# a vetted partner's clients (their hosting customers' filters): AMBER.
# Restricted lists stay inside the receiving organisation: AMBER+STRICT.
LABEL_TLP = {
    "baseline": "amber",
    "restricted": "amber+strict",
    "partners": "amber",
    "internal": "red",
}
DEFAULT_TLP = "amber+strict"


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(NAMESPACE, name))``, without building a UUID object."""
    h = bytearray(hashlib.sha1(_NS + name.encode()).digest()[:16])  # noqa: S324 - RFC 9562 v5
    h[6] = (h[6] & 0x0F) | 0x50
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def collection_id(node_id: str, label: str) -> str:
    return _uuid5(f"collection:{node_id}/{label}")


def indicator_id(list_name: str, hash_type: str, value: str, generation: int = 0) -> str:
    name = f"{list_name}|{hash_type}|{value}" + (f"|{generation}" if generation else "")
    return "indicator--" + _uuid5(name)


def identity_id(owner: str) -> str:
    return "identity--" + _uuid5(f"identity:{owner}")


def stix_pattern(hash_type: str, value: str) -> str:
    """``[file:hashes.'SHA-256' = '…']``; quotes and backslashes escaped as STIX patterns need."""
    name = _HASH_NAMES.get(hash_type, "x_" + hash_type)
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"[file:hashes.'{name}' = '{escaped}']"


def _iso(us: int, digits: int) -> str:
    t = _EPOCH + dt.timedelta(microseconds=us)
    frac = f"{t.microsecond:06d}"[:digits]
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + frac + "Z"


@lru_cache(maxsize=8192)
def format_stix_time(us: int) -> str:
    """A STIX timestamp: milliseconds, or microseconds when it has them."""
    return _iso(us, 3 if us % 1000 == 0 else 6)


def format_date_added(us: int) -> str:
    """A TAXII timestamp: always microseconds (TAXII 2.1 §2)."""
    return _iso(us, 6)


def tlp_for_label(label: str) -> str:
    return LABEL_TLP.get(label, DEFAULT_TLP)


def tlp_marking(level: str) -> dict[str, Any]:
    """The OASIS TLP 2.0 marking-definition object of ``level``."""
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": TLP_MARKINGS[level],
        "created": "2022-10-01T00:00:00.000Z",
        "created_by_ref": _TLP_IDENTITY,
        "name": f"TLP:{level.upper()}",
        "extensions": {
            TLP_EXTENSION_ID: {"extension_type": "property-extension", "tlp_2_0": level}
        },
    }


def identity_object(owner: str) -> dict[str, Any]:
    """The identity of a list owner (a node: an agency or a vetted partner)."""
    return {
        "type": "identity",
        "spec_version": "2.1",
        "id": identity_id(owner),
        "created": _DEFINED,
        "modified": _DEFINED,
        "name": owner,
        "description": f"hashfed node {owner}: owner and signer of the hash lists named {owner}/…",
        "identity_class": "organization",
    }


def extension_definition(node_id: str) -> dict[str, Any]:
    """The extension-definition of the ``x_hashfed_*`` properties (STIX 2.1 §7.3)."""
    return {
        "type": "extension-definition",
        "spec_version": "2.1",
        "id": EXTENSION_ID,
        "created_by_ref": identity_id(node_id),
        "created": _DEFINED,
        "modified": _DEFINED,
        "name": "hashfed provenance",
        "description": (
            "Where an indicator comes from in a hashfed signed list: x_hashfed_list (owner/name), "
            "x_hashfed_seq (the entry's index in the list's log), x_hashfed_category (the "
            "owner's category), x_hashfed_checkpoint (size and root hash of the signed "
            "checkpoint covering it; verify with hashfed pull)."
        ),
        "schema": "https://github.com/hashfed/hashfed/blob/main/docs/FEEDS.md#with-taxii-21",
        "version": "1.0.0",
        "extension_types": ["toplevel-property-extension"],
        "extension_properties": [
            "x_hashfed_list",
            "x_hashfed_seq",
            "x_hashfed_category",
            "x_hashfed_checkpoint",
        ],
    }


@dataclass(frozen=True)
class IndicatorParts:
    """What all indicators of one list and segment share, rendered once."""

    list_name: str
    owner: str
    label: str
    checkpoint_size: int
    checkpoint_root: bytes

    @property
    def head(self) -> str:
        return _head(self.owner)

    @property
    def tail(self) -> str:
        return _tail(self.list_name, self.label, self.checkpoint_size, self.checkpoint_root)


@lru_cache(maxsize=1024)
def _head(owner: str) -> str:
    return '{"type":"indicator","spec_version":"2.1","created_by_ref":"' + identity_id(owner) + '"'


@lru_cache(maxsize=1024)
def _tail(list_name: str, label: str, size: int, root: bytes) -> str:
    return (
        ',"indicator_types":["malicious-activity"],"pattern_type":"stix",'
        '"pattern_version":"2.1","confidence":100,'
        f'"object_marking_refs":["{TLP_MARKINGS[tlp_for_label(label)]}"],'
        f'"extensions":{{"{EXTENSION_ID}":{{"extension_type":"toplevel-property-extension"}}}},'
        f'"x_hashfed_list":{json.dumps(list_name)},'
        f'"x_hashfed_checkpoint":{{"size":{size},"root":"{root.hex()}"}}'
    )


@lru_cache(maxsize=4096)
def _description(list_name: str, category: str) -> str:
    return json.dumps(
        f"File signature of known child sexual abuse material, shared by {list_name}"
        + (f" (category {category})" if category else "")
        + ".",
        ensure_ascii=False,
    )


@lru_cache(maxsize=256)
def _name(hash_type: str, list_name: str) -> str:
    return json.dumps(f"{hash_type} hash in hashfed list {list_name}", ensure_ascii=False)


@lru_cache(maxsize=1024)
def _category(category: str) -> str:
    return json.dumps(category, ensure_ascii=False)


def indicator_json(
    parts: IndicatorParts,
    *,
    object_id: str,
    seq: int,
    revoked: bool,
    hash_type: str,
    value: str,
    category: str,
    created_us: int,
    modified_us: int,
) -> str:
    """One indicator version as compact JSON text (see the module docstring)."""
    created = format_stix_time(created_us)
    pattern = stix_pattern(hash_type, value)
    # Hex (every hash but a malformed one) needs no JSON escaping.
    pattern_json = f'"{pattern}"' if value.isalnum() and value.isascii() else json.dumps(pattern)
    return (
        f'{parts.head},"id":"{object_id}","created":"{created}",'
        f'"modified":"{format_stix_time(modified_us)}",'
        f'"name":{_name(hash_type, parts.list_name)},'
        f'"description":{_description(parts.list_name, category)},'
        f'"pattern":{pattern_json},"valid_from":"{created}"'
        f'{parts.tail},"x_hashfed_seq":{seq},"x_hashfed_category":{_category(category)}'
        + (',"revoked":true}' if revoked else "}")
    )
