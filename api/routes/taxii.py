"""TAXII 2.1 (read only) under ``/taxii2/``: one collection per label the caller may receive.

Discovery ``/taxii2/``, one API root ``/taxii2/hashfed/``, its collections,
and per collection the objects, one object, its versions and the manifest.
Objects are STIX 2.1 indicators (node/feeds/stix.py), dated and ordered so that
``added_after`` (exclusive) and ``next`` never skip or repeat one. Writes
are refused (``can_write`` is false). Requests must accept
``application/taxii+json;version=2.1`` (406 otherwise); HTTP Basic with a
partner token as the password works, as do client certificates. Every
objects or manifest request is audited (principal, label, count).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import PrincipalDep, StateDep
from api.routes.feeds import FeedRoute, FeedServices, ServicesDep
from api.taxii_errors import TAXII_MEDIA_TYPE
from crypto.errors import ForbiddenError
from federation.policy import offered
from node.feeds.errors import UnknownFeedError
from node.feeds.stix import (
    STIX_MEDIA_TYPE,
    Page,
    VersionFilter,
    collection_id,
    format_date_added,
    parse_timestamp,
)
from node.identity.principals import Principal
from node.store import ListRow

# Log entries read that cost as much as one request against the rate limit.
ENTRIES_PER_REQUEST = 2_000
API_ROOT = "hashfed"
# Objects per page: TAXII lets the server cap ``limit``; 1,000 indicators are ~1 MB.
MAX_LIMIT = 1000


def _accepts_taxii(request: Request) -> None:
    """406 unless the Accept header admits TAXII 2.1 JSON (no header admits anything)."""
    header = request.headers.get("accept")
    if header is None:
        return
    for part in header.split(","):
        media, *params = (p.strip().lower() for p in part.split(";"))
        args = dict(p.partition("=")[::2] for p in params)
        if args.get("q") in ("0", "0.0", "0.00", "0.000"):
            continue
        if media in ("*/*", "application/*"):
            return
        if media == "application/taxii+json" and args.get("version", "2.1") == "2.1":
            return
    raise HTTPException(406, f"this server answers {TAXII_MEDIA_TYPE} only")


class TaxiiJSON(JSONResponse):
    """A TAXII 2.1 JSON body (``application/taxii+json;version=2.1``)."""

    media_type = TAXII_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


class TaxiiError(BaseModel):
    """The TAXII 2.1 error resource (§3.6.1)."""

    title: str
    description: str | None = None
    error_id: str | None = None
    error_code: str | None = None
    http_status: str | None = None
    external_details: str | None = None
    details: dict[str, Any] | None = None


router = APIRouter(
    prefix="/taxii2",
    tags=["taxii"],
    route_class=FeedRoute,
    dependencies=[Depends(_accepts_taxii)],
    default_response_class=TaxiiJSON,
    # Errors come from the app's one handler, as TAXII error resources (api/taxii_errors.py).
    responses={
        status: {"model": TaxiiError, "content": {TAXII_MEDIA_TYPE: {}}}
        for status in (400, 401, 403, 404, 406, 409, 410, 413, 422, 429, 500, 503, 507)
    },
)

CollectionPath = Annotated[str, Path(max_length=64)]
ObjectPath = Annotated[str, Path(max_length=128)]


# --- documents (for the OpenAPI schema; bodies are built as dicts) -------------------------


class Discovery(BaseModel):
    title: str
    description: str | None = None
    default: str | None = None
    api_roots: list[str] = Field(default_factory=list)


class ApiRootInfo(BaseModel):
    title: str
    versions: list[str]
    max_content_length: int


class CollectionInfo(BaseModel):
    id: str
    title: str
    description: str | None = None
    alias: str | None = None
    can_read: bool
    can_write: bool
    media_types: list[str] = Field(default_factory=list)


class Collections(BaseModel):
    collections: list[CollectionInfo] = Field(default_factory=list)


class Envelope(BaseModel):
    more: bool
    next: str | None = None
    objects: list[dict[str, Any]] = Field(default_factory=list, description="STIX 2.1 objects")


class ManifestEntry(BaseModel):
    id: str
    date_added: str
    version: str
    media_type: str


class Manifest(BaseModel):
    more: bool
    next: str | None = None
    objects: list[ManifestEntry] = Field(default_factory=list)


class Versions(BaseModel):
    more: bool
    next: str | None = None
    versions: list[str] = Field(default_factory=list)


def _taxii(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return TaxiiJSON(body, headers=headers)


def _labels(state: StateDep, principal: Principal) -> dict[str, list[ListRow]]:
    """Label -> published lists the caller may receive, for every label with any."""
    store = state.node.store
    out: dict[str, list[ListRow]] = {}
    for row in offered(principal, store.all_lists()):
        if store.latest_checkpoint(list_id=row.id) is not None:
            out.setdefault(row.label, []).append(row)
    return out


def _collection(state: StateDep, label: str) -> dict[str, Any]:
    return {
        "id": collection_id(state.node.node_id, label),
        "title": f"hashfed {label}",
        "description": (
            f"Hashes of known child sexual abuse material under the sharing label {label!r} "
            f"on node {state.node.node_id}, as STIX 2.1 indicators; removals are revocations."
        ),
        "alias": label,
        "can_read": True,
        "can_write": False,
        "media_types": [STIX_MEDIA_TYPE],
    }


def _resolve(state: StateDep, principal: Principal, cid: str) -> tuple[str, list[ListRow]]:
    """The label and served lists of collection ``cid`` (its id or its alias, the label).

    An unknown collection and one the caller is not cleared for get the same 404.
    """
    for label, rows in _labels(state, principal).items():
        if cid in (label, collection_id(state.node.node_id, label)):
            return label, rows
    raise UnknownFeedError(label=cid)


@dataclass(frozen=True)
class PageQuery:
    """The paging and ``match[...]`` filters of one TAXII request (each endpoint takes some)."""

    added_after: str | None = None
    limit: int | None = None
    next_: str | None = None
    match_id: str | None = None
    match_type: str | None = None
    match_version: str | None = None
    match_spec_version: str | None = None


def _page(
    services: FeedServices,
    label: str,
    rows: list[ListRow],
    query: PageQuery,
    *,
    version_default: str | None = None,
) -> Page:
    taxii = services.taxii
    after = parse_timestamp(query.added_after, where="added_after") if query.added_after else -1
    if query.next_:
        after = max(after, taxii.open_next(label, query.next_))
    versions = VersionFilter.parse(query.match_version or version_default)
    specs = query.match_spec_version
    if specs and "2.1" not in specs.split(","):
        return Page([], False, None)  # only STIX 2.1 lives here
    types = (
        frozenset(t.strip() for t in query.match_type.split(",")[:20]) if query.match_type else None
    )
    ids = frozenset(i.strip() for i in query.match_id.split(",")[:100]) if query.match_id else None
    return taxii.page(
        label,
        rows,
        after_us=after,
        limit=min(query.limit or MAX_LIMIT, MAX_LIMIT),
        versions=versions,
        ids=ids,
        types=types,
    )


def _headers(page: Page) -> dict[str, str]:
    if not page.items:
        return {}
    return {
        "X-TAXII-Date-Added-First": format_date_added(page.items[0].date_added_us),
        "X-TAXII-Date-Added-Last": format_date_added(page.items[-1].date_added_us),
    }


def _envelope(page: Page) -> Response:
    """The envelope as text: objects come rendered, so a page is joined, not re-encoded."""
    head = '{"more":' + ("true" if page.more else "false")
    if page.next:
        head += ',"next":' + json.dumps(page.next)
    if page.items:
        head += ',"objects":[' + ",".join(i.json for i in page.items) + "]"
    return Response(head + "}", media_type=TAXII_MEDIA_TYPE, headers=_headers(page))


Limit = Annotated[int | None, Query(ge=1)]
AddedAfter = Annotated[str | None, Query(max_length=40)]
Next = Annotated[str | None, Query(alias="next", max_length=1024)]
MatchId = Annotated[str | None, Query(alias="match[id]", max_length=8192)]
MatchType = Annotated[str | None, Query(alias="match[type]", max_length=256)]
MatchVersion = Annotated[str | None, Query(alias="match[version]", max_length=4096)]
MatchSpec = Annotated[str | None, Query(alias="match[spec_version]", max_length=64)]


def _all_filters(
    added_after: AddedAfter = None,
    limit: Limit = None,
    next_: Next = None,
    match_id: MatchId = None,
    match_type: MatchType = None,
    match_version: MatchVersion = None,
    match_spec_version: MatchSpec = None,
) -> PageQuery:
    """What the objects and manifest endpoints accept (TAXII 2.1 §5.4, §5.6)."""
    return PageQuery(
        added_after, limit, next_, match_id, match_type, match_version, match_spec_version
    )


AllFilters = Annotated[PageQuery, Depends(_all_filters)]


@router.get("/", response_model=Discovery)
def discovery(request: Request, state: StateDep, _principal: PrincipalDep) -> Response:
    """TAXII discovery: this server's one API root."""
    root = str(request.base_url) + f"taxii2/{API_ROOT}/"
    return _taxii(
        {
            "title": f"hashfed node {state.node.node_id}",
            "description": "Signed hash lists shared with vetted partners, as STIX 2.1 indicators.",
            "default": root,
            "api_roots": [root],
        }
    )


