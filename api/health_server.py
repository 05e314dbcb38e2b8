"""Liveness and readiness on a plain-HTTP port of their own (``health_port``).

A load balancer's or an orchestrator's probe holds no client certificate, so
it cannot use the mutual-TLS port. This small server answers two paths with a
status code and one word, nothing else (no node id, no sizes, no errors):

* ``GET /livez``: 200 while the process serves;
* ``GET /readyz``: 200 when the database answers and this process's index
  holds everything committed (the log follower is running and caught up),
  else 503.

It binds ``health_host`` (loopback by default): whoever can reach it learns
only whether the node is up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from api.deps import AppState

__all__ = ["HealthServer", "is_ready"]

log = logging.getLogger("hashfed.health")

# Entries committed but not yet in this process's index that still count as
# caught up: a commit in flight while the probe runs.
MAX_READY_LAG = 1000


def is_ready(state: AppState) -> bool:
    """Database reachable, index loaded, log follower running and caught up."""
    if not state.matcher.loaded or not state.node.store.ping():
        return False
    status = state.follower.status()
    return bool(status["running"]) and int(status["lag_entries"]) <= MAX_READY_LAG


def _handler(ready: Callable[[], bool]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "hashfed"
        sys_version = ""

        def do_GET(self) -> None:
            if self.path == "/livez":
                self._answer(200, "ok")
            elif self.path == "/readyz":
                ok = ready()
                self._answer(200 if ok else 503, "ready" if ok else "not ready")
            else:
                self._answer(404, "not found")

        def do_HEAD(self) -> None:
            self.do_GET()

        def _answer(self, code: int, word: str) -> None:
            body = (word + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the node's log

    return Handler


class HealthServer:
    """The probe server, in a thread of the serve process."""

    def __init__(self, host: str, port: int, ready: Callable[[], bool]) -> None:
        self._server = ThreadingHTTPServer((host, port), _handler(ready))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    def start(self) -> HealthServer:
        self._thread.start()
        host, port = self._server.server_address[:2]
        log.info("health probes on http://%s:%s (/livez, /readyz)", host, port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
