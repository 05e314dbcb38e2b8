"""The dashboard at ``/ui``: server-rendered pages over the node's own state.

Who may open it: administrators (every page) and peers (their lists and the
match box), each seeing only the lists the one visibility rule lets them see.
Partners and API tokens are refused (no token scope covers ``/ui``). Pages
load only the node's own assets (``/ui/static``, vendored: see
api/ui/VENDORED.md) under a Content-Security-Policy that allows nothing else,
so the hashes pasted into the match box go to this node and nowhere else.
Every POST carries a CSRF token (api/ui/csrf.py).
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

import jinja2
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from api.deps import PrincipalDep, StateDep
from api.routes.match import HashQuery, run_match
from api.ui import views
from api.ui.csrf import check_csrf, csrf_token
from api.ui.nav import Section, register_section, sections, sections_for
from crypto.errors import ForbiddenError, InputError
from node.identity.principals import Principal

__all__ = ["DashboardAdmin", "DashboardUser", "build_router"]

_HERE = Path(__file__).parent
_STATIC = _HERE / "static"
# Served by name from this fixed set: nothing else of the package is reachable.
_ASSET_TYPES = {
    "htmx.min.js": "text/javascript",
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}
_HEADERS = {
    # Nothing from elsewhere, no inline script, no framing; uPlot sets inline styles.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# The match box: lines per request (a paste, not a bulk job: that is the API's).
MAX_BOX_LINES = 1000
MAX_BOX_BYTES = 256 * 1024
MAX_EXPORT = 100_000

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)

for _s in (
    Section("overview", "Overview", "/ui", roles=("admin", "peer"), order=0),
    Section("lists", "Lists", "/ui/lists", roles=("admin", "peer"), order=10),
    Section("peers", "Peers", "/ui/peers", order=20),
    Section("activity", "Activity", "/ui/activity", order=30),
    Section("audit", "Audit log", "/ui/audit", order=60),
    Section("principals", "Principals", "/ui/principals", order=70),
    Section("match", "Match box", "/ui/match", roles=("admin", "peer"), order=80),
):
    register_section(_s)


async def get_dashboard_user(principal: PrincipalDep) -> Principal:
    if principal.scopes is not None or principal.role not in ("admin", "peer"):
        raise ForbiddenError(reason="the dashboard is for this node's administrators and peers")
    return principal


async def get_dashboard_admin(principal: PrincipalDep) -> Principal:
    if principal.scopes is not None or not principal.is_admin:
        raise ForbiddenError(reason="this page is for this node's administrators")
    return principal


DashboardUser = Annotated[Principal, Depends(get_dashboard_user)]
DashboardAdmin = Annotated[Principal, Depends(get_dashboard_admin)]


def render(
    request: Request,
    state: StateDep,
    principal: Principal,
    template: str,
    active: str,
    **context: Any,
) -> HTMLResponse:
    """A page with the navigation this principal may use and a CSRF token for its forms."""
    html = _env.get_template(template).render(
        node_id=state.settings.node_id,
        principal=principal,
        nav=sections_for(principal),
        active=active,
        csrf=csrf_token(state.settings.path(state.settings.tls_key_file), principal.name),
        **context,
    )
    return HTMLResponse(html, headers=_HEADERS)


def build_router() -> APIRouter:
    """The dashboard's routes, with those of every registered section."""
    import api.ui.cases  # noqa: F401  (registers its sections; it imports this module)

    router = APIRouter(prefix="/ui", include_in_schema=False)
    router.add_api_route("", overview_page, methods=["GET"])
    router.add_api_route("/lists", lists_page, methods=["GET"])
    router.add_api_route("/peers", peers_page, methods=["GET"])
    router.add_api_route("/activity", activity_page, methods=["GET"])
    router.add_api_route("/activity.json", activity_json, methods=["GET"])
    router.add_api_route("/audit", audit_page, methods=["GET"])
    router.add_api_route("/audit/export", audit_export, methods=["GET"])
    router.add_api_route("/principals", principals_page, methods=["GET"])
    router.add_api_route("/match", match_page, methods=["GET"])
    router.add_api_route("/match", match_submit, methods=["POST"])
    router.add_api_route("/static/{name}", asset, methods=["GET"])
    for section in sections():
        if section.router is not None:
            router.include_router(section.router)
    return router


async def overview_page(request: Request, state: StateDep, user: DashboardUser) -> HTMLResponse:
    facts = await run_in_threadpool(views.overview, state, user)
    return render(request, state, user, "overview.html", "overview", facts=facts)


async def lists_page(request: Request, state: StateDep, user: DashboardUser) -> HTMLResponse:
    rows = await run_in_threadpool(views.lists_view, state, user)
    return render(request, state, user, "lists.html", "lists", lists=rows)


async def peers_page(request: Request, state: StateDep, admin: DashboardAdmin) -> HTMLResponse:
    rows = await run_in_threadpool(views.peers_view, state)
    return render(request, state, admin, "peers.html", "peers", peers=rows)


async def activity_page(request: Request, state: StateDep, admin: DashboardAdmin) -> HTMLResponse:
    return render(request, state, admin, "activity.html", "activity")


async def activity_json(
    state: StateDep,
    _admin: DashboardAdmin,
    hours: Annotated[int, Query(ge=1, le=views.MAX_ACTIVITY_HOURS)] = 24,
) -> JSONResponse:
    series = await run_in_threadpool(views.activity_series, state, hours)
    return JSONResponse(series, headers=_HEADERS)


