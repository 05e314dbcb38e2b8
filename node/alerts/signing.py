"""HMAC-SHA256 signatures of webhook bodies (the recipe in docs/OPERATIONS.md).

The signed message is ``<timestamp>.<body>``: the receiver checks the
signature, then that the timestamp is recent, so a captured delivery cannot
be replayed later. Pure functions, used by the sender and by receivers.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Hashfed-Signature"
TIMESTAMP_HEADER = "X-Hashfed-Timestamp"
EVENT_HEADER = "X-Hashfed-Event"
DELIVERY_HEADER = "X-Hashfed-Delivery"
_PREFIX = "sha256="


def sign_body(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value: ``sha256=<hex HMAC-SHA256(secret, ts + "." + body)>``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return _PREFIX + mac.hexdigest()


def verify_signature(
    secret: str,
    *,
    timestamp: str,
    signature: str,
    body: bytes,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> bool:
    """Whether ``signature`` is ours over ``body`` and ``timestamp`` is within tolerance."""
    if not timestamp.isdigit() or len(timestamp) > 12:
        return False
    ts = int(timestamp)
    if abs((time.time() if now is None else now) - ts) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign_body(secret, ts, body), signature)
