"""A feed as a native MISP feed under ``/misp/v1/{label}/`` (node/feeds/misp.py).

The same visibility as every feed (api/routes/feeds.py): the lists under
that label the caller may receive, and the same 404 for an unknown label and
one the caller is not cleared for. Every fetch is audited (principal,
label, count; never a hash value). Answers carry ETags (304 on
``If-None-Match``) and are gzip- or zstd-coded when MISP asks.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from api.deps import PrincipalDep, StateDep
from api.http_cache import etag_matches
from api.routes.feeds import FeedRoute, LabelPath, ServicesDep, resolve_feed
from node.feeds.errors import UnknownFeedError
from node.feeds.misp import MispFeed

router = APIRouter(prefix="/misp/v1", tags=["misp"], route_class=FeedRoute)
_UUID_JSON = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.json$")
EventPath = Annotated[str, Path(max_length=48)]
_CACHE = {"Cache-Control": "private, no-cache"}


def _not_modified(request: Request, etag: str) -> Response | None:
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={"ETag": etag, **_CACHE})
    return None


@router.get("/{label}/manifest.json", responses={304: {"description": "Unchanged"}})
def manifest(
    label: LabelPath,
    request: Request,
    state: StateDep,
    principal: PrincipalDep,
    services: ServicesDep,
) -> Response:
    """The MISP feed manifest: one event per list, with the time its content last changed."""
    fls = resolve_feed(state, services, principal, label)
    etag = services.feeds.etag(label, fls)
    if (cached := _not_modified(request, etag)) is not None:
        return cached
    state.audit.add(
        actor=principal.name,
        action="misp.manifest",
        target=label,
        count=len(fls),
        via=principal.via,
    )
    body = MispFeed(services.feeds).manifest(label, fls)
    return JSONResponse(body, headers={"ETag": etag, **_CACHE})


@router.get("/{label}/hashes.csv", response_class=StreamingResponse)
def hashes(
    label: LabelPath, state: StateDep, principal: PrincipalDep, services: ServicesDep
) -> StreamingResponse:
    """MISP's feed cache: ``md5(value),event uuid`` for every attribute."""
    fls = resolve_feed(state, services, principal, label)
    state.audit.add(
        actor=principal.name, action="misp.hashes", target=label, count=len(fls), via=principal.via
    )
    body = MispFeed(services.feeds).hashes_csv(fls)
    return StreamingResponse(body, media_type="text/csv; charset=utf-8")


@router.get(
    "/{label}/{event}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/json": {}}}, 304: {"description": "Unchanged"}},
)
def event(
    label: LabelPath,
    event: EventPath,
    request: Request,
    state: StateDep,
    principal: PrincipalDep,
    services: ServicesDep,
) -> Response:
    """One list as one MISP event (``<uuid>.json``), streamed."""
    fls = resolve_feed(state, services, principal, label)
    misp = MispFeed(services.feeds)
    fl = misp.find(fls, event[:-5]) if _UUID_JSON.fullmatch(event) else None
    if fl is None:
        raise UnknownFeedError(label=f"{label}/{event[:48]}")
    etag = misp.etag(fl)
    if (cached := _not_modified(request, etag)) is not None:
        return cached
    state.audit.add(
        actor=principal.name,
        action="misp.event",
        target=fl.name,
        count=services.feeds.live_count(fl),
        via=principal.via,
    )
    return StreamingResponse(
        misp.event(label, fl), media_type="application/json", headers={"ETag": etag, **_CACHE}
    )