@router.get(f"/{API_ROOT}/", response_model=ApiRootInfo)
def api_root(state: StateDep, _principal: PrincipalDep) -> Response:
    """The API root: TAXII 2.1, read only."""
    return _taxii(
        {
            "title": f"hashfed node {state.node.node_id}",
            "versions": [TAXII_MEDIA_TYPE],
            "max_content_length": state.settings.limits.max_body_bytes,
        }
    )


@router.get(f"/{API_ROOT}/collections/", response_model=Collections)
def collections(state: StateDep, principal: PrincipalDep) -> Response:
    """One collection per label the caller may receive."""
    labels = sorted(_labels(state, principal))
    return _taxii(
        {"collections": [_collection(state, label) for label in labels]} if labels else {}
    )


@router.get(f"/{API_ROOT}/collections/{{cid}}/", response_model=CollectionInfo)
def collection(cid: CollectionPath, state: StateDep, principal: PrincipalDep) -> Response:
    """One collection."""
    label, _rows = _resolve(state, principal, cid)
    return _taxii(_collection(state, label))


@router.get(f"/{API_ROOT}/collections/{{cid}}/objects/", response_model=Envelope)
def objects(
    cid: CollectionPath,
    state: StateDep,
    principal: PrincipalDep,
    services: ServicesDep,
    query: AllFilters,
) -> Response:
    """Indicators in date_added order, ``limit`` (≤ 1000) at a time."""
    label, rows = _resolve(state, principal, cid)
    page = _page(services, label, rows, query)
    _audit(state, principal, "taxii.objects", label, page)
    return _envelope(page)


