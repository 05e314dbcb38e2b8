"""What an alert is, who wants it, and the one function that raises one."""

from __future__ import annotations

import json
from typing import Any

from crypto.errors import InputError
from node.store import Store

# overlap: two owners' lists share an entry (raised by the overlap detector);
# sighting: a reporter saw one of this node's entries;
# fork_refused / rollback_refused: a peer offered a list we refused as such;
# list_stale: a list's newest checkpoint is older than its maximum age;
# peer_failing: pulls from a peer have failed for longer than a threshold.
EVENT_TYPES = (
    "overlap",
    "sighting",
    "fork_refused",
    "rollback_refused",
    "list_stale",
    "peer_failing",
)
# The one payload key that may hold hash values; it reaches only webhooks
# configured with include_hashes, and is not even stored when none is.
HASHES_KEY = "hashes"
# A payload is list names and counts; this bounds a caller's mistake.
MAX_PAYLOAD_BYTES = 60_000


def parse_events(text: str) -> list[str]:
    """``"sighting,overlap"`` or ``"*"`` as a sorted list of event types.

    Raises:
        InputError: an unknown event type.
    """
    names = sorted({t.strip() for t in text.split(",") if t.strip()})
    if names == ["*"]:
        return list(EVENT_TYPES)
    bad = [n for n in names if n not in EVENT_TYPES]
    if bad or not names:
        raise InputError(
            f"unknown event type {', '.join(bad) or '(none)'}; one of {', '.join(EVENT_TYPES)}",
            where="--events",
        )
    return names


def emit(
    store: Store,
    event_type: str,
    payload: dict[str, Any],
    *,
    dedupe_key: str | None = None,
) -> int | None:
    """Record an alert and queue it for every webhook that wants ``event_type``.

    ``payload`` carries list names and counts; hash values only under
    :data:`HASHES_KEY`, which is dropped unless a webhook asked for hashes.
    An alert with a ``dedupe_key`` already raised is not raised again (None).
    Cheap when no webhook is configured: one read, no write.

    Raises:
        ValueError: an unknown event type, or a payload too large or not JSON.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    hooks = [h for h in store.webhooks() if {event_type, "*"} & set(h["events"].split(","))]
    if not hooks:
        return None
    if not any(h["include_hashes"] for h in hooks):
        payload = {k: v for k, v in payload.items() if k != HASHES_KEY}
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    if len(body) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"alert payload over {MAX_PAYLOAD_BYTES} bytes")
    return store.add_alert(
        event_type=event_type,
        payload=body,
        dedupe_key=dedupe_key,
        webhook_ids=[h["id"] for h in hooks],
    )
