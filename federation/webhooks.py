"""Delivering alerts to webhooks: signed JSON POSTs, retried with backoff, recorded.

The one module besides federation/client/ that dials out: webhook
receivers are not peers (no mutual TLS, no federation certificate), so the
peer client's checks do not apply; tests/unit/test_layering.py names it.

Each attempt is one row update in the outbox (node/store/cases.py): a
delivery is leased while it is sent, so several serve processes never send
it twice at once; a failure schedules the next attempt (``retry_base_seconds
* 2^attempt``, at most ``retry_max_seconds``) until ``max_attempts``, after
which it is ``failed`` and can be replayed by hand.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx

from config import AlertSettings
from federation.sightings import retry_delay_ms
from node.alerts import HASHES_KEY, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_body
from node.alerts.signing import DELIVERY_HEADER, EVENT_HEADER
from node.store import Store, now_ms

__all__ = ["deliver_due", "render_body"]

log = logging.getLogger("hashfed.webhooks")

# A receiver answers at once and works later; ten seconds is generous.
_TIMEOUT_SECONDS = 10.0
# A delivery is leased for the attempt and its timeout, with a margin.
_LEASE_MS = 30_000
# Only the status matters; a receiver's body is not read beyond this.
_MAX_ANSWER_BYTES = 4096


def render_body(row: dict[str, Any], node_id: str) -> bytes:
    """The JSON body of one delivery (hash values only if the webhook asked for them)."""
    data = json.loads(row["payload"])
    if not row["include_hashes"]:
        data.pop(HASHES_KEY, None)
    body = {
        "id": row["event_id"],
        "type": row["event_type"],
        "node": node_id,
        "created_ms": row["event_ms"],
        "data": data,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def deliver_due(
    store: Store, settings: AlertSettings, *, node_id: str, client: httpx.Client | None = None
) -> tuple[int, int]:
    """Attempt every due delivery once: ``(delivered, failed attempts)``."""
    rows = store.claim_deliveries(now=now_ms(), lease_ms=_LEASE_MS)
    if not rows:
        return 0, 0
    own = client is None
    http = client or httpx.Client(timeout=_TIMEOUT_SECONDS, follow_redirects=False, trust_env=False)
    ok = bad = 0
    try:
        for row in rows:
            if _attempt(store, settings, http, row, node_id):
                ok += 1
            else:
                bad += 1
    finally:
        if own:
            http.close()
    return ok, bad


def _attempt(
    store: Store,
    settings: AlertSettings,
    http: httpx.Client,
    row: dict[str, Any],
    node_id: str,
) -> bool:
    body = render_body(row, node_id)
    ts = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "hashfed-webhook/1",
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: sign_body(row["secret"], ts, body),
        EVENT_HEADER: row["event_type"],
        DELIVERY_HEADER: str(row["id"]),
    }
    status: int | None = None
    error: str | None = None
    try:
        with http.stream("POST", row["url"], content=body, headers=headers) as resp:
            status = resp.status_code
            read = 0
            for chunk in resp.iter_bytes():
                read += len(chunk)
                if read > _MAX_ANSWER_BYTES:
                    break
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {str(exc)[:200]}"
    except OSError as exc:
        error = f"{type(exc).__name__}: {str(exc)[:200]}"
    if error is None:
        store.delivery_result(
            delivery_id=row["id"],
            delivered=True,
            status_code=status,
            error=None,
            next_attempt_ms=None,
        )
        return True
    attempts = row["attempts"] + 1
    next_ms = (
        None
        if attempts >= settings.max_attempts
        else now_ms()
        + retry_delay_ms(
            row["attempts"], base=settings.retry_base_seconds, cap=settings.retry_max_seconds
        )
    )
    store.delivery_result(
        delivery_id=row["id"],
        delivered=False,
        status_code=status,
        error=error,
        next_attempt_ms=next_ms,
    )
    log.warning("webhook %s delivery %s failed: %s", row["webhook_id"], row["id"], error)
    return False