@router.get(f"/{API_ROOT}/collections/{{cid}}/manifest/", response_model=Manifest)
def manifest(
    cid: CollectionPath,
    state: StateDep,
    principal: PrincipalDep,
    services: ServicesDep,
    query: AllFilters,
) -> Response:
    """The objects' ids, versions and date_added, without their content."""
    label, rows = _resolve(state, principal, cid)
    page = _page(services, label, rows, query)
    _audit(state, principal, "taxii.manifest", label, page)
    body: dict[str, Any] = {"more": page.more}
    if page.next:
        body["next"] = page.next
    if page.items:
        body["objects"] = [
            {
                "id": i.id,
                "date_added": format_date_added(i.date_added_us),
                "version": i.modified,
                "media_type": STIX_MEDIA_TYPE,
            }
            for i in page.items
        ]
    return _taxii(body, _headers(page))


@router.get(f"/{API_ROOT}/collections/{{cid}}/objects/{{object_id}}/", response_model=Envelope)
def get_object(
    cid: CollectionPath,
    object_id: ObjectPath,
    state: StateDep,
    principal: PrincipalDep,
    services: ServicesDep,
    added_after: AddedAfter = None,
    limit: Limit = None,
    next_: Next = None,
    match_version: MatchVersion = None,
    match_spec_version: MatchSpec = None,
) -> Response:
    """One object's versions (the last by default), scanning the collection in bounded steps."""
    label, rows = _resolve(state, principal, cid)
    query = PageQuery(added_after, limit, next_, object_id, None, match_version, match_spec_version)
    page = _page(services, label, rows, query)
    _audit(state, principal, "taxii.object", label, page)
    if not page.items and not page.more:
        raise HTTPException(404, "no such object in this collection")
    return _envelope(page)


@router.get(
    f"/{API_ROOT}/collections/{{cid}}/objects/{{object_id}}/versions/", response_model=Versions
)
def versions(
    cid: CollectionPath,
    object_id: ObjectPath,
    state: StateDep,
    principal: PrincipalDep,
    services: ServicesDep,
    added_after: AddedAfter = None,
    limit: Limit = None,
    next_: Next = None,
    match_spec_version: MatchSpec = None,
) -> Response:
    """Every version (``modified``) of one object."""
    label, rows = _resolve(state, principal, cid)
    query = PageQuery(added_after, limit, next_, object_id, None, None, match_spec_version)
    page = _page(services, label, rows, query, version_default="all")
    _audit(state, principal, "taxii.versions", label, page)
    if not page.items and not page.more:
        raise HTTPException(404, "no such object in this collection")
    body: dict[str, Any] = {"more": page.more}
    if page.next:
        body["next"] = page.next
    if page.items:
        body["versions"] = [i.modified for i in page.items]
    return _taxii(body, _headers(page))


@router.post(f"/{API_ROOT}/collections/{{cid}}/objects/")
def add_objects(cid: CollectionPath, state: StateDep, principal: PrincipalDep) -> Response:
    """Refused: collections are read only (``can_write`` is false)."""
    _resolve(state, principal, cid)
    raise ForbiddenError(reason="this collection is read only")


@router.delete(f"/{API_ROOT}/collections/{{cid}}/objects/{{object_id}}/")
def delete_object(
    cid: CollectionPath, object_id: ObjectPath, state: StateDep, principal: PrincipalDep
) -> Response:
    """Refused: collections are read only (``can_write`` is false)."""
    _resolve(state, principal, cid)
    raise ForbiddenError(reason="this collection is read only")


def _audit(state: StateDep, principal: Principal, action: str, label: str, page: Page) -> None:
    """Audit a page served, and charge the caller for the log entries read to fill it."""
    if page.scanned > ENTRIES_PER_REQUEST:
        # A selective filter (match[id], match[version]) can read 100,000
        # entries to fill a page of one object: that is paid for, not free.
        state.limiter.charge(principal.name, page.scanned / ENTRIES_PER_REQUEST)
    state.audit.add(
        actor=principal.name, action=action, target=label, count=len(page.items), via=principal.via
    )
