"""The resumable scan's state file: one JSON line per hashed file, flushed as it goes.

The first line names the format version and the folder scanned; each further
line holds a file's size, modification time and hashes, so an interrupted scan
resumed later does not hash again a file whose size and modification time are
unchanged. The file is created 0600: its hashes are the user's material.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from node.local.errors import ScanError
from node.local.hashing import FileHashes, describe_os_error
from node.local.results import now

__all__ = ["STATE_VERSION", "StateWriter", "load_state", "record"]

# 2: PDQ hashes the pixels as stored (1 applied the EXIF orientation), plus pdq_oriented.
STATE_VERSION = 2

_HASH_FIELDS = (
    "md5",
    "sha1",
    "sha256",
    "pdq",
    "pdq_quality",
    "kind",
    "error",
    "pdq_oriented",
    "pdq_oriented_quality",
)


def record(h: FileHashes, mtime_ns: int, size: int) -> str:
    data: dict[str, Any] = {"path": h.path, "size": size, "mtime_ns": mtime_ns}
    data["read"] = h.size
    for name in _HASH_FIELDS:
        data[name] = getattr(h, name)
    return json.dumps(data, separators=(",", ":")) + "\n"


def _from_record(data: dict[str, Any]) -> FileHashes:
    return FileHashes(
        path=str(data["path"]),
        size=int(data["read"]),
        md5=str(data["md5"]),
        sha1=str(data["sha1"]),
        sha256=str(data["sha256"]),
        pdq=None if data["pdq"] is None else str(data["pdq"]),
        pdq_quality=None if data["pdq_quality"] is None else int(data["pdq_quality"]),
        kind=data["kind"] if data["kind"] in ("image", "video", "other") else "other",
        error=None if data["error"] is None else str(data["error"]),
        pdq_oriented=None if data["pdq_oriented"] is None else str(data["pdq_oriented"]),
        pdq_oriented_quality=(
            None if data["pdq_oriented_quality"] is None else int(data["pdq_oriented_quality"])
        ),
    )


def load_state(state_file: Path, root: str) -> dict[str, tuple[int, int, FileHashes]]:
    """Read a state file: ``path -> (size, mtime_ns, hashes)``; the last record wins.

    A torn last line (the scan was killed mid-write) is ignored. Raises
    :class:`ScanError` when the file belongs to a scan of another folder.
    """
    done: dict[str, tuple[int, int, FileHashes]] = {}
    try:
        fh = state_file.open("r", encoding="utf-8", errors="strict")
    except FileNotFoundError:
        return done
    except OSError as exc:
        raise ScanError(f"cannot read the state file: {describe_os_error(exc)}") from None
    with fh:
        for lineno, line in enumerate(fh, start=1):
            try:
                data = json.loads(line)
                if lineno == 1:
                    version = data.get("hashfed_scan_state")
                    if isinstance(version, int) and 0 < version < STATE_VERSION:
                        raise ScanError(
                            "the state file was written by an older hashfed that computed PDQ "
                            "differently; start a new scan without --resume"
                        )
                    if version != STATE_VERSION:
                        raise ScanError("the state file is not a hashfed scan state file")
                    if data.get("root") != root:
                        raise ScanError(
                            "the state file belongs to a scan of another folder; "
                            "start a new scan without --resume"
                        )
                    continue
                hashes = _from_record(data)
                done[hashes.path] = (int(data["size"]), int(data["mtime_ns"]), hashes)
            except (ValueError, KeyError, TypeError):
                if lineno == 1:
                    raise ScanError("the state file is not a hashfed scan state file") from None
                continue  # a torn line: that file is simply hashed again
    return done


class StateWriter:
    """Appends one JSON line per hashed file and flushes after each batch."""

    def __init__(self, state_file: Path, root: str, *, append: bool) -> None:
        self.path = state_file
        state_file.parent.mkdir(parents=True, exist_ok=True)
        fresh = not append or not state_file.exists() or state_file.stat().st_size == 0
        fd = os.open(
            state_file,
            os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if fresh else os.O_APPEND),
            0o600,  # the file's hashes are the user's material: keep them private
        )
        self._fh: IO[str] = open(fd, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if fresh:
            header = {"hashfed_scan_state": STATE_VERSION, "root": root, "started": now()}
            self._fh.write(json.dumps(header) + "\n")
        elif not _ends_with_newline(state_file):
            self._fh.write("\n")  # terminate a torn last line before appending
        self._fh.flush()

    def write(self, records: Iterable[str]) -> None:
        self._fh.writelines(records)
        self._fh.flush()

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"
