"""Bounds on what a connection may make the server hold before the app sees a request.

httptools keeps an unfinished header line in memory however long it grows
(measured: four connections sending 64 MiB of one header held 360 MB and
starved ``/healthz`` for 15 s), and uvicorn has no timeout for a request
whose headers or body stall. :class:`BoundedHttpTools` adds to uvicorn's
httptools protocol, checked on the bytes as they arrive:

* the request line and headers together: at most :data:`MAX_HEAD_BYTES`,
  at most :data:`MAX_HEADERS` header lines — else ``431`` and the connection
  is closed;
* the head must be complete within :data:`HEAD_TIMEOUT_SECONDS` of its first
  byte, and a body may not pause longer than :data:`BODY_IDLE_SECONDS`
  between two reads — else the connection is closed (``408`` if nothing was
  answered yet).

The h11 protocol has ``h11_max_incomplete_event_size`` for the same head
bound; :func:`uvicorn_bounds` returns the config options for both.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "BODY_IDLE_SECONDS",
    "HEAD_TIMEOUT_SECONDS",
    "MAX_HEADERS",
    "MAX_HEAD_BYTES",
    "BoundedHttpTools",
    "uvicorn_bounds",
]

# nginx's default large_client_header_buffers is 4 x 8 KiB; 64 KiB leaves room
# for a client certificate forwarded in a header by a proxy.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100  # Apache's LimitRequestFields default
HEAD_TIMEOUT_SECONDS = 10.0
BODY_IDLE_SECONDS = 10.0
_END_OF_HEAD = b"\r\n\r\n"


def uvicorn_bounds() -> dict[str, Any]:
    """``uvicorn.Config`` options that bound the h11 protocol alike."""
    return {"h11_max_incomplete_event_size": MAX_HEAD_BYTES}


def _error(status: int, reason: bytes, code: str, detail: str) -> bytes:
    body = json.dumps({"error": code, "detail": detail}).encode()
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n" % (status, reason, len(body))
    ) + body


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with head size, header count and stall bounds."""

    _head_bytes = 0
    _headers_seen = 0
    _in_head = True
    _tail = b""
    _timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            if self._timer is None:  # the first byte of a head starts its clock
                self._arm(HEAD_TIMEOUT_SECONDS)
            # Only bytes before the end of the head count: a body may follow
            # in the same read.
            end = (self._tail + data).find(_END_OF_HEAD)
            counted = len(data) if end < 0 else max(0, end + len(_END_OF_HEAD) - len(self._tail))
            self._head_bytes += counted
            self._tail = data[-3:]
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse_head(f"request line and headers over {MAX_HEAD_BYTES} bytes")
                return
        elif self._timer is not None:
            self._arm(BODY_IDLE_SECONDS)  # the body is moving
        super().data_received(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers_seen += 1
        if self._headers_seen > MAX_HEADERS:
            self._refuse_head(f"more than {MAX_HEADERS} header lines")
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head, self._tail = False, b""
        if self.transport.is_closing():
            return
        self._arm(BODY_IDLE_SECONDS)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        # Whatever arrives next is the head of the next request.
        self._in_head, self._head_bytes, self._headers_seen, self._tail = True, 0, 0, b""
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # --- timers and refusals -----------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._stalled)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _stalled(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        answered = self.cycle is not None and self.cycle.response_started
        if not answered and (self._in_head or self.cycle is not None):
            self.transport.write(
                _error(408, b"Request Timeout", "timeout", "the request stalled; send it whole")
            )
        self.transport.close()

    def _refuse_head(self, detail: str) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(
                _error(431, b"Request Header Fields Too Large", "headers_too_large", detail)
            )
            self.transport.close()
