"""The FastAPI application factory. Nothing is built at import time.

``create_app(settings)`` returns an app whose lifespan opens the node, loads
the indexes from the database, starts the log follower that applies every
commit to them (from this process or any other on the same database), and
runs the background index merge; the routers are included per area.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api import openapi_extras
from api.auth import FailureLimiter, PrincipalCache, RateLimiter
from api.deps import AppState
from api.errors import (
    ERROR_RESPONSES,
    CatchAllMiddleware,
    error_response,
    install_error_handlers,
)
from api.http_cache import CompressionMiddleware
from api.metrics import MetricsMiddleware, NodeMetrics
from api.routes import (
    docs,
    feeds,
    health,
    lists,
    match,
    metrics,
    misp,
    overlaps,
    sightings,
    taxii,
)
from api.taxii_errors import TaxiiErrorMiddleware
from api.ui import router as ui_router
from config import NodeSettings
from crypto.pki import cert_fingerprint, load_certificate
from node.identity.audit import LOST_FILE, AuditBuffer
from node.identity.principals import PRINCIPALS_MARKER
from node.identity.trust import TrustAnchors
from node.match.follower import LogFollower
from node.match.matcher import Matcher
from node.match.segments import SEGMENT_FOLDER, SegmentManager
from node.node import Node
from node.overlaps import OverlapDetector
from node.overlaps.alerting import overlap_alerts

log = logging.getLogger("hashfed.api")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Extra routers (federation, feeds, TAXII) register here when their packages
# are present, so api/ stays the one place that assembles the app.
ExtraRouters = list[Any]
# Paths whose answers are content-coded (gzip, zstd) when the client accepts it.
BULK_PREFIXES = ("/feeds/", "/taxii2/", "/misp/")


class BodyLimitMiddleware:
    """Refuse request bodies over a size before the app reads them.

    A declared ``content-length`` over the bound is refused at once; a
    chunked body is read up to the bound and refused the moment it passes
    it, so the app never sees a partial body (it would answer 400, not 413).
    ``route_limits`` sets a smaller bound for a ``(method, path)``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        route_limits: dict[tuple[str, str], int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.route_limits = route_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.route_limits.get((scope["method"], scope["path"]), self.max_bytes)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(limit)(scope, receive, send)
            return
        if declared is not None or b"transfer-encoding" not in headers:
            # A declared length is enforced by the server; nothing to buffer.
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                await _too_large(limit)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _too_large(limit: int) -> ASGIApp:
    return error_response(413, "too_large", f"request body over {limit} bytes")


def _add_schemas(app: FastAPI, schemas: dict[str, Any]) -> None:
    """Add component schemas that no route declares as a parameter."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            build().setdefault("components", {}).setdefault("schemas", {}).update(schemas)
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]


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
    follower = LogFollower(node.store, matcher)
    segments = SegmentManager(settings.data_dir / SEGMENT_FOLDER, node.store, follower)
    segments.load()
    # This process's own commits apply before the request returns; the
    # follower's thread (started by the lifespan) picks up everyone else's.
    node.on_change(lambda c: follower.note_commit(c.list_id, c.start, c.end, c.changes))
    own = cert_fingerprint(load_certificate(settings.path(settings.tls_cert_file)))
    limiter = RateLimiter(settings.limits.rate_limit_per_second, settings.limits.rate_limit_burst)
    detector = OverlapDetector(
        node.store,
        matcher,
        lists=follower.lists,
        applied=follower.watermark,
        pdq_distance=settings.overlap_pdq_distance,
    )
    detector.listeners.append(overlap_alerts(node.store))
    return AppState(
        overlaps=detector,
        settings=settings,
        node=node,
        matcher=matcher,
        follower=follower,
        own_fingerprint=own,
        limiter=limiter,
        audit=AuditBuffer(node.store, lost_file=settings.data_dir / LOST_FILE).start(),
        principals=PrincipalCache(settings.path(PRINCIPALS_MARKER)),
        anchors=TrustAnchors.from_settings(settings),
        proxy_fingerprints=frozenset(settings.trusted_proxy_fingerprints),
        failures=FailureLimiter(
            settings.limits.auth_failure_burst, settings.limits.auth_failure_refill_seconds
        ),
        segments=segments,
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
        state.metrics = node_metrics
        if node_metrics is not None:
            node_metrics.register_backlog("webhook", the_node.store.pending_deliveries)
            if state.overlaps is not None:
                node_metrics.register_backlog("overlaps", state.overlaps.backlog)
        app.state.hashfed = state
        stop = threading.Event()
        merger = threading.Thread(
            target=_merge_loop, args=(state.matcher, stop, 1.0), name="index-merge", daemon=True
        )
        merger.start()
        state.follower.start()
        if state.segments is not None:
            state.segments.start()
        if state.overlaps is not None:
            state.overlaps.start()
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
            if state.overlaps is not None:
                state.overlaps.stop()
            state.follower.stop()
            if state.segments is not None:
                state.segments.stop()
            merger.join(timeout=5)
            state.audit.close()
            if owned:
                the_node.close()

    app = FastAPI(
        title="hashfed node",
        version="0.1.0",
        summary="Signed hash lists, federated over mutual TLS; match queries answered locally.",
        lifespan=lifespan,
        # Replaced by api/routes/docs.py: for principals only, assets served locally.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    install_error_handlers(app)
    builtin = [
        health.router,
        match.router,
        lists.router,
        feeds.router,
        taxii.router,
        misp.router,
        sightings.router,
        overlaps.router,
        docs.router,
    ]
    builtin.append(ui_router.build_router())
    node_metrics = None
    if settings.metrics:
        node_metrics = NodeMetrics(lambda: getattr(app.state, "hashfed", None))
        app.state.metrics = node_metrics
        builtin.append(metrics.router)
    for router in builtin + list(extra_routers or []):
        app.include_router(router, responses=ERROR_RESPONSES)
    # The hottest request's plain form, first in the one router.
    app.router.routes.insert(0, match.PlainMatchRoute())
    _add_schemas(app, match.openapi_components())
    openapi_extras.install(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.limits.max_body_bytes,
        route_limits={("POST", match.BATCH_PATH): match.batch_body_limit(settings.limits)},
    )
    app.add_middleware(TaxiiErrorMiddleware)
    # Bulk answers only: a match reply is small and latency-bound.
    app.add_middleware(CompressionMiddleware, prefixes=BULK_PREFIXES, suffixes=("/export",))
    if node_metrics is not None:  # outside the body limit: its 413s are counted too
        app.add_middleware(MetricsMiddleware, metrics=node_metrics)
    app.add_middleware(CatchAllMiddleware)  # added last: the outermost
    return app
