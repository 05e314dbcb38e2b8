"""Sightings (opt-in, relay queue, per-entry counts) and alerts (webhooks, events, outbox).

Rows come back as plain dicts. A sighting's digest and an event's dedupe key
are unique, so a replayed note or a repeated periodic alert is refused by the
database itself, in any process.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from node.store.audit import AuditQueries
from node.store.engine import now_ms


def _t(name: str) -> Any:
    from node.store import models

    return getattr(models, name).__table__


class CaseQueries(AuditQueries):
    # --- opt-in -----------------------------------------------------------------------

    def set_sighting_optin(self, *, principal: str, enabled: bool) -> None:
        table = _t("SightingOptIn")
        with self.write() as conn:
            conn.execute(delete(table).where(table.c.principal == principal))
            if enabled:
                conn.execute(insert(table).values(principal=principal, updated_ms=now_ms()))

    def sighting_optins(self) -> set[str]:
        table = _t("SightingOptIn")
        with self.read() as conn:
            return {r[0] for r in conn.execute(select(table.c.principal))}

    # --- sightings --------------------------------------------------------------------

    def add_sighting(
        self, *, audit: tuple[str, str, str, int, dict[str, Any]] | None = None, **row: Any
    ) -> bool:
        """Store a verified sighting with its audit record; False if its digest was seen before."""
        table = _t("SightingRecord")
        row.setdefault("received_ms", now_ms())
        row.setdefault("attempts", 0)
        row.setdefault("next_attempt_ms", 0)
        try:
            with self.write() as conn:
                conn.execute(insert(table).values(**row))
                if audit is not None:
                    self._append_audit(conn, *audit)
        except IntegrityError:
            return False
        return True

    def add_sightings(self, rows: Sequence[dict[str, Any]]) -> int:
        """Store many verified sightings in one transaction (the bench path); replays skipped."""
        table = _t("SightingRecord")
        with self.read() as conn:
            known = {
                r[0]
                for r in conn.execute(
                    select(table.c.digest).where(table.c.digest.in_([r["digest"] for r in rows]))
                )
            }
        fresh = {r["digest"]: r for r in rows if r["digest"] not in known}
        if fresh:
            with self.write() as conn:
                conn.execute(insert(table), list(fresh.values()))
        return len(fresh)

    def due_forwards(self, *, now: int, limit: int = 200) -> list[dict[str, Any]]:
        table = _t("SightingRecord")
        stmt = (
            select(table)
            .where(table.c.status == "forward", table.c.next_attempt_ms <= now)
            .order_by(table.c.id)
            .limit(limit)
        )
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def forward_done(
        self, *, sighting_id: int, audit: tuple[str, str, str, int, dict[str, Any]]
    ) -> None:
        table = _t("SightingRecord")
        with self.write() as conn:
            conn.execute(
                update(table)
                .where(table.c.id == sighting_id)
                .values(status="forwarded", last_error=None)
            )
            self._append_audit(conn, *audit)

    def forward_failed(self, *, sighting_id: int, error: str, next_attempt_ms: int) -> None:
        table = _t("SightingRecord")
        with self.write() as conn:
            conn.execute(
                update(table)
                .where(table.c.id == sighting_id)
                .values(
                    attempts=table.c.attempts + 1,
                    last_error=error[:500],
                    next_attempt_ms=next_attempt_ms,
                )
            )

    def sighting_counts(self, *, owner: str, name: str | None = None) -> list[dict[str, Any]]:
        """Per list, entry, reporter and disposition: how many sightings were recorded."""
        t = _t("SightingRecord")
        cond = [t.c.status == "recorded", t.c.owner == owner]
        if name is not None:
            cond.append(t.c.name == name)
        stmt = (
            select(
                t.c.name,
                t.c.seq,
                t.c.reporter,
                t.c.disposition,
                func.count().label("count"),
                func.max(t.c.seen_s).label("last_seen_s"),
            )
            .where(*cond)
            .group_by(t.c.name, t.c.seq, t.c.reporter, t.c.disposition)
            .order_by(t.c.name, t.c.seq, t.c.reporter, t.c.disposition)
        )
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def false_positive_entries(
        self, *, owner: str, name: str, threshold: int
    ) -> list[tuple[int, int]]:
        """``(seq, distinct reporters)`` of entries reported false_positive by >= threshold."""
        t = _t("SightingRecord")
        n = func.count(func.distinct(t.c.reporter))
        stmt = (
            select(t.c.seq, n)
            .where(
                t.c.status == "recorded",
                t.c.owner == owner,
                t.c.name == name,
                t.c.disposition == "false_positive",
            )
            .group_by(t.c.seq)
            .having(n >= threshold)
            .order_by(t.c.seq)
        )
        with self.read() as conn:
            return [(int(a), int(b)) for a, b in conn.execute(stmt)]

    def entry_keys(self, *, list_id: int, seqs: Sequence[int]) -> dict[int, tuple[str, str, str]]:
        """``seq -> (op, type, value)`` of the given entries (to remove flagged ones)."""
        from node.store.tables import _entries

        t = _entries
        out: dict[int, tuple[str, str, str]] = {}
        with self.read() as conn:
            for i in range(0, len(seqs), 500):
                chunk = list(seqs[i : i + 500])
                for seq, op, htype, value in conn.execute(
                    select(t.c.seq, t.c.op, t.c.hash_type, t.c.value).where(
                        t.c.list_id == list_id, t.c.seq.in_(chunk)
                    )
                ):
                    out[int(seq)] = (op, htype, value)
        return out

    # --- webhooks ---------------------------------------------------------------------

    def add_webhook(self, *, url: str, events: str, include_hashes: bool, secret: str) -> int:
        table = _t("Webhook")
        with self.write() as conn:
            res = conn.execute(
                insert(table)
                .values(
                    url=url,
                    events=events,
                    include_hashes=include_hashes,
                    secret=secret,
                    created_ms=now_ms(),
                )
                .returning(table.c.id)
            )
            return int(res.scalar_one())

    def webhooks(self) -> list[dict[str, Any]]:
        table = _t("Webhook")
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(select(table).order_by(table.c.id))]

    def remove_webhook(self, *, webhook_id: int) -> bool:
        hooks, deliveries = _t("Webhook"), _t("WebhookDelivery")
        with self.write() as conn:
            conn.execute(delete(deliveries).where(deliveries.c.webhook_id == webhook_id))
            return bool(conn.execute(delete(hooks).where(hooks.c.id == webhook_id)).rowcount)

    # --- events and the outbox --------------------------------------------------------

    def add_alert(
        self, *, event_type: str, payload: str, dedupe_key: str | None, webhook_ids: Sequence[int]
    ) -> int | None:
        """One event and its pending deliveries, in one transaction; None if deduplicated."""
        events, deliveries = _t("AlertEvent"), _t("WebhookDelivery")
        now = now_ms()
        try:
            with self.write() as conn:
                event_id = int(
                    conn.execute(
                        insert(events)
                        .values(
                            event_type=event_type,
                            payload=payload,
                            dedupe_key=dedupe_key,
                            created_ms=now,
                        )
                        .returning(events.c.id)
                    ).scalar_one()
                )
                if webhook_ids:
                    conn.execute(
                        insert(deliveries),
                        [
                            {
                                "webhook_id": w,
                                "event_id": event_id,
                                "status": "pending",
                                "attempts": 0,
                                "next_attempt_ms": now,
                                "lease_until_ms": 0,
                                "created_ms": now,
                            }
                            for w in webhook_ids
                        ],
                    )
        except IntegrityError:
            return None
        return event_id

    def recent_alerts(self, *, since_ms: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Events raised since ``since_ms``, newest first, with their JSON payload parsed."""
        events = _t("AlertEvent")
        stmt = (
            select(events.c.event_type, events.c.payload, events.c.created_ms)
            .where(events.c.created_ms >= since_ms)
            .order_by(events.c.id.desc())
            .limit(limit)
        )
        with self.read() as conn:
            rows = conn.execute(stmt).all()
        return [
            {"event_type": t, "payload": json.loads(p), "created_ms": int(ms)} for t, p, ms in rows
        ]

    def has_alert(self, *, dedupe_key: str) -> bool:
        events = _t("AlertEvent")
        with self.read() as conn:
            return (
                conn.execute(select(events.c.id).where(events.c.dedupe_key == dedupe_key)).first()
                is not None
            )

    def claim_deliveries(self, *, now: int, lease_ms: int, limit: int = 50) -> list[dict[str, Any]]:
        """Due deliveries with their event and webhook, leased to this caller.

        The lease is taken row by row with a conditional update, so two
        processes never send the same delivery at once.
        """
        d, e, w = _t("WebhookDelivery"), _t("AlertEvent"), _t("Webhook")
        stmt = (
            select(
                d.c.id,
                d.c.attempts,
                e.c.id.label("event_id"),
                e.c.event_type,
                e.c.payload,
                e.c.created_ms.label("event_ms"),
                w.c.id.label("webhook_id"),
                w.c.url,
                w.c.secret,
                w.c.include_hashes,
            )
            .join(e, e.c.id == d.c.event_id)
            .join(w, w.c.id == d.c.webhook_id)
            .where(d.c.status == "pending", d.c.next_attempt_ms <= now, d.c.lease_until_ms <= now)
            .order_by(d.c.next_attempt_ms, d.c.id)
            .limit(limit)
        )
        with self.read() as conn:
            rows = [dict(r._mapping) for r in conn.execute(stmt)]
        if not rows:
            return []
        claimed = []
        with self.write() as conn:
            for r in rows:
                got = conn.execute(
                    update(d)
                    .where(d.c.id == r["id"], d.c.status == "pending", d.c.lease_until_ms <= now)
                    .values(lease_until_ms=now + lease_ms)
                ).rowcount
                if got:
                    claimed.append(r)
        return claimed

    def delivery_result(
        self,
        *,
        delivery_id: int,
        delivered: bool,
        status_code: int | None,
        error: str | None,
        next_attempt_ms: int | None,
    ) -> None:
        """Record one attempt: delivered, retried at ``next_attempt_ms``, or failed (None)."""
        d = _t("WebhookDelivery")
        now = now_ms()
        values: dict[str, Any] = {
            "attempts": d.c.attempts + 1,
            "last_status": status_code,
            "last_error": (error or None) and error[:500],
            "lease_until_ms": 0,
        }
        if delivered:
            values.update(status="delivered", delivered_ms=now)
        elif next_attempt_ms is None:
            values.update(status="failed")
        else:
            values.update(next_attempt_ms=next_attempt_ms)
        with self.write() as conn:
            conn.execute(update(d).where(d.c.id == delivery_id).values(**values))

    def deliveries(
        self, *, webhook_id: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        d, e, w = _t("WebhookDelivery"), _t("AlertEvent"), _t("Webhook")
        stmt = (
            select(
                d.c.id,
                d.c.webhook_id,
                w.c.url,
                e.c.event_type,
                d.c.status,
                d.c.attempts,
                d.c.last_status,
                d.c.last_error,
                d.c.created_ms,
                d.c.next_attempt_ms,
                d.c.delivered_ms,
            )
            .join(e, e.c.id == d.c.event_id)
            .join(w, w.c.id == d.c.webhook_id)
            .order_by(d.c.id.desc())
            .limit(limit)
        )
        if webhook_id is not None:
            stmt = stmt.where(d.c.webhook_id == webhook_id)
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def replay_delivery(self, *, delivery_id: int) -> bool:
        """Send a delivery again (delivered or failed): pending, due now."""
        d = _t("WebhookDelivery")
        with self.write() as conn:
            return bool(
                conn.execute(
                    update(d)
                    .where(d.c.id == delivery_id)
                    .values(status="pending", next_attempt_ms=0, lease_until_ms=0)
                ).rowcount
            )

    def pending_deliveries(self) -> int:
        d = _t("WebhookDelivery")
        with self.read() as conn:
            return int(
                conn.execute(select(func.count()).where(d.c.status == "pending")).scalar_one()
            )
