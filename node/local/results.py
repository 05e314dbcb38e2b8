"""What a scan produces: per-file results and problems, and the scan's result.

Only hashes and metadata, never file content; a report is written from these.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from node.local.hashing import PDQ_MIN_QUALITY, FileHashes
from node.local.matcher import Hit

__all__ = ["FileProblem", "FileResult", "ScanResult", "now"]


@dataclass(frozen=True)
class FileProblem:
    """A file that could not be (fully) processed, and why.

    ``hashed`` is true when the exact hashes were still computed and matched
    (e.g. a truncated image: no PDQ, but MD5/SHA-1/SHA-256 are valid).
    """

    path: str
    reason: str
    hashed: bool = False


@dataclass(frozen=True)
class FileResult:
    """One hashed file and the hits its hashes got (empty: unknown)."""

    hashes: FileHashes
    hits: tuple[Hit, ...] = ()

    @property
    def path(self) -> str:
        return self.hashes.path

    @property
    def known(self) -> bool:
        return bool(self.hits)

    @property
    def pdq_low_quality(self) -> bool:
        """An image whose PDQ was computed but not used for near matching."""
        return self.hashes.pdq is not None and not self.hashes.pdq_usable


@dataclass(frozen=True)
class ScanResult:
    """Everything a report needs; no raw content, only hashes and metadata."""

    root: str
    started: str
    finished: str
    files: tuple[FileResult, ...]
    errors: tuple[FileProblem, ...]
    skipped: tuple[FileProblem, ...]
    max_distance: int
    pdq_min_quality: int = PDQ_MIN_QUALITY
    matcher: str = ""
    hashed_now: int = 0
    reused: int = 0
    bytes_total: int = 0
    seconds: float = 0.0

    @property
    def known(self) -> list[FileResult]:
        return [f for f in self.files if f.known]

    @property
    def unknown(self) -> list[FileResult]:
        return [f for f in self.files if not f.known]

    @property
    def low_quality(self) -> list[FileResult]:
        return [f for f in self.files if f.pdq_low_quality]

    def totals_by_category(self) -> dict[str, int]:
        """Known files per category (a file hitting two categories counts in both)."""
        counts: Counter[str] = Counter()
        for f in self.files:
            for category in sorted({h.category for h in f.hits}):
                counts[category] += 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def counts_by_kind(self) -> dict[str, int]:
        return dict(Counter(f.hashes.kind for f in self.files))


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
