"""What each dashboard page shows, as plain dicts: no hash value, ever.

Lists are filtered by the one visibility rule (``visible_lists``); the other
pages are for administrators only, so they are not filtered.
"""

from __future__ import annotations

import json
import time
from typing import Any

from api.deps import AppState
from node.identity.principals import Principal
from node.identity.visibility import visible_lists
from node.store import AuditRow

# Charts: how far back, and how many points at most.
MAX_ACTIVITY_HOURS = 24 * 30
ACTIVITY_POINTS = 240
# The peers page's alerts column: how far back.
PEER_ALERT_DAYS = 7


def age_text(ms: int | None, now_ms: int | None = None) -> str:
    if not ms:
        return "never"
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    s = max(0, (now - ms) // 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s // size} {unit} ago"
    return f"{s} s ago"


def lists_view(state: AppState, principal: Principal) -> list[dict[str, Any]]:
    store = state.node.store
    rows = visible_lists(principal, store.all_lists())
    by_type = store.content_type_counts()
    max_age_ms = state.settings.max_checkpoint_age_seconds * 1000
    now = int(time.time() * 1000)
    out = []
    for row in sorted(rows.values(), key=lambda r: r.full_name):
        st = store.get_state(list_id=row.id)
        cp = store.latest_checkpoint(list_id=row.id)
        stamp = cp.timestamp * 1000 if cp else None
        if stamp is None:
            fresh = "unpublished"
        else:
            fresh = "fresh" if now - stamp <= max_age_ms else "stale"
        out.append(
            {
                "name": row.full_name,
                "owner": row.owner,
                "label": row.label,
                "local": row.local,
                "source": "this node" if row.local else (row.source_peer or ""),
                "size": st.size,
                "hashes": st.live_count,
                "by_type": by_type.get(row.id, {}),
                "checkpoint_size": cp.size if cp else None,
                "published": age_text(stamp, now),
                "freshness": fresh,
                "frozen": row.frozen_reason,
            }
        )
    return out


def peers_view(state: AppState) -> list[dict[str, Any]]:
    store = state.node.store
    health = {str(h["peer"]): h for h in store.peer_health()}
    offers: dict[str, list[dict[str, Any]]] = {}
    for r in store.list_sync_rows():
        offers.setdefault(str(r["peer"]), []).append(r)
    configured = {p.node_id: p for p in state.settings.peers}
    alerts = peer_alerts(state)
    out = []
    for peer in sorted(set(health) | set(configured) | set(offers) | set(alerts)):
        h = health.get(peer, {})
        failures = int(h.get("failures") or 0)
        refused = [o for o in offers.get(peer, []) if o["outcome"] not in ("ok", "unchanged")]
        out.append(
            {
                "peer": peer,
                "url": configured[peer].url if peer in configured else "",
                "health": "failing"
                if failures
                else ("ok" if h.get("last_success_ms") else "unknown"),
                "failures": failures,
                "last_success": age_text(h.get("last_success_ms")),
                "last_attempt": age_text(h.get("last_attempt_ms")),
                "last_error": h.get("last_error_code") or "",
                "lag": int(h.get("lag_entries") or 0),
                "offers": offers.get(peer, []),
                "evidence": refused,
                "alerts": alerts.get(peer, []),
            }
        )
    return out


def peer_alerts(state: AppState, now_ms: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """Per peer, the alerts about it of the last week (fork or rollback refused, stale, failing).

    Newest first. Alerts are recorded only while a webhook wants them
    (``hashfed webhook add``); without one the column stays empty.
    """
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    out: dict[str, list[dict[str, Any]]] = {}
    for a in state.node.store.recent_alerts(since_ms=now - PEER_ALERT_DAYS * 86_400_000):
        peer = a["payload"].get("peer") if isinstance(a["payload"], dict) else None
        if isinstance(peer, str):
            out.setdefault(peer, []).append(
                {"event": a["event_type"], "when": age_text(a["created_ms"], now)}
            )
    return out


def audit_rows(rows: list[AuditRow]) -> list[dict[str, Any]]:
    return [
        {
            "id": r.id,
            "ts_ms": r.ts_ms,
            "time": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.ts_ms / 1000)),
            "actor": r.actor,
            "action": r.action,
            "target": r.target,
            "count": r.count,
            "detail": r.detail,
            "record_hash": r.record_hash.hex(),
        }
        for r in rows
    ]


def audit_ndjson(rows: list[AuditRow]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in audit_rows(rows))


def activity_series(state: AppState, hours: int) -> dict[str, list[float]]:
    """Hashes matched and entries synced per time bucket, for the charts (uPlot's columns)."""
    hours = max(1, min(hours, MAX_ACTIVITY_HOURS))
    now = int(time.time() * 1000)
    bucket = max(60_000, hours * 3_600_000 // ACTIVITY_POINTS)
    start = (now - hours * 3_600_000) // bucket * bucket
    rows = state.node.store.audit_activity(since_ms=start, bucket_ms=bucket)
    slots = list(range(start, now + 1, bucket))
    index = {t: i for i, t in enumerate(slots)}
    match = [0.0] * len(slots)
    sync = [0.0] * len(slots)
    for t, kind, n in rows:
        i = index.get(t)
        if i is not None:
            (match if kind == "match" else sync)[i] += n
    return {"t": [t / 1000 for t in slots], "match": match, "sync": sync}


def overview(state: AppState, principal: Principal) -> dict[str, Any]:
    lists = lists_view(state, principal)
    follower = state.follower.status()
    return {
        "lists": len(lists),
        "hashes": sum(x["hashes"] for x in lists),
        "stale": sum(1 for x in lists if x["freshness"] == "stale"),
        "frozen": sum(1 for x in lists if x["frozen"]),
        "index_loaded": state.matcher.loaded,
        "apply_lag": follower["lag_entries"],
        "audit_backlog": state.audit.pending,
        "peers": len(state.node.store.peer_health()) if principal.is_admin else None,
    }
