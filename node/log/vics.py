"""Reading Project VIC (VICS) JSON hash sets, versions 1.x and 2.0, streamed.

Griffeye, X-Ways, Magnet AXIOM and IPED exchange hash sets as VICS JSON, an
OData document::

    {"odata.metadata": "http://github.com/ICMEC/ProjectVic/DataModels/1.3.xml#Media",
     "value": [ {Media}, … ]}                                  (1.x hash set)
    {"@odata.context": "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/
                        2.0.xml/Default/$metadata#Media", "value": [ … ]}   (2.0)

or a case export, ``#Cases``, whose ``value`` holds Case objects with a
``Media`` array each. From each Media record we take ``MD5``, ``SHA1``
(and ``SHA256`` when a tool adds it), ``PhotoDNA`` (2.0: top level; 1.3:
the ``AlternativeHashes`` entry whose ``HashName`` is ``PhotoDNA``; base64
of 144 bytes or ICSE's 288 hex characters, stored as the base64), and
``Category``, mapped to a list category by a :class:`CategoryMap`.
``MediaSize`` and ``IsPrecategorized`` are checked (tools write them as
numbers, booleans or strings) but not stored: a list entry is a hash and a
category. Paths, file names, EXIF and case contacts are never read into
anything kept.

**Streaming.** Sets run to 10⁷ records and several GB. The document is read
1 MiB at a time; the two outer levels (the root object, a case object) are
walked key by key, and each Media record is decoded on its own with the C
JSON scanner (``JSONDecoder.raw_decode``). Memory holds one chunk, one
record and the hashes kept, never the document; ijson would add a
dependency for the same bounded memory and, with its pure-Python backend,
be several times slower.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from crypto.errors import InputError
from node.log.hashes import parse_category

__all__ = [
    "DEFAULT_CATEGORY_MAP",
    "CategoryMap",
    "VicsInfo",
    "looks_like_vics",
    "read_vics",
]

HashItem = tuple[str, str, str]
_CHUNK = 1 << 20
# One Media record (with its file list and EXIF) far above any real one; a
# larger "record" is a malformed or hostile file, refused.
MAX_RECORD_BYTES = 16 << 20
MAX_REPORTED_ERRORS = 10
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_HASH_FIELDS = (("MD5", "md5", 32), ("SHA1", "sha1", 40), ("SHA256", "sha256", 64))
PHOTODNA_BYTES = 144

# Project VIC's US/Default scheme: 0 non-pertinent, 1 child abuse material,
# 2 child exploitive (age difficult), 3 CGI/animation, 4 comparison images.
# None means "not imported": non-pertinent and comparison images are not
# abuse material, and an uncategorised record is not a claim about anything.
DEFAULT_CATEGORY_MAP: dict[str, str | None] = {
    "0": None,
    "1": "CAM",
    "2": "exploitive",
    "3": "CGI",
    "4": None,
    "uncategorised": None,
}


@dataclass(frozen=True)
class CategoryMap:
    """VICS ``Category`` code → list category (``None``: the record is skipped)."""

    table: dict[str, str | None] = field(default_factory=lambda: dict(DEFAULT_CATEGORY_MAP))
    _seen: dict[object, tuple[bool, str]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(cls, path: Path) -> CategoryMap:
        """A JSON object ``{"1": "CAM", "2": "A2", "0": null, "uncategorised": null}``.

        Raises:
            InputError: not such an object, or a category the lists refuse.
        """
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"not a readable JSON object ({exc})", where=str(path)) from None
        if not isinstance(raw, dict):
            raise InputError("expected a JSON object of code -> category", where=str(path))
        table: dict[str, str | None] = {}
        for k, v in raw.items():
            if v is not None and not isinstance(v, str):
                raise InputError("categories are strings or null", where=f"{path}: {k}")
            table[str(k)] = None if v is None else parse_category(v, where=f"{path}: {k}")
        return cls(table)

    def category(self, code: object, where: str) -> tuple[bool, str]:
        """``(keep, category)`` for a record's ``Category`` value."""
        if code is None or code == "":
            key = "uncategorised"
        elif isinstance(code, bool) or not isinstance(code, int | str):
            raise InputError("Category: expected an integer", where=where)
        else:
            key = str(code).strip()
            if not key.lstrip("-").isdigit():
                raise InputError("Category: expected an integer", where=where)
            key = str(int(key))
        if key not in self.table:
            raise InputError(f"Category {key} is not in the category table", where=where)
        value = self.table[key]
        return (value is not None), (value or "")

    def code_for(self, category: str) -> int:
        """The VICS code to export ``category`` as (1, child abuse material, by default)."""
        for k, v in self.table.items():
            if v == category and k.isdigit():
                return int(k)
        return 1


@dataclass
class VicsInfo:
    """What the document said about itself."""

    version: str = ""  # "1.3", "2.0", … from the OData URL
    kind: str = ""  # "Media" or "Cases"
    media: int = 0
    skipped: int = 0  # records the category table leaves out