def _audit_query(
    actor: str | None, action: str | None, since: str | None, until: str | None
) -> dict[str, Any]:
    def day_ms(value: str | None, where: str) -> int | None:
        if not value:
            return None
        try:
            return int(time.mktime(time.strptime(value, "%Y-%m-%d")) - time.timezone) * 1000
        except ValueError:
            raise InputError("expected a date as YYYY-MM-DD", where=where) from None

    return {
        "actor": actor or None,
        "action": action or None,
        "since_ms": day_ms(since, "since"),
        "until_ms": day_ms(until, "until"),
    }


AuditText = Annotated[str | None, Query(max_length=200)]


async def audit_page(
    request: Request,
    state: StateDep,
    admin: DashboardAdmin,
    actor: AuditText = None,
    action: AuditText = None,
    since: AuditText = None,
    until: AuditText = None,
    before: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> HTMLResponse:
    query = _audit_query(actor, action, since, until)
    rows = await run_in_threadpool(
        lambda: state.node.store.audit_filtered(**query, before_id=before, limit=limit)
    )
    filters = {
        "actor": actor or "",
        "action": action or "",
        "since": since or "",
        "until": until or "",
    }
    return render(
        request,
        state,
        admin,
        "audit.html",
        "audit",
        records=views.audit_rows(rows),
        filters=filters,
        limit=limit,
        next_before=rows[-1].id if len(rows) == limit else None,
    )


async def audit_export(
    state: StateDep,
    admin: DashboardAdmin,
    actor: AuditText = None,
    action: AuditText = None,
    since: AuditText = None,
    until: AuditText = None,
    fmt: Annotated[str, Query(pattern="^(csv|ndjson)$")] = "csv",
) -> Response:
    query = _audit_query(actor, action, since, until)

    def collect() -> list[Any]:
        out: list[Any] = []
        before = None
        while len(out) < MAX_EXPORT:
            page = state.node.store.audit_filtered(**query, before_id=before, limit=1000)
            out.extend(page)
            if len(page) < 1000:
                break
            before = page[-1].id
        return out[:MAX_EXPORT]

    rows = await run_in_threadpool(collect)
    state.audit.add(actor=admin.name, action="audit.export", count=len(rows), via=admin.via)
    headers = {**_HEADERS, "Content-Disposition": f'attachment; filename="audit.{fmt}"'}
    if fmt == "ndjson":
        return Response(
            views.audit_ndjson(rows), media_type="application/x-ndjson", headers=headers
        )
    buf = io.StringIO()
    records = views.audit_rows(rows)
    fields = ["id", "time", "actor", "action", "target", "count", "detail", "record_hash"]
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    return Response(buf.getvalue(), media_type="text/csv", headers=headers)


async def principals_page(request: Request, state: StateDep, admin: DashboardAdmin) -> HTMLResponse:
    store = state.node.store
    principals = await run_in_threadpool(store.all_principals)
    tokens = await run_in_threadpool(store.all_tokens)
    now = int(time.time() * 1000)
    for t in tokens:
        t["state"] = (
            "revoked"
            if t["revoked"]
            else "expired"
            if t["expires_ms"] and t["expires_ms"] < now
            else "active"
        )
        t["expires"] = (
            time.strftime("%Y-%m-%d", time.gmtime(t["expires_ms"] / 1000))
            if t["expires_ms"]
            else "never"
        )
    return render(
        request,
        state,
        admin,
        "principals.html",
        "principals",
        principals=principals,
        tokens=tokens,
    )


async def match_page(request: Request, state: StateDep, user: DashboardUser) -> HTMLResponse:
    return render(request, state, user, "match.html", "match", results=None, error=None)


def _box_queries(text: str, default_type: str) -> list[HashQuery]:
    """One hash a line, ``value`` or ``type:value``; blank lines and ``#`` comments skipped."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        kind, sep, value = line.partition(":")
        if not sep:
            kind, value = default_type, line
        out.append(HashQuery(type=kind.strip()[:16], value=value.strip()[:2048]))
        if len(out) > MAX_BOX_LINES:
            raise InputError(f"at most {MAX_BOX_LINES} hashes at once", where="hashes")
    if not out:
        raise InputError("paste at least one hash", where="hashes")
    return out


async def match_submit(request: Request, state: StateDep, user: DashboardUser) -> HTMLResponse:
    body = await request.body()
    if len(body) > MAX_BOX_BYTES:
        raise InputError(f"at most {MAX_BOX_BYTES} bytes at once", where="hashes")
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    check_csrf(
        request, state.settings.path(state.settings.tls_key_file), user.name, form.get("csrf")
    )
    error = None
    results = None
    try:
        queries = _box_queries(form.get("hashes", ""), form.get("type", "sha256") or "sha256")
        answer = await run_in_threadpool(run_match, state, user, queries, None, proof=False)
        results = {"queries": answer.queries, "hits": answer.hits, "results": answer.results}
    except InputError as exc:
        error = str(exc)  # names the line (hashes[i]), never the value
    template = "_match_results.html" if request.headers.get("hx-request") else "match.html"
    return render(request, state, user, template, "match", results=results, error=error)


async def asset(name: str, _user: DashboardUser) -> FileResponse:
    media_type = _ASSET_TYPES.get(name)
    if media_type is None:
        raise HTTPException(404, "no such dashboard asset")
    return FileResponse(
        _STATIC / name,
        media_type=media_type,
        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
