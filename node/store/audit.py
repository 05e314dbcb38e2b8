"""The audit chain's records."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    select,
)

from node.store.engine import StoreBase, now_ms
from node.store.rows import (
    AuditRow,
)
from node.store.tables import (
    _audit,
)

AUDIT_GENESIS = b"\x00" * 32


def audit_record_hash(
    prev_hash: bytes, ts_ms: int, actor: str, action: str, target: str, count: int, detail: str
) -> bytes:
    """SHA-256 over the previous record's hash and this record's canonical JSON."""
    body = json.dumps(
        [ts_ms, actor, action, target, count, detail], separators=(",", ":"), ensure_ascii=False
    ).encode()
    return hashlib.sha256(prev_hash + body).digest()


class AuditQueries(StoreBase):
    def _append_audit(
        self,
        conn: Connection,
        actor: str,
        action: str,
        target: str,
        count: int,
        detail: dict[str, Any],
    ) -> None:
        self._append_audit_chain(conn, [(actor, action, target, count, detail)])

    def _append_audit_chain(
        self, conn: Connection, records: Sequence[tuple[str, str, str, int, dict[str, Any]]]
    ) -> None:
        if not self.is_sqlite:
            # One chain: concurrent writers must not both extend the same record.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7214321)")
        prev = conn.execute(
            select(_audit.c.record_hash).order_by(_audit.c.id.desc()).limit(1)
        ).scalar()
        prev_hash = bytes(prev) if prev is not None else AUDIT_GENESIS
        rows = []
        for actor, action, target, count, detail in records:
            ts = now_ms()
            detail_s = json.dumps(detail, sort_keys=True, separators=(",", ":"))
            record_hash = audit_record_hash(prev_hash, ts, actor, action, target, count, detail_s)
            rows.append(
                {
                    "ts_ms": ts,
                    "actor": actor,
                    "action": action,
                    "target": target,
                    "count": count,
                    "detail": detail_s,
                    "prev_hash": prev_hash,
                    "record_hash": record_hash,
                }
            )
            prev_hash = record_hash
        # ids ascend in list order within one statement on both backends.
        conn.execute(_audit.insert(), rows)

    def append_audit(
        self, *, actor: str, action: str, target: str = "", count: int = 0, detail: dict[str, Any]
    ) -> None:
        with self.write() as conn:
            self._append_audit(conn, actor, action, target, count, detail)

    def append_audit_many(
        self, records: Sequence[tuple[str, str, str, int, dict[str, Any]]]
    ) -> None:
        """Append several ``(actor, action, target, count, detail)`` records, chained, at once."""
        if records:
            with self.write() as conn:
                self._append_audit_chain(conn, records)

    def audit_records(
        self,
        *,
        after_id: int = 0,
        limit: int = 1000,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        newest_first: bool = False,
    ) -> list[AuditRow]:
        """Records in id order, filtered: ``action`` ending in ``.*`` matches a prefix."""
        query = select(_audit).where(_audit.c.id > after_id)
        if actor is not None:
            query = query.where(_audit.c.actor == actor)
        if action is not None:
            if action.endswith("*"):
                query = query.where(_audit.c.action.startswith(action[:-1], autoescape=True))
            else:
                query = query.where(_audit.c.action == action)
        if target is not None:
            query = query.where(_audit.c.target == target)
        if since_ms is not None:
            query = query.where(_audit.c.ts_ms >= since_ms)
        if until_ms is not None:
            query = query.where(_audit.c.ts_ms < until_ms)
        order = _audit.c.id.desc() if newest_first else _audit.c.id
        with self.read() as conn:
            rows = conn.execute(query.order_by(order).limit(limit)).all()
        return [
            AuditRow(
                **{
                    **r._mapping,
                    "prev_hash": bytes(r.prev_hash),
                    "record_hash": bytes(r.record_hash),
                }
            )
            for r in rows
        ]
