"""Per-peer health and per-list federation state, as status pages and ``peer ls`` show them.

Read from the database, so the CLI (another process) sees what the running
node's scheduler recorded. Alerts: a list frozen after a fork, a list whose
newest accepted checkpoint is older than the maximum age (stale), an offer
refused.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from node.node import Node

__all__ = ["alerts", "peer_status"]


def peer_status(
    node: Node, *, now_ms: int, now_s: int, running: Collection[str] = ()
) -> list[dict[str, Any]]:
    """One dict per configured peer: settings, health, what it offered us, and alerts.

    A list's alert (frozen, stale) is shown under every peer that offered it.
    """
    store = node.store
    by_list = {a["list"]: a for a in alerts(node, now_s=now_s)}
    health = {h["peer"]: h for h in store.peer_health()}
    offers: dict[str, list[dict[str, Any]]] = {}
    for row in store.list_sync_rows():
        offers.setdefault(row["peer"], []).append(
            {
                "list": f"{row['owner']}/{row['name']}",
                "outcome": row["outcome"],
                "error": row["error_code"],
                "detail": row["detail"],
                "offered_size": row["offered_size"],
                "local_size": row["local_size"],
                "updated_ms": row["updated_ms"],
            }
        )
    out = []
    for peer in node.settings.peers:
        h = health.get(peer.node_id, {})
        out.append(
            {
                "peer": peer.node_id,
                "url": peer.url,
                "labels": list(peer.labels),
                "subscribe": list(peer.subscribe),
                "interval_seconds": peer.interval_seconds,
                "running": peer.node_id in running,
                "last_attempt_ms": h.get("last_attempt_ms"),
                "last_success_ms": h.get("last_success_ms"),
                "last_error_code": h.get("last_error_code"),
                "last_error": h.get("last_error"),
                "failures": h.get("failures", 0),
                "next_attempt_ms": h.get("next_attempt_ms"),
                "lag_entries": h.get("lag_entries", 0),
                "healthy": bool(h)
                and not h.get("failures")
                and h.get("last_success_ms") is not None,
                "lists": offers.get(peer.node_id, []),
                "alerts": [
                    by_list[o["list"]] for o in offers.get(peer.node_id, []) if o["list"] in by_list
                ],
            }
        )
    return out


def alerts(node: Node, *, now_s: int) -> list[dict[str, Any]]:
    """Received lists that are frozen (fork evidence kept) or stale."""
    store = node.store
    max_age = node.settings.max_checkpoint_age_seconds
    out = []
    for row in store.all_lists():
        if row.local:
            continue
        if row.frozen_reason is not None:
            out.append({"list": row.full_name, "alert": "frozen", "detail": row.frozen_reason})
            continue
        cp = store.latest_checkpoint(list_id=row.id)
        if cp is not None and now_s - cp.timestamp > max_age:
            out.append(
                {
                    "list": row.full_name,
                    "alert": "stale",
                    "detail": f"newest checkpoint is {now_s - cp.timestamp}s old "
                    f"(maximum {max_age}s)",
                }
            )
    return out
