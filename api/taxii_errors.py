"""TAXII 2.1 error resources (§3.6.1) for every error under ``/taxii2/``.

The app answers every error with ``{"error": code, "detail": message}``
(api/errors.py), wherever it comes from: authentication, rate limits, a
bad filter, an unknown collection. Under ``/taxii2/`` this middleware
rewrites such a body as the error resource TAXII clients parse, with the
TAXII media type::

    {"title": "not found", "description": "…", "error_code": "not_found",
     "http_status": "404"}

Only error bodies are buffered (small, bounded); successful answers pass
through untouched and streaming.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["TAXII_MEDIA_TYPE", "TaxiiErrorMiddleware", "taxii_error"]

TAXII_MEDIA_TYPE = "application/taxii+json;version=2.1"
PREFIX = "/taxii2/"
# An error body is one short JSON object; anything larger is passed on as is.
_MAX_ERROR_BYTES = 64 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def taxii_error(status: int, code: str, detail: str) -> dict[str, str]:
    """The TAXII error resource for one of our errors."""
    return {
        "title": code.replace("_", " "),
        "description": detail,
        "error_code": code,
        "http_status": str(status),
    }


class TaxiiErrorMiddleware:
    """Rewrites JSON error answers under ``/taxii2/`` as TAXII error resources."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []
        size = 0

        async def wrapped(message: Message) -> None:
            nonlocal start, size
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                ctype = headers.get(b"content-type", b"")
                if message["status"] >= 400 and ctype.startswith(b"application/json"):
                    start = message  # hold it until the body is read
                    return
                await send(message)
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if message.get("more_body", False) and size <= _MAX_ERROR_BYTES:
                return
            await _send_error(send, start, b"".join(chunks), message.get("more_body", False))

        await self.app(scope, receive, wrapped)


async def _send_error(send: Send, start: Message, body: bytes, more: bool) -> None:
    status = int(start["status"])
    try:
        parsed = json.loads(body) if not more else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or "error" not in parsed:
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": more})
        return
    resource = taxii_error(status, str(parsed["error"]), str(parsed.get("detail", "")))
    out = json.dumps(resource, separators=(",", ":")).encode()
    headers = [
        (k, v)
        for k, v in start.get("headers") or []
        if k.lower() not in (b"content-type", b"content-length")
    ]
    headers += [
        (b"content-type", TAXII_MEDIA_TYPE.encode()),
        (b"content-length", str(len(out)).encode()),
    ]
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": out, "more_body": False})
