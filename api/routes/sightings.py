"""Sightings over the federation (``POST /federation/v1/sightings``) and the owner's view.

A peer or partner that was opted in (``hashfed principal sightings NAME on``)
sends a signed sighting; this node verifies it and records it, or queues it
for the next hop toward the owner. Per-principal rate limit:
``sightings.per_minute``.
"""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import PrincipalDep, StateDep, get_admin
from crypto.sighting import MAX_SIGHTING_NOTE_BYTES
from node.sightings import accept, flagged_entries, sighting_stats

router = APIRouter(tags=["sightings"])


class SightingRequest(BaseModel):
    """One signed sighting note (docs/PROTOCOL.md, "Sightings")."""

    note: str = Field(max_length=MAX_SIGHTING_NOTE_BYTES)


class SightingResponse(BaseModel):
    """``recorded``: this node owns the list; ``forward``: queued for the next hop."""

    status: str
    next_hop: str | None = None


class _PerMinute:
    """A fixed one-minute window per principal (per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}

    def allow(self, who: str, limit: int) -> bool:
        minute = int(time.monotonic() // 60)
        with self._lock:
            start, count = self._windows.get(who, (minute, 0))
            if start != minute:
                start, count = minute, 0
            if count >= limit:
                return False
            self._windows[who] = (start, count + 1)
            return True


_limiter = _PerMinute()


@router.post("/federation/v1/sightings", status_code=201)
async def post_sighting(
    body: SightingRequest, state: StateDep, principal: PrincipalDep
) -> SightingResponse:
    """Take a signed sighting: verified, replay-checked, then recorded or relayed to the owner."""
    if not _limiter.allow(principal.name, state.settings.sightings.per_minute):
        raise HTTPException(429, "sighting rate limit exceeded", headers={"Retry-After": "60"})
    got = await run_in_threadpool(
        accept, state.node, body.note, via=principal.name, principal=principal
    )
    return SightingResponse(status=got.status, next_hop=got.next_hop)


@router.get("/api/v1/sightings", dependencies=[Depends(get_admin)])
def get_stats(
    state: StateDep, list_name: Annotated[str | None, Query(alias="list", max_length=170)] = None
) -> dict[str, Any]:
    """How often and by whom this node's entries were seen, per list and per entry."""
    return sighting_stats(state.node, list_name)


@router.get("/api/v1/sightings/review", dependencies=[Depends(get_admin)])
def get_review(
    state: StateDep, list_name: Annotated[str, Query(alias="list", max_length=170)]
) -> list[dict[str, Any]]:
    """Entries of a list enough distinct reporters called false_positive."""
    return flagged_entries(state.node, list_name)