_MODEL = re.compile(r"DataModels/(\d+\.\d+)\.xml.*#(Media|Cases)\s*$")


def looks_like_vics(path: Path) -> bool:
    """Whether the file starts like a VICS document (a JSON object naming an OData model)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    text = head.decode("utf-8-sig", errors="replace").lstrip()
    return text.startswith("{") and ("odata.metadata" in text or "odata.context" in text)


_BOOL_STRINGS = frozenset(
    ("true", "false", "yes", "no", "y", "n", "t", "f", "1", "0", "", "True", "False")
)


def _bool(value: object, name: str, where: str) -> None:
    if value is None or value is True or value is False:
        return
    if isinstance(value, str) and (
        value in _BOOL_STRINGS or value.strip().lower() in _BOOL_STRINGS
    ):
        return
    raise InputError(f"{name}: expected a boolean", where=where)


def _size(value: object, where: str) -> None:
    if value is None:
        return
    if type(value) is int:
        if value >= 0:
            return
    elif isinstance(value, str) and (
        value.isdigit() or value.strip().isdigit() or not value.strip()
    ):
        return
    raise InputError("MediaSize: expected a non-negative integer", where=where)


def _photodna(raw: object, where: str) -> str:
    """The canonical PhotoDNA: base64 of its 144 bytes."""
    if not isinstance(raw, str):
        raise InputError("PhotoDNA: expected a string", where=where)
    text = raw.strip()
    if len(text) == 2 * PHOTODNA_BYTES and _HEX.fullmatch(text):
        return base64.b64encode(bytes.fromhex(text)).decode()
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        data = b""
    if len(data) != PHOTODNA_BYTES:
        raise InputError(
            "PhotoDNA: expected base64 of 144 bytes or 288 hex characters", where=where
        )
    return base64.b64encode(data).decode()


def media_items(media: object, cats: CategoryMap, where: str) -> list[HashItem] | None:
    """The hashes of one Media record; None if its category is not imported."""
    if type(media) is not dict:
        raise InputError("expected a Media object", where=where)
    code = media.get("Category")
    # Few distinct codes: each is checked once (a bool is not a code, though True == 1).
    hit = None if type(code) is bool else cats._seen.get(code)
    if hit is None:
        hit = cats._seen[code] = cats.category(code, where)
    keep, category = hit
    _size(media.get("MediaSize"), where)
    _bool(media.get("IsPrecategorized"), "IsPrecategorized", where)
    if not keep:
        return None
    items: list[HashItem] = []
    for field_name, htype, width in _HASH_FIELDS:
        value = media.get(field_name)
        if not value:
            continue
        if type(value) is not str or len(value) != width or not _HEX.fullmatch(value):
            raise InputError(f"{field_name}: expected {width} hex characters", where=where)
        items.append((htype, value.lower(), category))
    pdna = media.get("PhotoDNA")
    if not pdna:
        for alt in media.get("AlternativeHashes") or ():
            if isinstance(alt, dict) and str(alt.get("HashName", "")).lower() == "photodna":
                pdna = alt.get("HashValue")
                break
    if pdna:
        items.append(("photodna", _photodna(pdna, where), category))
    if not items:
        raise InputError("a Media record without MD5, SHA1 or PhotoDNA", where=where)
    return items


class _Reader:
    """A buffered UTF-8 reader that decodes one JSON value at a time."""

    def __init__(
        self, fh: BinaryIO, name: str, progress: Callable[[int], None] | None = None
    ) -> None:
        self.fh = fh
        self.name = name
        self._progress = progress
        self.buf = ""
        self.pos = 0
        self._line = 1  # the line of buf[_counted]
        self._counted = 0
        self.eof = False
        self._decoder = json.JSONDecoder()
        self._pending = b""
        self._first = True

    @property
    def line(self) -> int:
        """The line of the current position (counted incrementally: linear overall)."""
        if self.pos > self._counted:
            self._line += self.buf.count("\n", self._counted, self.pos)
            self._counted = self.pos
        return self._line

    def where(self) -> str:
        return f"{self.name}:{self.line}"

    def _fill(self) -> bool:
        if self.eof:
            return False
        raw = self.fh.read(_CHUNK)
        if self._progress is not None:
            self._progress(len(raw))
        if not raw:
            self.eof = True
            if self._pending:
                raise InputError("not UTF-8 text (truncated character)", where=self.where())
            return False
        raw = self._pending + raw
        try:
            text = raw.decode("utf-8")
            self._pending = b""
        except UnicodeDecodeError as exc:
            if exc.start < len(raw) - 3:
                raise InputError("not UTF-8 text", where=self.where()) from None
            text, self._pending = raw[: exc.start].decode("utf-8"), raw[exc.start :]
        if self._first:
            text = text.removeprefix("\ufeff")  # tools write a byte order mark
            self._first = False
        _ = self.line  # count what is dropped
        self.buf = self.buf[self.pos :] + text
        self.pos = self._counted = 0
        return True

    def peek(self) -> str:
        """The next non-blank character (consumed up to it), or "" at the end."""
        while True:
            n = len(self.buf)
            while self.pos < n and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < n:
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def expect(self, chars: str) -> str:
        c = self.peek()
        if c == "" or c not in chars:
            got = "the end of the file" if c == "" else repr(c)
            raise InputError(
                f"malformed JSON: expected one of {chars!r}, got {got}", where=self.where()
            )
        self.pos += 1
        return c

    def value(self) -> Any:
        """Decode the next JSON value, reading more until it is whole."""
        self.peek()
        while True:
            try:
                obj, end = self._decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if len(self.buf) - self.pos > MAX_RECORD_BYTES:
                    raise InputError(
                        f"a record over {MAX_RECORD_BYTES >> 20} MiB", where=self.where()
                    ) from None
                if not self._fill():
                    line = self.line + self.buf.count("\n", self.pos, exc.pos)
                    raise InputError(
                        f"malformed JSON: {exc.msg}", where=f"{self.name}:{line}"
                    ) from None
                continue
            # A number or literal cut at the chunk's end decodes short: read on.
            if end == len(self.buf) and not self.eof and self._fill():
                continue
            self.pos = end
            return obj

    def items_of_array(self) -> Iterator[int]:  # yields 0: a step, not a value
        """Steps through an array: yields before each element, which the caller reads."""
        self.expect("[")
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            yield 0
            if self.expect(",]") == "]":
                return


def read_vics(
    path: Path,
    *,
    categories: CategoryMap | None = None,
    progress: Callable[[int], None] | None = None,
    info: VicsInfo | None = None,
) -> Iterator[HashItem]:
    """Every hash of a VICS document, in order, as it is read; errors name the file and line.

    ``progress`` hears the bytes of each chunk read.

    Raises:
        InputError: not a VICS document (when that is seen), or invalid
            records (after the last item: the first errors, all of them
            counted; no item of such a file may be kept).
    """
    cats = categories or CategoryMap()
    info = info if info is not None else VicsInfo()
    errors: list[str] = []
    count = 0
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise InputError("file not found", where=str(path)) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a file", where=str(path)) from None
    with fh:
        r = _Reader(fh, str(path), progress)

        def media_array() -> Iterator[HashItem]:
            nonlocal count
            for _ in r.items_of_array():
                record = r.value()
                info.media += 1
                try:
                    got = media_items(record, cats, "")
                except InputError as exc:
                    # The line is counted only for a bad record: the one it ends on.
                    exc = InputError(exc.reason, where=r.where())

                    count += 1
                    if len(errors) < MAX_REPORTED_ERRORS:
                        errors.append(exc.message)
                    continue
                if got is None:
                    info.skipped += 1
                else:
                    yield from got

        def case_object() -> Iterator[HashItem]:
            r.expect("{")
            if r.peek() == "}":
                r.pos += 1
                return
            while True:
                key = r.value()
                r.expect(":")
                if key == "Media":
                    yield from media_array()
                else:
                    r.value()  # case metadata: read past, never kept
                if r.expect(",}") == "}":
                    return

        r.expect("{")
        seen_value = False
        while r.peek() != "}":
            key = r.value()
            if not isinstance(key, str):
                raise InputError("malformed JSON: expected a key", where=r.where())
            r.expect(":")
            if key in ("odata.metadata", "@odata.context"):
                url = r.value()
                m = _MODEL.search(url) if isinstance(url, str) else None
                if m is None:
                    raise InputError(f"{key}: not a Project VIC data model URL", where=r.where())
                info.version, info.kind = m.group(1), m.group(2)
                if key == "@odata.context" and not info.version.startswith("2"):
                    raise InputError("@odata.context names a 1.x model", where=r.where())
            elif key == "value":
                if not info.kind:
                    raise InputError(
                        "the model (odata.metadata or @odata.context) must come before value",
                        where=r.where(),
                    )
                seen_value = True
                if info.kind == "Media":
                    yield from media_array()
                else:
                    for _line in r.items_of_array():
                        yield from case_object()
            else:
                r.value()
            if r.peek() == ",":
                r.pos += 1
        r.pos += 1
        if r.peek() != "":
            raise InputError("malformed JSON: data after the document", where=r.where())
        if not info.kind:
            raise InputError(
                "not a VICS document (no odata.metadata or @odata.context)", where=str(path)
            )
        if not seen_value:
            raise InputError("a VICS document without value", where=str(path))
    if errors:
        more = count - len(errors)
        tail = f"\n  … and {more} more" if more else ""
        raise InputError(
            f"{count} invalid record(s), nothing imported:\n  " + "\n  ".join(errors) + tail,
            where=str(path),
        )
