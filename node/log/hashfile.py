"""Reading hash files for import: CSV (``type,value,category``) or one hash a line.

The items are yielded as the file is read (the writer takes them a page at
a time inside its transaction); the first errors are collected with file
name, line number and reason, and raised once the whole file is read, so
the import is refused as a whole. Values never appear in error messages.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path

from crypto.errors import InputError
from node.log.hashes import HashType, get_type, parse_category

# How many line errors one refusal lists; the rest are counted.
MAX_REPORTED_ERRORS = 10
HashItem = tuple[str, str, str]  # (hash_type, canonical value, category)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        # utf-8-sig: spreadsheet exports often start with a byte order mark,
        # which would otherwise glue itself to the first header cell.
        with path.open("r", encoding="utf-8-sig", newline="") as fh:
            yield from enumerate(fh, start=1)
    except FileNotFoundError:
        raise InputError("file not found", where=str(path)) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a file", where=str(path)) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", where=str(path)) from None


EMPTY_FILE = "holds no hashes (it is empty, or only blank lines and # comments)"
# The csv module's default field_size_limit: a quoted field longer than this
# is no hash, and the module would raise its own error in the middle of a row.
MAX_FIELD_CHARS = 131_072


def _first_data_line(path: Path) -> str | None:
    for _, line in _lines(path):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return stripped
    return None


def detect_format(path: Path) -> str:
    """``csv`` when the first non-blank line has a comma, else ``text``."""
    first = _first_data_line(path)
    return "csv" if first is not None and "," in first else "text"


def _csv_row(line: str, *, where: str) -> list[str]:
    if '"' not in line:
        return line.split(",")
    try:
        return next(csv.reader(io.StringIO(line)))
    except csv.Error:
        raise InputError(
            f"a quoted field longer than {MAX_FIELD_CHARS:,} characters (or a malformed quote)",
            where=where,
        ) from None


def read_hash_file(
    path: Path,
    *,
    fmt: str | None = None,
    default_type: str | None = None,
    default_category: str = "",
    progress: Callable[[int], None] | None = None,
) -> Iterator[HashItem]:
    """The canonical ``(type, value, category)`` items of a hash file, as it is read.

    CSV columns are ``type,value[,category]``; a header row naming those
    columns is allowed. Text files hold one value a line and need
    ``default_type``. Blank lines and lines starting with ``#`` are skipped.
    ``progress`` is told how many characters were read since its last call.

    Raises:
        InputError: naming the file: at once for a file that cannot be
            read as the format asked, after the last item for the first
            offending lines (no item of such a file may be kept).
    """
    if _first_data_line(path) is None:
        # Before the --type check: "needs --type" would send the user the wrong way.
        raise InputError(EMPTY_FILE, where=str(path))
    fmt = fmt or detect_format(path)
    if fmt not in {"csv", "text"}:
        raise InputError(f"unknown format {fmt!r}, expected csv or text", where=str(path))
    fixed_type = get_type(default_type, where="--type") if default_type else None
    if fmt == "text" and fixed_type is None:
        raise InputError("a one-hash-per-line file needs --type", where=str(path))
    category = parse_category(default_category, where="--category")
    return _items(path, fmt, fixed_type, category, progress)


def _csv_item(
    line: str,
    where: str,
    parsers: dict[str, HashType],
    categories: dict[str, str],
    default_category: str,
    first_row: bool,
) -> HashItem | None:
    """One CSV row's item; None for a header row (allowed as the first row)."""
    # Hash files rarely quote; the csv module is the slow path for those that do.
    row = _csv_row(line, where=where)
    if first_row and [c.strip().lower() for c in row[:2]] == ["type", "value"]:
        return None
    if len(row) not in (2, 3):
        raise InputError(
            f"expected 2 or 3 comma-separated fields (type,value,category), got {len(row)}",
            where=where,
        )
    htype = parsers.get(row[0])
    if htype is None:
        htype = parsers[row[0]] = get_type(row[0], where=f"{where}: type")
    value = htype.parse(row[1], where=f"{where}: value")
    if len(row) == 2:
        return htype.name, value, default_category
    cat = categories.get(row[2])  # few distinct categories: validate each once
    if cat is None:
        cat = categories[row[2]] = parse_category(row[2], where=f"{where}: category")
    return htype.name, value, cat


def _items(
    path: Path,
    fmt: str,
    fixed_type: HashType | None,
    category: str,
    progress: Callable[[int], None] | None,
) -> Iterator[HashItem]:
    count = 0
    errors: list[str] = []
    error_count = 0
    parsers: dict[str, HashType] = {}
    categories: dict[str, str] = {}
    first_row = True  # a header may follow leading comments and blank lines
    read = 0
    for lineno, line in _lines(path):
        read += len(line)
        if progress is not None and lineno % 10_000 == 0:
            progress(read)  # characters since the last call: ~bytes of a hash file
            read = 0
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{path}:{lineno}"
        item: HashItem | None
        try:
            if fixed_type is not None and fmt == "text":
                item = (fixed_type.name, fixed_type.parse(stripped, where=where), category)
            else:
                is_first, first_row = first_row, False
                item = _csv_item(stripped, where, parsers, categories, category, is_first)
        except InputError as exc:
            error_count += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.append(exc.message)
            continue
        if item is not None:
            yield item
            count += 1
    if progress is not None and read:
        progress(read)
    if errors:
        more = error_count - len(errors)
        tail = f"\n  … and {more} more" if more else ""
        raise InputError(
            f"{error_count} invalid line(s), nothing imported:\n  " + "\n  ".join(errors) + tail,
            where=str(path),
        )
    if not count:
        raise InputError(EMPTY_FILE, where=str(path))
