"""Serving the app with uvicorn over mutual TLS."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import uvicorn

from api._uvicorn_tls import make_uvicorn_config
from api.app import create_app
from api.deps import AppState
from config import NodeSettings


def build_server(
    settings: NodeSettings,
    *,
    extra_routers: list[Any] | None = None,
    on_start: Callable[[AppState], Callable[[], None] | None] | None = None,
    log_level: str = "info",
) -> uvicorn.Server:
    """A uvicorn server for the node, requiring client certificates."""
    app = create_app(settings, extra_routers=extra_routers, on_start=on_start)
    ca_files = [settings.path(p) for p in settings.tls_ca_files]
    own_ca = settings.path("ca/ca.crt")  # a CA made by `hashfed ca init` here is trusted
    if own_ca.exists() and own_ca not in ca_files:
        ca_files.append(own_ca)
    config = make_uvicorn_config(
        app,
        host=settings.host,
        port=settings.port,
        cert_file=settings.path(settings.tls_cert_file),
        key_file=settings.path(settings.tls_key_file),
        ca_files=ca_files,
        # The node's own certificate is always trusted: its operator is admin.
        pinned_cert_files=[settings.path(settings.tls_cert_file)]
        + [settings.path(p) for p in settings.tls_pinned_cert_files],
        require_client_cert=settings.tls_client_auth == "required",
        log_level=log_level,
        access_log=False,  # paths carry hash values (GET /match/{type}/{value})
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


def serve(settings: NodeSettings, **kw: Any) -> None:
    """Run the node until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    build_server(settings, **kw).run()
