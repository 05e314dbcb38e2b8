"""The errors that stop a scan as a whole; per-file problems are results, not errors."""

from __future__ import annotations

from pathlib import Path

from crypto.errors import HashfedError

__all__ = ["MatcherError", "ScanError"]


class ScanError(HashfedError):
    """The scan as a whole cannot go on (not a per-file problem)."""

    code = "scan_failed"


class MatcherError(ScanError):
    """The matcher failed; the state file holds the work done so far."""

    code = "matcher_failed"

    def __init__(self, *, reason: str, state_file: Path) -> None:
        self.reason = reason
        self.state_file = state_file
        super().__init__(
            f"matching failed: {reason}. The scan stopped; the files hashed so far are kept "
            f"in {state_file}: run the scan again with --resume to continue."
        )
