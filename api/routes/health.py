"""Liveness for load balancers, and the administrator's status page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import AdminDep, StateDep
from api.routes.lists import ListOut, list_out

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Status(BaseModel):
    node_id: str
    role: str
    index_loaded: bool
    index: dict[str, dict[str, int]]
    index_apply: dict[str, int] = Field(
        description="Committed changes applied to the indexes: calls, changes, "
        "last_us and max_us (commit to matchable)"
    )
    follower: dict[str, Any] = Field(
        description="The log follower: per list the applied and database log sizes, "
        "lag_entries, last_check_ms, apply times and commit-to-applied ms"
    )
    segments: dict[str, Any] | None = Field(
        default=None,
        description="Index segments: generation mapped, where start-up began, merges and swaps.",
    )
    lists: list[ListOut]
    peers: list[dict[str, Any]]
    overlaps: dict[str, Any] = Field(
        default_factory=dict,
        description="Overlap detection: backlog_entries (applied, not yet checked), "
        "counts, timings",
    )


@router.get("/healthz")
def healthz(state: StateDep) -> Health:
    """Unauthenticated liveness: no details."""
    return Health(status="ok" if state.matcher.loaded else "starting")


@router.get("/api/v1/status")
def status(state: StateDep, _admin: AdminDep) -> Status:
    """Lists, sizes, index state and peer health (admin)."""
    peers = state.peer_status() if state.peer_status else []
    return Status(
        node_id=state.settings.node_id,
        role=state.settings.role,
        index_loaded=state.matcher.loaded,
        index=state.matcher.stats(),
        index_apply=state.matcher.apply_stats(),
        follower=state.follower.status(),
        segments=state.segments.status() if state.segments is not None else None,
        lists=[list_out(state, r) for r in state.node.store.all_lists()],
        peers=peers,
        overlaps=state.overlaps.status() if state.overlaps is not None else {},
    )
