"""Read-only queries for the dashboard: type counts, tokens, filtered audit, activity."""

from __future__ import annotations

from sqlalchemy import func, select

from node.store.engine import StoreBase
from node.store.rows import AuditRow
from node.store.tables import _audit, _content

# A page of audit records: enough to read, small enough to render at once.
MAX_AUDIT_PAGE = 1000


class DashboardQueries(StoreBase):
    def content_type_counts(self) -> dict[int, dict[str, int]]:
        """Live hashes per list and hash type (one grouped scan of the content's key)."""
        stmt = select(_content.c.list_id, _content.c.hash_type, func.count()).group_by(
            _content.c.list_id, _content.c.hash_type
        )
        out: dict[int, dict[str, int]] = {}
        with self.read() as conn:
            for list_id, hash_type, n in conn.execute(stmt):
                out.setdefault(int(list_id), {})[str(hash_type)] = int(n)
        return out

    def audit_filtered(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        before_id: int | None = None,
        limit: int = 200,
    ) -> list[AuditRow]:
        """Audit records newest first; ``action`` may end in ``*`` (a prefix)."""
        stmt = select(_audit).order_by(_audit.c.id.desc()).limit(min(limit, MAX_AUDIT_PAGE))
        if actor:
            stmt = stmt.where(_audit.c.actor == actor)
        if action:
            if action.endswith("*"):
                stmt = stmt.where(_audit.c.action.startswith(action[:-1], autoescape=True))
            else:
                stmt = stmt.where(_audit.c.action == action)
        if since_ms is not None:
            stmt = stmt.where(_audit.c.ts_ms >= since_ms)
        if until_ms is not None:
            stmt = stmt.where(_audit.c.ts_ms < until_ms)
        if before_id is not None:
            stmt = stmt.where(_audit.c.id < before_id)
        with self.read() as conn:
            rows = conn.execute(stmt).all()
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

    def audit_activity(self, *, since_ms: int, bucket_ms: int) -> list[tuple[int, str, int]]:
        """Per time bucket: hashes matched and entries synced, from the audit log.

        Returns ``(bucket_start_ms, "match" | "sync", count)`` rows in time order.
        """
        bucket = (_audit.c.ts_ms / bucket_ms).cast(_audit.c.ts_ms.type)
        out: list[tuple[int, str, int]] = []
        with self.read() as conn:
            for name, cond in (
                ("match", _audit.c.action == "match"),
                ("sync", _audit.c.actor.startswith("sync:")),
            ):
                stmt = (
                    select(bucket, func.sum(_audit.c.count))
                    .where(cond, _audit.c.ts_ms >= since_ms)
                    .group_by(bucket)
                )
                out.extend((int(b) * bucket_ms, name, int(n or 0)) for b, n in conn.execute(stmt))
        return sorted(out)
