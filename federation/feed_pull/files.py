"""Sorted one-value-per-line files, and the net changes a pull applies to them.

Memory stays bounded by the run size (:data:`RUN_ENTRIES`), not by the feed:
larger change sets spill to sorted runs on disk and are merged back in order.
"""

from __future__ import annotations

import contextlib
import heapq
import mmap
import operator
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

__all__ = ["RUN_ENTRIES", "Changes", "SortedFile", "merge", "new_file", "splice", "union"]

# Sorted runs of this many changes spill to disk: ~30 MB of Python objects.
RUN_ENTRIES = 200_000
_RUN_KEY = operator.itemgetter(slice(None, -3))  # a run line is b"<value>\t<0|1>\n"


class Changes:
    """The net effect (last op wins) of one list's entries on one hash type, sorted by value.

    In memory up to :data:`RUN_ENTRIES` distinct values, then spilled as sorted runs.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.current: dict[bytes, bool] = {}
        self.runs: list[Path] = []

    def add(self, value: bytes, present: bool) -> None:
        self.current[value] = present
        if len(self.current) >= RUN_ENTRIES:
            self.spill()

    def spill(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        path = self.tmp / f"run-{id(self)}-{len(self.runs)}.txt"
        with path.open("wb") as fh:
            fh.writelines(
                v + (b"\t1\n" if p else b"\t0\n") for v, p in sorted(self.current.items())
            )
        self.runs.append(path)
        self.current = {}

    @property
    def small(self) -> bool:
        return not self.runs

    def __len__(self) -> int:
        return len(self.current) + len(self.runs) * RUN_ENTRIES  # an upper bound once spilled

    def items(self) -> Iterator[tuple[bytes, bool]]:
        """``(value, present)`` sorted by value, each value once: its last op."""
        if not self.runs:
            yield from sorted(self.current.items())
            return
        if self.current:
            self.spill()
        files = [p.open("rb") for p in self.runs]
        try:
            # Ties (one value in several runs) come in run order: the last one wins.
            prev, flag = None, False
            for line in heapq.merge(*files, key=_RUN_KEY):
                value = line[:-3]
                if value != prev:
                    if prev is not None:
                        yield prev, flag
                    prev = value
                flag = line[-2] == 0x31  # "1"
            if prev is not None:
                yield prev, flag
        finally:
            for f in files:
                f.close()


def _lower_bound(mm: mmap.mmap, key: bytes, lo: int, hi: int) -> int:
    """The first line start in ``[lo, hi)`` whose line is ``>= key``, else ``hi``.

    ``lo`` must be a line start; every line ends in ``\\n``.
    """
    while lo < hi:
        mid = (lo + hi) // 2
        s = mm.rfind(b"\n", lo, mid)
        s = lo if s < 0 else s + 1
        e = mm.find(b"\n", s)
        if mm[s:e] < key:
            lo = e + 1
        else:
            hi = s
    return lo


class SortedFile:
    """A sorted, one-value-per-line file, memory-mapped for membership tests."""

    def __init__(self, path: Path) -> None:
        self._fh = path.open("rb")
        size = os.fstat(self._fh.fileno()).st_size
        self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ) if size else None

    def __contains__(self, key: bytes) -> bool:
        mm = self._mm
        if mm is None:
            return False
        at = _lower_bound(mm, key, 0, len(mm))
        return at < len(mm) and mm[at : mm.find(b"\n", at)] == key

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
        self._fh.close()


def splice(
    old: Path | None, changes: Iterable[tuple[bytes, bool]], out: IO[bytes], count: int
) -> int:
    """Write ``old`` with ``changes`` applied (few changes: copy the runs between them)."""
    if old is None:  # a new file: the present values, in order
        batch: list[bytes] = []
        for value, present in changes:
            if present:
                batch.append(value)
                if len(batch) >= 65_536:
                    out.write(b"\n".join(batch) + b"\n")
                    count, batch = count + len(batch), []
        if batch:
            out.write(b"\n".join(batch) + b"\n")
        return count + len(batch)
    with old.open("rb") as fh:
        if not os.fstat(fh.fileno()).st_size:
            return splice(None, changes, out, count)
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            n, pos = len(mm), 0
            for value, present in changes:
                at = _lower_bound(mm, value, pos, n)
                if at > pos:
                    out.write(mm[pos:at])
                pos = at
                if at < n:
                    end = mm.find(b"\n", at)
                    if mm[at:end] == value:
                        pos = end + 1
                        count -= 1
                if present:
                    out.write(value + b"\n")
                    count += 1
            out.write(mm[pos:])
    return count


def merge(old: Path, changes: Iterable[tuple[bytes, bool]], out: IO[bytes]) -> int:
    """Write ``old`` with ``changes`` applied, line by line (many changes)."""
    n = 0
    with old.open("rb") as fh:
        cur = fh.readline()
        for value, present in changes:
            line = value + b"\n"  # "\n" sorts below every value byte: lines order as values
            while cur and cur < line:
                out.write(cur)
                n += 1
                cur = fh.readline()
            if cur == line:
                cur = fh.readline()
            if present:
                out.write(line)
                n += 1
        while cur:
            out.write(cur)
            n += 1
            cur = fh.readline()
    return n


def union(paths: Sequence[Path], out: IO[bytes]) -> int:
    """Write the sorted union of sorted files, each value once."""
    n = 0
    files = [p.open("rb") for p in paths]
    try:
        prev = b""
        for line in heapq.merge(*files):
            if line != prev:
                out.write(line)
                n += 1
                prev = line
    finally:
        for f in files:
            f.close()
    return n


@contextlib.contextmanager
def new_file(path: Path) -> Iterator[IO[bytes]]:
    """Write ``path`` whole or not at all: a temporary file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb", buffering=1 << 20) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
