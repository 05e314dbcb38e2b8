"""The FastAPI application factory. Nothing is built at import time.

``create_app(settings)`` returns an app whose lifespan opens the node, loads
the indexes from the database, subscribes them to every committed change,
and runs the background index merge; the routers are included per area.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api.auth import FailureLimiter, PrincipalCache, RateLimiter
from api.deps import AppState
from api.errors import ERROR_RESPONSES, error_response, install_error_handlers
from api.fast_match import FastMatchMiddleware
from api.routes import feeds, health, lists, match, taxii
from config import NodeSettings
from crypto.pki import cert_fingerprint, load_certificate
from node.identity.audit import AuditBuffer
from node.identity.principals import PRINCIPALS_MARKER
from node.identity.trust import TrustAnchors
from node.match.matcher import Matcher
from node.node import Node

log = logging.getLogger("hashfed.api")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Extra routers (federation, feeds, TAXII) register here when their packages
# are present, so api/ stays the one place that assembles the app.
ExtraRouters = list[Any]


class BodyLimitMiddleware:
    """Refuse request bodies over the configured size before they are read whole."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = error_response(413, "too_large", f"request body over {self.max_bytes} bytes")
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            response = error_response(413, "too_large", f"request body over {self.max_bytes} bytes")
            await response(scope, receive, send)


class _TooLarge(Exception):
    pass


def _merge_loop(matcher: Matcher, stop: threading.Event, every: float) -> None:
    # Folding deltas into the main arrays off the request path keeps lookups
    # fast; queries keep reading the old arrays until the swap.
    while not stop.wait(every):
        try:
            matcher.merge()
        except Exception:  # pragma: no cover - logged, the loop must survive
            log.exception("index merge failed")


def build_state(settings: NodeSettings, node: Node) -> AppState:
    """Load indexes and wire change propagation for a node."""
    matcher = Matcher(pdq_min_quality=settings.pdq_min_quality)
    matcher.load(node.store)
    node.on_change(matcher.apply)
    own = cert_fingerprint(load_certificate(settings.path(settings.tls_cert_file)))
    limiter = RateLimiter(settings.limits.rate_limit_per_second, settings.limits.rate_limit_burst)
    return AppState(
        settings=settings,
        node=node,
        matcher=matcher,
        own_fingerprint=own,
        limiter=limiter,
        audit=AuditBuffer(node.store).start(),
        principals=PrincipalCache(settings.path(PRINCIPALS_MARKER)),
        anchors=TrustAnchors.from_settings(settings),
        failures=FailureLimiter(
            settings.limits.auth_failure_burst, settings.limits.auth_failure_refill_seconds
        ),
    )


def create_app(
    settings: NodeSettings,
    *,
    node: Node | None = None,
    extra_routers: ExtraRouters | None = None,
    on_start: Callable[[AppState], Callable[[], None] | None] | None = None,
) -> FastAPI:
    """Build the node's ASGI app.

    ``node`` lets tests pass an open node; ``on_start`` lets the federation
    layer start its scheduler with the shared state and return a stop hook.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = node is None
        the_node = node if node is not None else Node.open(settings)
        state = build_state(settings, the_node)
        app.state.hashfed = state
        stop = threading.Event()
        merger = threading.Thread(
            target=_merge_loop, args=(state.matcher, stop, 1.0), name="index-merge", daemon=True
        )
        merger.start()
        stop_hook = on_start(state) if on_start else None
        # What start-up built lives as long as the process: moved out of the
        # collector's reach, a full collection no longer walks it. Without this,
        # batch requests (10,000 models each) set off a 70 ms full collection
        # every other request.
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # what start-up built is garbage from here on
            if stop_hook:
                stop_hook()
            stop.set()
            merger.join(timeout=5)
            state.audit.close()
            if owned:
                the_node.close()

    app = FastAPI(
        title="hashfed node",
        version="0.1.0",
        summary="Signed hash lists, federated over mutual TLS; match queries answered locally.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    builtin = (health, match, lists, feeds, taxii)
    for router in [m.router for m in builtin] + list(extra_routers or []):
        app.include_router(router, responses=ERROR_RESPONSES)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_body_bytes)
    app.add_middleware(FastMatchMiddleware)
    return app
