"""The files around a segment merge: one merger at a time, and what it leaves behind.

Every serving process on a machine shares one segment folder. A merge takes
an exclusive ``flock`` on ``merge.lock`` there (per machine, whatever the
database: segments are per machine too); a process that cannot take it skips
the merge, since another one is doing it. The kernel drops the lock when its
holder dies, SIGKILL included, so a crash never leaves the folder locked.

A merger holding the lock may remove: ``.tmp`` files (only a merger writes
them, and it holds the lock, so any it finds are from a crash) and every
generation older than the one it just renamed into place. Removing a file a
process still maps is safe: the name goes, the pages stay until the last
mapping does, so an old segment's storage is freed once no process maps it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from node.match.index.segment import generations, segment_name

LOCK_NAME = "merge.lock"


@contextlib.contextmanager
def merge_lock(folder: Path) -> Iterator[bool]:
    """Yields True holding the folder's merge lock, False if another process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def remove_leftovers(folder: Path) -> None:
    """Remove ``.tmp`` files of interrupted merges. Call holding the merge lock."""
    for p in folder.glob("seg-*.hfseg.tmp"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def remove_older(folder: Path, generation: int) -> None:
    """Remove generations below ``generation``. Call holding the merge lock."""
    for g in generations(folder):
        if g < generation:
            with contextlib.suppress(FileNotFoundError):
                (folder / segment_name(g)).unlink()
