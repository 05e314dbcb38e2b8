"""What a pull keeps on disk between runs: ``DIR/.hashfed-state.json``, written atomically."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crypto.errors import InputError
from crypto.merkle import CompactRange

__all__ = ["STATE_FILE", "WORK_DIR", "ListState", "PullState", "atomic_write"]

STATE_FILE = ".hashfed-state.json"
WORK_DIR = ".hashfed"
STATE_FORMAT = 1


@dataclass
class ListState:
    """What a pull accepted of one list: the signed checkpoint, the tree's right edge, files."""

    size: int
    compact_range: bytes
    checkpoint: str
    timestamp: int
    files: dict[str, str] = field(default_factory=dict)  # hash type -> path under DIR
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "compact_range": self.compact_range.hex(),
            "root": CompactRange.from_bytes(self.compact_range).root().hex(),
            "timestamp": self.timestamp,
            "checkpoint": self.checkpoint,
            "files": dict(sorted(self.files.items())),
            "counts": dict(sorted(self.counts.items())),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ListState:
        return cls(
            int(d["size"]),
            bytes.fromhex(d["compact_range"]),
            str(d["checkpoint"]),
            int(d["timestamp"]),
            {str(k): str(v) for k, v in d.get("files", {}).items()},
            {str(k): int(v) for k, v in d.get("counts", {}).items()},
        )


@dataclass
class PullState:
    """``DIR/.hashfed-state.json``: where the copy stands; replaced atomically, last."""

    url: str
    label: str
    cursor: str | None = None
    generation: int = 0
    lists: dict[str, ListState] = field(default_factory=dict)
    outputs: dict[str, int] = field(default_factory=dict)  # hash type -> hashes in the file

    @classmethod
    def load(cls, out_dir: Path) -> PullState | None:
        """The state in ``out_dir``, or None before the first pull.

        Raises:
            InputError: the file exists but is not a state this version wrote.
        """
        path = out_dir / STATE_FILE
        try:
            d = json.loads(path.read_text())
            if d.get("format") != STATE_FORMAT:
                raise ValueError("unknown format")
            return cls(
                str(d["url"]),
                str(d["label"]),
                d.get("cursor"),
                int(d["generation"]),
                {k: ListState.from_json(v) for k, v in d["lists"].items()},
                {str(k): int(v) for k, v in d.get("outputs", {}).items()},
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InputError(
                "not a hashfed pull state (delete the folder to start over)", where=str(path)
            ) from None

    def save(self, out_dir: Path) -> None:
        body = {
            "format": STATE_FORMAT,
            "url": self.url,
            "label": self.label,
            "cursor": self.cursor,
            "generation": self.generation,
            "outputs": dict(sorted(self.outputs.items())),
            "lists": {k: v.to_json() for k, v in sorted(self.lists.items())},
        }
        atomic_write(out_dir / STATE_FILE, (json.dumps(body, indent=1) + "\n").encode())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
