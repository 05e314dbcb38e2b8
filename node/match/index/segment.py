"""Index segment files: the arrays of every index, written once, memory-mapped by all.

A segment is derived data. It holds the arrays the in-memory indexes already
hold (sorted exact keys and their bucket table; PDQ codes, refs and the
multi-index tables), compacted, plus a header that says what they cover:

    [0:8]    magic  b"HFSEGMNT"
    [8:12]   format version, uint32 little-endian
    [12:16]  header length, uint32
    [16:48]  sha256 of the header
    [48:..]  header (JSON): database id, per-list watermark (the log size the
             arrays reflect), category names, one entry per array (name,
             dtype, shape, offset, length, checksum), index parameters
    [4096k:] the arrays, each 64-byte aligned

A reader trusts nothing it has not checked: magic, version, header checksum,
the database id, every array's bounds and checksum. Any failure raises
:class:`SegmentError` and the caller rebuilds from the database. Arrays come
back as read-only ``numpy.memmap`` views, so every process on the machine
shares one copy through the page cache.

Files are named ``seg-<generation>.hfseg`` in one folder; the highest
generation that opens cleanly is the current one. A writer writes
``.tmp``, fsyncs it, renames it into place and fsyncs the folder, so a crash
leaves either the old set or the old set plus a complete new file.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

MAGIC = b"HFSEGMNT"
FORMAT_VERSION = 1
_PREFIX = 48
_DATA_ALIGN = 4096
_ARRAY_ALIGN = 64
_NAME = re.compile(r"^seg-(\d{12})\.hfseg$")
# Checksum chunks: crc32 per 64 MB piece, pieces hashed on two threads
# (zlib releases the GIL), so opening 1.4 GB costs well under a second warm.
_CHUNK = 64 << 20

# Called at each step of a write with the step's name; tests kill the process there.
StepHook = Callable[[str], None]


class SegmentError(Exception):
    """A segment file that must not be used (missing, corrupt, foreign, old format)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"segment {path.name}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Segment:
    """One opened, verified segment: what it covers and its mapped arrays."""

    path: Path
    generation: int
    database_id: str
    watermarks: dict[int, int]
    categories: list[str]
    indexes: dict[str, dict[str, Any]]  # hash type -> {"kind", params..., "arrays": {...}}
    mapped_bytes: int


def segment_name(generation: int) -> str:
    return f"seg-{generation:012d}.hfseg"


def generations(folder: Path) -> list[int]:
    """Generations present in ``folder``, newest first."""
    if not folder.is_dir():
        return []
    found = [int(m.group(1)) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found, reverse=True)


def _checksum(data: memoryview | bytes) -> str:
    crc = 0
    for lo in range(0, len(data), _CHUNK):
        crc = zlib.crc32(data[lo : lo + _CHUNK], crc)
    return f"{crc:08x}"


