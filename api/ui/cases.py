"""The dashboard's case pages: overlaps between lists, and sightings of this node's lists.

Both reuse what the API answers with (``GET /api/v1/overlaps``,
``GET /api/v1/sightings`` and ``/review``), under the same visibility rule:
overlaps only between lists the caller may see both of, sightings for the
administrators only. No page shows a hash value: entries are named by list
and seq. Removing flagged entries is the same call as
``hashfed list review L --remove-flagged``, behind the dashboard's CSRF token.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from api.deps import AppState, StateDep
from api.ui.csrf import check_csrf
from api.ui.nav import Section, register_section
from api.ui.router import DashboardAdmin, DashboardUser, render
from api.ui.views import age_text
from crypto.errors import InputError
from node.identity.principals import Principal
from node.identity.visibility import may_see
from node.overlaps import overlap_report
from node.sightings import flagged_entries, remove_flagged, sighting_stats

__all__ = ["router"]

# Overlaps shown per pair; the count is always the whole pair's.
PER_PAIR = 20
MAX_FORM_BYTES = 4096

router = APIRouter()


def overlaps_view(state: AppState, user: Principal) -> list[dict[str, Any]]:
    pairs = overlap_report(
        state.node.store,
        rows=state.follower.lists(),
        may_see=lambda row: may_see(user, row),
        per_pair=PER_PAIR,
    )
    out = []
    for p in pairs:
        doc = p.to_json()
        doc["newest"] = age_text(p.newest_ms)
        for o in doc["overlaps"]:
            o["found"] = age_text(o["found_ms"])
        out.append(doc)
    return out


@router.get("/overlaps")
async def overlaps_page(request: Request, state: StateDep, user: DashboardUser) -> HTMLResponse:
    pairs = await run_in_threadpool(overlaps_view, state, user)
    return render(
        request,
        state,
        user,
        "overlaps.html",
        "overlaps",
        pairs=pairs,
        total=sum(p["count"] for p in pairs),
        per_pair=PER_PAIR,
    )


def sightings_view(state: AppState) -> list[dict[str, Any]]:
    stats: list[dict[str, Any]] = sighting_stats(state.node)["lists"]
    for lst in stats:
        try:
            lst["flagged"] = flagged_entries(state.node, lst["list"])
        except InputError:  # the list went away since the sightings were counted
            lst["flagged"] = []
        lst["removable"] = sum(1 for f in lst["flagged"] if f["in_list"])
        for e in lst["entries"]:
            e["last_seen"] = age_text(e.get("last_seen_s", 0) * 1000)
    return stats


async def _sightings(
    request: Request, state: StateDep, admin: DashboardAdmin, notice: str | None
) -> HTMLResponse:
    lists = await run_in_threadpool(sightings_view, state)
    threshold = state.settings.sightings.false_positive_threshold
    return render(
        request,
        state,
        admin,
        "sightings.html",
        "sightings",
        lists=lists,
        threshold=threshold,
        notice=notice,
    )


@router.get("/sightings")
async def sightings_page(request: Request, state: StateDep, admin: DashboardAdmin) -> HTMLResponse:
    return await _sightings(request, state, admin, None)


@router.post("/sightings/remove-flagged")
async def remove_flagged_submit(
    request: Request, state: StateDep, admin: DashboardAdmin
) -> HTMLResponse:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise InputError(f"at most {MAX_FORM_BYTES} bytes", where="form")
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    check_csrf(
        request, state.settings.path(state.settings.tls_key_file), admin.name, form.get("csrf")
    )
    name = form.get("list", "")
    if not name:
        raise InputError("name the list", where="list")
    result = await run_in_threadpool(remove_flagged, state.node, name, actor=admin.name)
    n = result.appended if result else 0
    notice = f"Removed {n} flagged entries from {name}; publish to sign the change."
    return await _sightings(request, state, admin, notice)


register_section(Section("overlaps", "Overlaps", "/ui/overlaps", roles=("admin", "peer"), order=40))
register_section(Section("sightings", "Sightings", "/ui/sightings", router=router, order=50))
