"""Relaying sightings one hop toward the list's owner, through federation/client/.

Each queued sighting goes to the peer its list was pulled from; that peer
verifies it again and records it (it owns the list) or queues it for its own
next hop. A failed send is retried with backoff; the queue is a table, so it
survives a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from config import NodeSettings, PeerSettings
from crypto.errors import HashfedError
from federation.client import PeerClient
from federation.peers import find_peer
from node.node import Node
from node.store import now_ms

__all__ = ["relay_due", "retry_delay_ms"]

log = logging.getLogger("hashfed.sightings")

ClientFactory = Callable[[NodeSettings, PeerSettings], PeerClient]


def retry_delay_ms(attempts: int, *, base: float, cap: float) -> int:
    """``base * 2^attempts`` seconds, at most ``cap``, in milliseconds."""
    return int(min(cap, base * (2 ** min(attempts, 30))) * 1000)


def relay_due(
    node: Node, *, client_factory: ClientFactory = PeerClient.for_peer, limit: int = 200
) -> tuple[int, int]:
    """Send every due queued sighting to its next hop: ``(sent, failed)``."""
    sent = failed = 0
    alerts = node.settings.alerts
    clients: dict[str, PeerClient] = {}
    try:
        for row in node.store.due_forwards(now=now_ms(), limit=limit):
            hop = row["next_hop"]
            peer = find_peer(node.settings, hop) if hop else None
            try:
                if peer is None:
                    raise HashfedError(f"next hop {hop!r} is not a configured peer")
                client = clients.get(peer.node_id)
                if client is None:
                    client = clients[peer.node_id] = client_factory(node.settings, peer)
                client.post_sighting(row["note"])
            except HashfedError as exc:
                failed += 1
                delay = retry_delay_ms(
                    row["attempts"], base=alerts.retry_base_seconds, cap=alerts.retry_max_seconds
                )
                node.store.forward_failed(
                    sighting_id=row["id"], error=exc.message, next_attempt_ms=now_ms() + delay
                )
                log.warning("sighting relay to %s failed: %s", hop, exc.message)
                continue
            node.store.forward_done(
                sighting_id=row["id"],
                audit=(
                    "relay",
                    "sighting.forwarded",
                    f"{row['owner']}/{row['name']}",
                    1,
                    {"to": hop, "reporter": row["reporter"]},
                ),
            )
            sent += 1
    finally:
        for c in clients.values():
            c.close()
    return sent, failed