def write_segment(
    folder: Path,
    generation: int,
    *,
    database_id: str,
    watermarks: Mapping[int, int],
    categories: list[str],
    indexes: Mapping[str, tuple[dict[str, Any], dict[str, NDArray[Any]]]],
    on_step: StepHook | None = None,
) -> Path:
    """Write a segment and rename it into place; returns its path.

    ``indexes`` maps a hash type to ``(params, arrays)`` (params must hold
    ``"kind"``). The file appears under its final name only when complete
    and on disk.
    """
    step = on_step or (lambda _name: None)
    folder.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    blobs: list[NDArray[Any]] = []
    offset = 0
    meta: dict[str, dict[str, Any]] = {}
    for htype, (params, arrays) in indexes.items():
        meta[htype] = dict(params)
        for name, arr in arrays.items():
            a = np.ascontiguousarray(arr)
            flat = a.reshape(-1).view(np.uint8)
            offset = -(-offset // _ARRAY_ALIGN) * _ARRAY_ALIGN
            entries.append(
                {
                    "index": htype,
                    "name": name,
                    "dtype": a.dtype.str,
                    "shape": list(a.shape),
                    "offset": offset,
                    "nbytes": a.nbytes,
                }
            )
            blobs.append(flat)
            offset += a.nbytes
    with ThreadPoolExecutor(2) as pool:
        sums = list(pool.map(lambda a: _checksum(a.data), blobs))
    for e, s in zip(entries, sums, strict=True):
        e["crc32"] = s
    header = json.dumps(
        {
            "database_id": database_id,
            "generation": generation,
            "watermarks": {str(k): int(v) for k, v in sorted(watermarks.items())},
            "categories": list(categories),
            "indexes": meta,
            "arrays": entries,
            "data_bytes": offset,
        },
        sort_keys=True,
    ).encode()
    data_start = -(-(_PREFIX + len(header)) // _DATA_ALIGN) * _DATA_ALIGN
    prefix = (
        MAGIC
        + FORMAT_VERSION.to_bytes(4, "little")
        + len(header).to_bytes(4, "little")
        + hashlib.sha256(header).digest()
    )
    final = folder / segment_name(generation)
    tmp = folder / (final.name + ".tmp")
    step("open")
    try:
        with open(tmp, "wb") as f:
            f.write(prefix + header)
            f.write(b"\0" * (data_start - _PREFIX - len(header)))
            pos = 0
            for i, (e, a) in enumerate(zip(entries, blobs, strict=True)):
                f.write(b"\0" * (e["offset"] - pos))
                f.write(a.data)
                pos = e["offset"] + e["nbytes"]
                step(f"array-{i}")
            f.flush()
            step("written")
            os.fsync(f.fileno())
    except BaseException:
        # A full disk must not keep the space; a kill leaves it for the next merger.
        tmp.unlink(missing_ok=True)
        raise
    step("synced")
    os.replace(tmp, final)
    step("renamed")
    _fsync_dir(folder)
    step("done")
    return final


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_segment(path: Path, *, database_id: str) -> Segment:
    """Open and verify ``path``; arrays are read-only memory maps.

    Raises:
        SegmentError: the file is missing, truncated, corrupt, of another
            format version, or written against another database.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise SegmentError(path, f"cannot open ({exc.strerror})") from None
    try:
        size = os.fstat(fd).st_size
        if size < _PREFIX:
            raise SegmentError(path, "truncated")
        mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    head = mm[:_PREFIX]
    if head[:8] != MAGIC:
        raise SegmentError(path, "not a segment file")
    version = int.from_bytes(head[8:12], "little")
    if version != FORMAT_VERSION:
        raise SegmentError(path, f"format version {version}, expected {FORMAT_VERSION}")
    hlen = int.from_bytes(head[12:16], "little")
    if _PREFIX + hlen > size:
        raise SegmentError(path, "truncated header")
    header = mm[_PREFIX : _PREFIX + hlen]
    if hashlib.sha256(header).digest() != head[16:48]:
        raise SegmentError(path, "header checksum mismatch")
    try:
        meta = json.loads(header)
        if meta["database_id"] != database_id:
            raise SegmentError(path, "written against another database")
        data_start = -(-(_PREFIX + hlen) // _DATA_ALIGN) * _DATA_ALIGN
        if data_start + int(meta["data_bytes"]) != size:
            raise SegmentError(path, "size does not match its header")
        view = memoryview(mm)
        arrays = meta["arrays"]
        for e in arrays:
            lo = data_start + int(e["offset"])
            if lo < data_start or lo + int(e["nbytes"]) > size:
                raise SegmentError(path, "array out of bounds")
        with ThreadPoolExecutor(2) as pool:
            sums = list(
                pool.map(
                    lambda e: _checksum(
                        view[data_start + e["offset"] : data_start + e["offset"] + e["nbytes"]]
                    ),
                    arrays,
                )
            )
        view.release()
        if any(s != e["crc32"] for s, e in zip(sums, arrays, strict=True)):
            raise SegmentError(path, "array checksum mismatch")
        indexes: dict[str, dict[str, Any]] = {
            k: {**v, "arrays": {}} for k, v in meta["indexes"].items()
        }
        for e in arrays:
            shape = tuple(int(x) for x in e["shape"])
            dtype = np.dtype(e["dtype"])
            if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != int(e["nbytes"]):
                raise SegmentError(path, "array shape does not match its length")
            arr = np.ndarray(shape, dtype, buffer=mm, offset=data_start + int(e["offset"]))
            arr.flags.writeable = False
            indexes[e["index"]]["arrays"][e["name"]] = arr
        return Segment(
            path=path,
            generation=int(meta["generation"]),
            database_id=meta["database_id"],
            watermarks={int(k): int(v) for k, v in meta["watermarks"].items()},
            categories=[str(c) for c in meta["categories"]],
            indexes=indexes,
            mapped_bytes=size,
        )
    except SegmentError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise SegmentError(path, f"malformed header ({type(exc).__name__})") from None
