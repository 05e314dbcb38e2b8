"""Start a real uvicorn mTLS server on 127.0.0.1 for a test, and stop it.

The server runs in a thread of the test process with its own event loop, on a
socket the helper binds itself to port 0, so the port is free by construction
(no pick-then-bind race) and known before the server starts. ``serve_tls`` is
a context manager: on exit it asks uvicorn to shut down, waits for the thread,
and fails the test if the server did not stop.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn

from api._uvicorn_tls import make_uvicorn_config

StrPath = str | os.PathLike[str]

_STARTUP_TIMEOUT = 10.0
_SHUTDOWN_TIMEOUT = 10.0


@dataclass(frozen=True)
class RunningServer:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"


@contextlib.contextmanager
def serve_tls(
    app: Any,
    *,
    cert_file: StrPath,
    key_file: StrPath,
    ca_files: Sequence[StrPath] = (),
    pinned_cert_files: Sequence[StrPath] = (),
    http: str = "auto",
    **config_kw: Any,
) -> Iterator[RunningServer]:
    """Serve ``app`` over mutual TLS on 127.0.0.1 until the block exits.

    Raises:
        RuntimeError: The server did not start or did not stop in time.
    """
    host = "127.0.0.1"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config_kw.setdefault("log_level", "warning")
    config_kw.setdefault("lifespan", "off")
    config_kw.setdefault("timeout_graceful_shutdown", 2)
    config = make_uvicorn_config(
        app,
        host=host,
        port=port,
        cert_file=cert_file,
        key_file=key_file,
        ca_files=ca_files,
        pinned_cert_files=pinned_cert_files,
        http=http,
        **config_kw,
    )
    server = uvicorn.Server(config)
    # uvicorn installs signal handlers only in the main thread, so a thread is safe.
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the uvicorn server exited during startup")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the uvicorn server did not start in {_STARTUP_TIMEOUT}s")
            time.sleep(0.01)
        yield RunningServer(host=host, port=port)
    finally:
        server.should_exit = True
        thread.join(_SHUTDOWN_TIMEOUT)
        sock.close()
        if thread.is_alive():
            server.force_exit = True
            thread.join(_SHUTDOWN_TIMEOUT)
            raise RuntimeError(f"the uvicorn server on port {port} did not stop")
