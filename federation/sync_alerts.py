"""Alerts raised by pulls: a fork or rollback refused, a list gone stale, a peer failing.

Called by federation/sync.py after it recorded what happened; each raises
through :func:`node.alerts.emit` with a dedupe key, so a peer that offers the
same forked checkpoint every minute raises one alert, not one a minute.
Never raises: an alert that cannot be written is logged, the pull goes on.
"""

from __future__ import annotations

import logging
from typing import Any

from node.alerts import emit
from node.node import Node
from node.store import now_ms

__all__ = ["alert_list_outcome", "alert_peer_health"]

log = logging.getLogger("hashfed.alerts")

_REFUSAL_EVENTS = {"fork": "fork_refused", "rollback": "rollback_refused"}
# Peers that never succeeded have no "since": alert after this many failures.
_NEVER_OK_FAILURES = 3


def alert_list_outcome(
    node: Node,
    *,
    peer: str,
    owner: str,
    name: str,
    outcome: str,
    error_code: str | None,
    offered_size: int,
    offered_timestamp: int,
) -> None:
    full = f"{owner}/{name}"
    try:
        if outcome == "refused" and error_code in _REFUSAL_EVENTS:
            event = _REFUSAL_EVENTS[error_code]
            emit(
                node.store,
                event,
                {"list": full, "peer": peer, "offered_size": offered_size},
                dedupe_key=f"{event}:{full}:{peer}:{offered_size}:{offered_timestamp}",
            )
        elif outcome == "stale":
            emit(
                node.store,
                "list_stale",
                {
                    "list": full,
                    "peer": peer,
                    "checkpoint_timestamp": offered_timestamp,
                    "max_age_seconds": node.settings.max_checkpoint_age_seconds,
                },
                dedupe_key=f"list_stale:{full}:{offered_timestamp}",
            )
    except Exception:  # pragma: no cover - the pull's result stands
        log.exception("alert for %s failed", full)


def alert_peer_health(node: Node, *, peer: str, health: dict[str, Any] | None) -> None:
    """After a failed pull: one alert per failing episode longer than the threshold."""
    if not health or not health.get("failures"):
        return
    since = health.get("last_success_ms")
    threshold_ms = node.settings.alerts.peer_failing_seconds * 1000
    try:
        if since is None:
            if health["failures"] < _NEVER_OK_FAILURES:
                return
        elif now_ms() - since < threshold_ms:
            return
        emit(
            node.store,
            "peer_failing",
            {
                "peer": peer,
                "failures": health["failures"],
                "last_success_ms": since,
                "error": health.get("last_error_code"),
            },
            dedupe_key=f"peer_failing:{peer}:{since or 0}",
        )
    except Exception:  # pragma: no cover - the pull's result stands
        log.exception("peer alert for %s failed", peer)
