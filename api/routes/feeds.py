"""Industry feeds over HTTPS: ``GET /feeds/v1/{label}`` (manifest) and ``.../entries``.

A caller sees a feed made of the lists under that label it may receive
(federation/policy.py, the same rule as catalog and match). An unknown label
and one the caller is not cleared for get the same 404. Every pull is
audited (principal, label, count; never a hash value).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute

from api.deps import PrincipalDep, StateDep
from api.errors import ErrorBody, error_response
from api.http_cache import etag_matches
from crypto.errors import InputError
from federation.policy import offered
from node.feeds.cursor import FEED_SECRET_FILE, load_feed_secret
from node.feeds.errors import BadRequestError, ResyncRequiredError, UnknownFeedError
from node.feeds.feed import FeedList, Feeds
from node.feeds.stix import Taxii
from node.identity.principals import Principal
from node.log.hashes import REGISTRY

NDJSON = "application/x-ndjson"
CURSOR_HEADER = "X-Hashfed-Cursor"

# The feed errors' statuses; the app-wide handler (api/errors.py) has the rest.
FEED_STATUS: list[tuple[type[Exception], int]] = [
    (BadRequestError, 400),
    (UnknownFeedError, 404),
    (ResyncRequiredError, 410),
]


class FeedRoute(APIRoute):
    """Answers the feed errors with their statuses in the uniform error body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        errors = tuple(cls for cls, _ in FEED_STATUS)

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except errors as exc:
                status = next(code for cls, code in FEED_STATUS if isinstance(exc, cls))
                return error_response(status, exc.code, exc.message)  # type: ignore[attr-defined]

        return run


router = APIRouter(
    prefix="/feeds/v1",
    tags=["feeds"],
    route_class=FeedRoute,
    responses={410: {"model": ErrorBody, "description": "The cursor needs a full resync"}},
)
_init_lock = threading.Lock()


class FeedServices:
    """The per-app feed objects, made on first use (the secret file with them)."""

    def __init__(self, feeds: Feeds, taxii: Taxii) -> None:
        self.feeds = feeds
        self.taxii = taxii


def get_services(request: Request, state: StateDep) -> FeedServices:
    services: FeedServices | None = getattr(request.app.state, "hashfed_feeds", None)
    if services is None:
        with _init_lock:
            services = getattr(request.app.state, "hashfed_feeds", None)
            if services is None:
                node = state.node
                secret = load_feed_secret(state.settings.path(FEED_SECRET_FILE))
                services = FeedServices(
                    Feeds(node.store, node_id=node.node_id, secret=secret),
                    Taxii(node.store, node_id=node.node_id, secret=secret),
                )
                request.app.state.hashfed_feeds = services
    return services


ServicesDep = Annotated[FeedServices, Depends(get_services)]
LabelPath = Annotated[str, Path(max_length=64)]


def resolve_feed(
    state: StateDep, services: FeedServices, principal: Principal, label: str
) -> list[FeedList]:
    """The lists of ``label`` the caller may receive; the same 404 for unknown and not cleared."""
    store = state.node.store
    rows = store.all_lists()
    try:
        return services.feeds.lists(label, offered(principal, rows))
    except UnknownFeedError:
        if any(r.label == label for r in rows):
            state.audit.add(
                actor=principal.name, action="feed.denied", target=label, via=principal.via
            )
        raise


@router.get("/{label}", responses={304: {"description": "Unchanged since the ETag given"}})
def manifest(
    label: LabelPath,
    request: Request,
    state: StateDep,
    principal: PrincipalDep,
    services: ServicesDep,
) -> Response:
    """The feed's lists with their signed checkpoints, and the cursor of the current position."""
    fls = resolve_feed(state, services, principal, label)
    etag = services.feeds.etag(label, fls)
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    state.audit.add(
        actor=principal.name,
        action="feed.manifest",
        target=label,
        count=len(fls),
        via=principal.via,
    )
    return JSONResponse(services.feeds.manifest(label, fls), headers=headers)


@router.get(
    "/{label}/entries",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "NDJSON (verifiable), CSV or text, streamed",
            "content": {NDJSON: {}, "text/csv": {}, "text/plain": {}},
        }
    },
)
def entries(
    label: LabelPath,
    state: StateDep,
    principal: PrincipalDep,
    services: ServicesDep,
    fmt: Annotated[Literal["ndjson", "csv", "text"], Query(alias="format")] = "ndjson",
    since: Annotated[str | None, Query(max_length=16_384, description="A cursor")] = None,
    hash_type: Annotated[
        str | None, Query(alias="type", max_length=16, description="Hash type (text format)")
    ] = None,
) -> StreamingResponse:
    """Entries up to each list's signed checkpoint: all of them, or those after ``since``.

    NDJSON is the verifiable form (log entries with the checkpoints that sign
    them); CSV and text are the set (or its changes) for simple consumers.
    """
    if fmt == "text" and hash_type not in REGISTRY:
        raise InputError(f"expected one of {', '.join(REGISTRY)}", where="type")
    fls = resolve_feed(state, services, principal, label)
    feeds = services.feeds
    plan = feeds.plan(label, fls, since)
    cursor = feeds.cursor_for(label, fls)
    count = feeds.count(plan)
    state.audit.add(
        actor=principal.name,
        action="feed.entries",
        target=label,
        count=count,
        format=fmt,
        incremental=since is not None,
        via=principal.via,
    )
    headers = {CURSOR_HEADER: cursor, "X-Hashfed-Entries": str(count)}
    if fmt == "ndjson":
        return StreamingResponse(feeds.ndjson(plan, cursor), media_type=NDJSON, headers=headers)
    if fmt == "csv":
        body = feeds.csv(plan, full=since is None)
        return StreamingResponse(body, media_type="text/csv; charset=utf-8", headers=headers)
    assert hash_type is not None
    body = feeds.text(plan, full=since is None, hash_type=hash_type)
    return StreamingResponse(body, media_type="text/plain; charset=utf-8", headers=headers)
