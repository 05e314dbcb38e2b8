"""The database as a change feed: list sizes, and a wake-up when anyone commits.

Every serving process follows the log of every list by watermark
(:mod:`node.match.follower`). What it needs from the database is here,
because only node/store/ talks to the database:

- :meth:`ChangeQueries.list_sizes`: every list's log size in one query;
- :meth:`ChangeQueries.watch_changes`: a :class:`ChangeWatch` whose
  :meth:`~ChangeWatch.wait` returns as soon as some connection, in this
  process or another, may have committed.

SQLite: a dedicated connection polls ``PRAGMA data_version``, which changes
when any other connection commits to the file (~µs per poll). PostgreSQL:
``LISTEN`` on a channel that a trigger on ``list_state`` notifies at commit
(migration 0003); the caller's watermark poll covers a lost connection.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from typing import Any, Protocol

from sqlalchemy import insert, select

from node.store.engine import StoreBase, now_ms
from node.store.tables import _identity, _state

log = logging.getLogger("hashfed.store")

# The channel migration 0003's trigger notifies; the payload is the schema of
# the list_state table, so nodes sharing one PostgreSQL database in separate
# schemas do not wake each other.
CHANGE_CHANNEL = "hashfed_list_state"
# SQLite: how often the dedicated connection reads data_version.
SQLITE_POLL_SECONDS = 0.05
# PostgreSQL: longest single wait for a notification, so a stop is noticed.
_PG_SLICE_SECONDS = 0.25


class ChangeWatch(Protocol):
    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` s; True if a commit may have happened since the last call."""

    def close(self) -> None: ...


class ChangeQueries(StoreBase):
    def list_sizes(self) -> dict[int, int]:
        """Every list's log size, ``list_id -> size``, in one query."""
        with self.read() as conn:
            rows = conn.execute(select(_state.c.list_id, _state.c.size)).all()
        return {int(lid): int(size) for lid, size in rows}

    def database_id(self) -> str:
        """This database's random id (made by migration 0011; made here if the row is gone).

        Files derived from the database (index segments) record it, so one
        written against another database is never trusted.
        """
        with self.read() as conn:
            value = conn.execute(select(_identity.c.value).where(_identity.c.id == 1)).scalar()
        if value is not None:
            return str(value)
        # Another process may make it first: then its row wins.
        with contextlib.suppress(Exception), self.write() as conn:
            conn.execute(
                insert(_identity).values(id=1, value=secrets.token_hex(16), created_ms=now_ms())
            )
        with self.read() as conn:
            return str(
                conn.execute(select(_identity.c.value).where(_identity.c.id == 1)).scalar_one()
            )

    def watch_changes(self) -> ChangeWatch:
        """A watch for commits by anyone (close it when done)."""
        if self.is_sqlite:
            return _SqliteWatch(self)
        return _PostgresWatch(self)


class _SqliteWatch:
    """``PRAGMA data_version`` on one connection that does nothing else."""

    def __init__(self, store: StoreBase) -> None:
        self._store = store
        self._conn: Any = None
        self._version: int | None = None

    def _read(self) -> int:
        if self._conn is None:
            self._conn = self._store.engine.raw_connection()
        cur = self._conn.cursor()
        try:
            cur.execute("PRAGMA data_version")
            return int(cur.fetchone()[0])
        finally:
            cur.close()

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            try:
                version = self._read()
            except Exception:
                # A broken connection: reopen on the next call; the caller polls.
                log.warning("change watch: cannot read data_version; reconnecting")
                self._drop()
                return True
            if version != self._version:
                # The first read sets the baseline and also says "changed": a
                # commit made before it (while the caller was checking) would
                # otherwise be seen by no one until the next poll.
                self._version = version
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(SQLITE_POLL_SECONDS, left))

    def _drop(self) -> None:
        conn, self._conn, self._version = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken
                conn.invalidate()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class _PostgresWatch:
    """``LISTEN`` on :data:`CHANGE_CHANNEL`, filtered to this schema's notifications."""

    def __init__(self, store: StoreBase) -> None:
        self._store = store
        self._conn: Any = None
        self._schema = ""
        self._retry_at = 0.0
        self.backend_pid: int | None = None  # of the LISTEN connection, for operators

    def _connect(self) -> Any:
        raw = self._store.engine.raw_connection()
        try:
            driver = raw.driver_connection
            assert driver is not None
            driver.autocommit = True
            self._schema = str(driver.execute("SELECT current_schema()").fetchone()[0])
            driver.execute(f"LISTEN {CHANGE_CHANNEL}")
            self.backend_pid = int(driver.info.backend_pid)
        except Exception:
            raw.invalidate()
            raise
        return raw

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if self._conn is None:
            if time.monotonic() < self._retry_at:
                time.sleep(max(0.0, min(timeout, self._retry_at - time.monotonic())))
                return True
            try:
                self._conn = self._connect()
            except Exception:
                log.warning("change watch: cannot LISTEN; polling until the database is back")
                self._retry_at = time.monotonic() + 1.0
                return True
            # Whatever was committed before LISTEN took effect is unseen.
            return True
        seen = False
        try:
            driver = self._conn.driver_connection
            while not seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                for n in driver.notifies(timeout=min(_PG_SLICE_SECONDS, left)):
                    if n.payload == self._schema:
                        seen = True
                        break  # at once: the generator would wait out its timeout
        except Exception:
            log.warning("change watch: LISTEN connection lost; reconnecting")
            self._drop()
            return True
        return seen

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken
                conn.invalidate()

    def close(self) -> None:
        # A LISTENing, autocommit connection must not go back to the pool.
        self._drop()
