"""The lock that makes exactly one process per node run the scheduler.

SQLite: an exclusive ``flock`` on ``<data>/scheduler.lock``, dropped by the
kernel when the holder exits, however it exits. PostgreSQL: a session
advisory lock, dropped when the holder's session ends (the server sees the
connection close when the process dies). Either way a killed holder frees
the lock at once, and the next process that tries takes it.
"""

from __future__ import annotations

import fcntl
import os
from typing import Any

from config import PeerSettings
from node.node import Node

__all__ = [
    "LOCK_FILE",
    "LOCK_RETRY_SECONDS",
    "MIN_LOCK_RETRY_SECONDS",
    "SchedulerLock",
    "retry_seconds",
]

# A process without the lock tries again this often at most...
LOCK_RETRY_SECONDS = 15.0
# ...and at least this seldom: each PostgreSQL try opens a session.
MIN_LOCK_RETRY_SECONDS = 1.0
LOCK_FILE = "scheduler.lock"
_ADVISORY_KEY = 0x6861736866656431  # "hashfed1"


def retry_seconds(peers: list[PeerSettings]) -> float:
    """How often a process without the lock retries it.

    Half the shortest interval of a peer we pull from (at most 15 s, at least
    1 s): a holder that dies is replaced, and its peers pulled again, within
    one interval.
    """
    halves = [p.interval_seconds / 2 for p in peers if p.subscribe]
    return max(MIN_LOCK_RETRY_SECONDS, min([LOCK_RETRY_SECONDS, *halves]))


class SchedulerLock:
    """The node's scheduler lock, held by this process or not."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._fd: int | None = None
        self._conn: Any = None

    @property
    def held(self) -> bool:
        return self._fd is not None or self._conn is not None

    def acquire(self) -> bool:
        """Take the lock without waiting: False if another process holds it."""
        if self.held:
            return True
        store = self._node.store
        if store.is_sqlite:
            path = self._node.settings.data_dir / LOCK_FILE
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._fd = fd
            return True
        conn = store.try_advisory_lock(key=_ADVISORY_KEY)
        if conn is None:
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
        if self._conn is not None:
            self._node.store.release_advisory_lock(self._conn)
            self._conn = None
