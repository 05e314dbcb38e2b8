"""Hash types: one registry entry each, with its parser, canonical form and distance.

Parsing never puts the value itself into an error message: hash values are
sensitive. Errors name the position (``where``) and what was expected.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from crypto.errors import InputError

_HEX_RE = re.compile(r"^[0-9a-f]+$")
# Opaque hashes (e.g. PhotoDNA as base64 or comma-separated numbers) are kept
# as printed; the bound keeps one value under a few KB.
_OPAQUE_RE = re.compile(r"^[\x21-\x7e]{1,2048}$")
MAX_CATEGORY_LENGTH = 64
MAX_CATEGORY_BYTES = 255  # UTF-8 bytes; the leaf length prefix is one byte
_CATEGORY_RE = re.compile(r"^[\w .:/+-]{0,64}$")


@dataclass(frozen=True)
class HashType:
    """One kind of hash the node can store and match.

    ``hex_bytes`` is the decoded length for hex types and ``None`` for opaque
    types, which match exactly on their printed form.
    """

    name: str
    match: Literal["exact", "hamming"]
    hex_bytes: int | None
    description: str

    @property
    def key_width(self) -> int:
        """Bytes per key in the in-memory index (opaque types are hashed to 32)."""
        return self.hex_bytes if self.hex_bytes is not None else 32

    def parse(self, raw: str, *, where: str = "value") -> str:
        """Return the canonical form of ``raw`` or raise :class:`InputError`."""
        value = raw.strip()
        if self.hex_bytes is None:
            if not _OPAQUE_RE.fullmatch(value):
                raise InputError(
                    f"expected 1 to 2048 printable characters without spaces for {self.name}",
                    where=where,
                )
            return value
        value = value.lower()
        want = 2 * self.hex_bytes
        if len(value) != want:
            raise InputError(
                f"expected {want} hex characters for {self.name}, got {len(value)}", where=where
            )
        if not _HEX_RE.fullmatch(value):
            raise InputError(f"expected hex characters only for {self.name}", where=where)
        return value

    def key(self, canonical: str) -> bytes:
        """The fixed-width bytes the index stores for a canonical value."""
        if self.hex_bytes is None:
            return hashlib.sha256(canonical.encode()).digest()
        return bytes.fromhex(canonical)


REGISTRY: dict[str, HashType] = {
    t.name: t
    for t in (
        HashType("md5", "exact", 16, "MD5 of the file bytes"),
        HashType("sha1", "exact", 20, "SHA-1 of the file bytes"),
        HashType("sha256", "exact", 32, "SHA-256 of the file bytes"),
        HashType("pdq", "hamming", 32, "PDQ perceptual image hash, 256 bits"),
        HashType("photodna", "exact", None, "PhotoDNA, opaque: shared and matched exactly"),
    )
}
HASH_TYPES: tuple[str, ...] = tuple(REGISTRY)


def get_type(name: str, *, where: str = "type") -> HashType:
    """Look a hash type up by name (case-insensitive)."""
    try:
        return REGISTRY[name.strip().lower()]
    except KeyError:
        raise InputError(
            f"unknown hash type, expected one of {', '.join(HASH_TYPES)}", where=where
        ) from None


def parse_hash(type_name: str, value: str, *, where: str = "") -> tuple[str, str]:
    """Parse one ``(type, value)`` pair into its canonical form.

    ``where`` prefixes the field names in errors, e.g. ``hashes[17]``.
    """
    prefix = f"{where}." if where else ""
    htype = get_type(type_name, where=f"{prefix}type")
    return htype.name, htype.parse(value, where=f"{prefix}value")


def parse_many(
    type_name: str, values: Sequence[str], positions: Sequence[int], *, where: str
) -> list[str]:
    """Canonical forms of many values of one type, e.g. a match batch.

    Hex types are checked with one ``bytes.fromhex`` over the whole batch;
    only when that fails is each value parsed alone, to name the first bad
    one (``{where}[{position}].value``) exactly as :func:`parse_hash` would.
    """
    htype = get_type(type_name, where=f"{where}[{positions[0]}].type" if positions else "type")
    canon = [v.strip().lower() for v in values] if htype.hex_bytes is not None else None
    if canon is not None and htype.hex_bytes is not None:
        want = 2 * htype.hex_bytes
        if all(len(v) == want for v in canon):
            try:
                # fromhex skips whitespace, so the decoded length is checked too.
                if len(bytes.fromhex("".join(canon))) == htype.hex_bytes * len(canon):
                    return canon
            except ValueError:
                pass
    return [
        htype.parse(v, where=f"{where}[{p}].value") for v, p in zip(values, positions, strict=True)
    ]


def parse_category(raw: str, *, where: str = "category") -> str:
    """Categories are short labels such as ``A1`` or ``baseline``."""
    value = raw.strip()
    # The leaf encoding gives the category a one-byte length (node/log/entry.py):
    # 64 letters outside the BMP would need 256 bytes.
    if not _CATEGORY_RE.fullmatch(value) or len(value.encode("utf-8")) > MAX_CATEGORY_BYTES:
        raise InputError(
            f"expected at most {MAX_CATEGORY_LENGTH} letters, digits, spaces or . : / + - _",
            where=where,
        )
    return value


def hamming(a: bytes, b: bytes) -> int:
    """Bit distance between two equal-length codes."""
    if len(a) != len(b):
        raise ValueError("codes differ in length")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def distance(type_name: str, a: str, b: str) -> int:
    """Distance between two canonical values: Hamming for PDQ, 0/1 for exact types."""
    htype = REGISTRY[type_name]
    if htype.match == "hamming":
        return hamming(htype.key(a), htype.key(b))
    return 0 if a == b else 1


def types_in(names: Iterable[str]) -> list[HashType]:
    return [get_type(n) for n in names]
