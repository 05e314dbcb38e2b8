"""Alerts: events written to an outbox, delivered to webhooks as signed JSON.

:func:`emit` is the one way to raise an alert, from any part of the node
(sightings, refused forks, stale lists, failing peers, overlaps); delivery
runs in the serve process that holds the scheduler (federation/webhooks.py).
"""

from __future__ import annotations

from node.alerts.events import EVENT_TYPES, HASHES_KEY, emit, parse_events
from node.alerts.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign_body,
    verify_signature,
)

__all__ = [
    "EVENT_TYPES",
    "HASHES_KEY",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "emit",
    "parse_events",
    "sign_body",
    "verify_signature",
]
