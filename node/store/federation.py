"""Federation state: peer health, what peers offered, evidence, the scheduler lock."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import (
    Connection,
    delete,
    select,
)

from crypto.errors import StoreError
from node.store.audit import AuditQueries
from node.store.checkpoints import CheckpointQueries
from node.store.engine import now_ms
from node.store.errors import DB_ERRORS


class FederationQueries(AuditQueries, CheckpointQueries):
    # Rows come back as plain dicts.

    def _fed_tables(self) -> tuple[Any, Any]:
        from node.store.models import ListSync, PeerHealth

        return PeerHealth.__table__, ListSync.__table__  # type: ignore[attr-defined]

    def _upsert(
        self,
        conn: Connection,
        table: Any,
        keys: dict[str, Any],
        values: dict[str, Any],
        defaults: dict[str, Any] | None = None,
    ) -> None:
        """Insert ``keys + defaults + values``, or update ``values`` of the existing row."""
        from sqlalchemy.dialects import postgresql, sqlite

        row = {**(defaults or {}), **keys, **values}
        if self.is_sqlite:
            stmt: Any = sqlite.insert(table).values(**row)
        else:
            stmt = postgresql.insert(table).values(**row)
        conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=values))

    def save_peer_health(self, *, peer: str, **values: Any) -> None:
        """Create or update a peer's health row with the given columns."""
        health, _ = self._fed_tables()
        allowed = {
            "last_attempt_ms",
            "last_success_ms",
            "last_error_code",
            "last_error",
            "failures",
            "next_attempt_ms",
            "lag_entries",
        }
        if not set(values) <= allowed:
            raise ValueError(f"cannot set {set(values) - allowed}")
        with self.write() as conn:
            self._upsert(
                conn,
                health,
                {"peer": peer},
                {**values, "updated_ms": now_ms()},
                defaults={"failures": 0, "lag_entries": 0},
            )

    def peer_health(self, *, peer: str | None = None) -> list[dict[str, Any]]:
        """Health rows, of one peer or of all, by peer id."""
        health, _ = self._fed_tables()
        stmt = select(health).order_by(health.c.peer)
        if peer is not None:
            stmt = stmt.where(health.c.peer == peer)
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def save_list_sync(
        self,
        *,
        owner: str,
        name: str,
        peer: str,
        outcome: str,
        error_code: str | None = None,
        detail: str = "",
        offered_size: int = 0,
        offered_timestamp: int = 0,
        local_size: int = 0,
    ) -> None:
        """Record what ``peer`` offered of ``owner/name`` and what became of it."""
        _, sync = self._fed_tables()
        values = {
            "outcome": outcome,
            "error_code": error_code,
            "detail": detail[:1000],
            "offered_size": offered_size,
            "offered_timestamp": offered_timestamp,
            "local_size": local_size,
            "updated_ms": now_ms(),
        }
        with self.write() as conn:
            self._upsert(conn, sync, {"owner": owner, "name": name, "peer": peer}, values)

    def list_sync_rows(self, *, peer: str | None = None) -> list[dict[str, Any]]:
        _, sync = self._fed_tables()
        stmt = select(sync).order_by(sync.c.peer, sync.c.owner, sync.c.name)
        if peer is not None:
            stmt = stmt.where(sync.c.peer == peer)
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def forget_peer(self, *, peer: str) -> None:
        """Drop a removed peer's health and offer records (lists and evidence stay)."""
        health, sync = self._fed_tables()
        with self.write() as conn:
            conn.execute(delete(health).where(health.c.peer == peer))
            conn.execute(delete(sync).where(sync.c.peer == peer))

    def try_advisory_lock(self, *, key: int) -> Connection | None:
        """PostgreSQL: take a session advisory lock on a connection kept open.

        The lock is ``key`` within the connection's current schema, so nodes
        sharing one database in separate schemas hold separate locks.

        Returns the connection holding it (close it to release), or None if
        another session holds it. SQLite has no such lock: callers use a file lock.
        """
        if self.is_sqlite:
            raise StoreError("advisory locks need PostgreSQL")
        conn = self.engine.connect()
        conn.detach()  # closing it must end the session (and the lock), not pool it
        try:
            # Advisory locks are per database, but a node's tables may live in
            # one schema of a shared database: two nodes must not share a lock.
            schema = conn.exec_driver_sql("SELECT current_schema()").scalar() or ""
            lock_key = _schema_lock_key(key, str(schema))
            got = conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({lock_key})").scalar()
            conn.commit()  # the session lock outlives the transaction; do not idle in one
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            return None
        return conn

    def release_advisory_lock(self, conn: Connection) -> None:
        """Release what :meth:`try_advisory_lock` took, at once, and close its connection.

        Closing alone ends the session when the server gets to it: a process
        trying the lock a moment later could still find it held.
        """
        try:
            conn.exec_driver_sql("SELECT pg_advisory_unlock_all()")
            conn.commit()
        except DB_ERRORS:
            pass  # the session is gone, and its locks with it
        finally:
            conn.close()


def _schema_lock_key(key: int, schema: str) -> int:
    """A signed 64-bit advisory lock key for ``key`` within ``schema`` (stable across processes)."""
    digest = hashlib.sha256(f"{key}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
