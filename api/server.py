"""Serving the app with uvicorn over mutual TLS.

Trust at the TLS layer: federation CAs (``tls_ca_files`` and a CA made here by
``hashfed ca init``), the node's own certificate (its operator is admin), and
pinned self-signed certificates (``tls_pinned_cert_files`` and every file in
``<data>/tls/pinned/``, where ``hashfed principal add --cert`` puts them).
Files that appear in that folder while the node runs are added to the live
context within seconds. Authorisation is separate: every request is mapped
to a registered principal (api/auth.py), so removing one cuts it off at once.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from api._uvicorn_tls import make_uvicorn_config
from api.app import create_app
from api.deps import AppState
from api.health_server import HealthServer, is_ready
from config import NodeSettings
from crypto.pki import load_certificate
from crypto.tls import server_context
from node.identity.trust import PINNED_DIR
from node.identity.trust import ca_files as trusted_ca_files

log = logging.getLogger("hashfed.server")


def _stamp(path: Path) -> tuple[Path, int, int]:
    st = path.stat()
    return path, st.st_mtime_ns, st.st_size


class LiveServerContext:
    """Builds the server SSLContext once and adds pinned certificates to it live."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.pinned_dir = settings.path(PINNED_DIR)
        ca_files = trusted_ca_files(settings)
        # By path and stamp: `principal rm` then `add` under the same name
        # writes a new certificate to the same file, which must be trusted too.
        self.loaded: set[tuple[Path, int, int]] = {_stamp(p) for p in self._pinned_files()}
        # pin our own certificate only when it is
        # self-signed: a CA-issued one cannot be pinned (crypto/tls.py refuses
        # it) and is trusted through its CA instead.
        pinned = _own_pin(settings)
        pinned += [settings.path(p) for p in settings.tls_pinned_cert_files]
        self.ca_files, self.static_pins = ca_files, pinned
        self.context = server_context(
            settings.path(settings.tls_cert_file),
            settings.path(settings.tls_key_file),
            ca_files=ca_files,
            pinned_cert_files=pinned + sorted(p for p, _m, _s in self.loaded),
            require_client_cert=settings.tls_client_auth == "required",
        )

    def _pinned_files(self) -> list[Path]:
        return sorted(self.pinned_dir.glob("*.crt")) if self.pinned_dir.is_dir() else []

    def refresh(self) -> int:
        """Trust certificates added to the pinned folder since the last look."""
        added = 0
        for path in self._pinned_files():
            try:
                stamp = _stamp(path)
            except OSError:
                continue  # removed meanwhile
            if stamp not in self.loaded:
                try:
                    self.context.load_verify_locations(cafile=str(path))
                except (ssl.SSLError, OSError) as exc:
                    log.warning("cannot pin %s: %s", path, exc)
                    continue
                self.loaded.add(stamp)
                added += 1
        return added

    def __call__(self, _config: Any, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return self.context

    def watch(self, stop: threading.Event, every: float = 2.0) -> threading.Thread:
        def loop() -> None:
            while not stop.wait(every):
                self.refresh()

        t = threading.Thread(target=loop, name="pinned-certs", daemon=True)
        t.start()
        return t


def build_server(
    settings: NodeSettings,
    *,
    extra_routers: list[Any] | None = None,
    on_start: Callable[[AppState], Callable[[], None] | None] | None = None,
    log_level: str = "info",
) -> uvicorn.Server:
    """A uvicorn server for the node, requiring client certificates."""
    live = LiveServerContext(settings)

    def start(state: AppState) -> Callable[[], None]:
        stop = threading.Event()
        live.watch(stop)
        probes = None
        if settings.health_port is not None:
            probes = HealthServer(
                settings.health_host, settings.health_port, lambda: is_ready(state)
            ).start()
        inner = on_start(state) if on_start else None

        def stop_all() -> None:
            stop.set()
            if probes:
                probes.stop()
            if inner:
                inner()

        return stop_all

    app = create_app(settings, extra_routers=extra_routers, on_start=start)
    config = make_uvicorn_config(
        app,
        host=settings.host,
        port=settings.port,
        cert_file=settings.path(settings.tls_cert_file),
        key_file=settings.path(settings.tls_key_file),
        ca_files=live.ca_files,  # CA-issued node certificates
        pinned_cert_files=live.static_pins,
        require_client_cert=settings.tls_client_auth == "required",
        context_factory=live,
        log_level=log_level,
        access_log=False,  # paths carry hash values (GET /match/{type}/{value})
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


def _own_pin(settings: NodeSettings) -> list[Path]:
    """Our certificate as a pin if self-signed, else nothing."""
    path = settings.path(settings.tls_cert_file)
    cert = load_certificate(path)
    return [path] if cert.issuer == cert.subject else []


def serve(settings: NodeSettings, *, reuse_port: bool = False, **kw: Any) -> None:
    """Run the node until interrupted.

    ``reuse_port``: listen on a socket other worker processes bind too
    (:mod:`api.workers`).
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = build_server(settings, **kw)
    if reuse_port:
        from api.workers import reuse_port_socket

        server.run(sockets=[reuse_port_socket(settings.host, settings.port)])
    else:
        server.run()
