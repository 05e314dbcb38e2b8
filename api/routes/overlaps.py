"""Overlaps between lists of different owners, as far as the caller may see both lists."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import PrincipalDep, StateDep
from node.identity.visibility import may_see
from node.overlaps import overlap_report, parse_since
from node.store import now_ms

router = APIRouter(prefix="/api/v1/overlaps", tags=["overlaps"])

# Overlaps listed per pair; the count is always the whole pair's.
MAX_PER_PAIR = 1000


class OverlapPair(BaseModel):
    list_a: str
    list_b: str
    count: int
    newest_ms: int
    overlaps: list[dict[str, Any]] = Field(
        description="Newest first: seq_a, seq_b, hash_type, distance, found_ms (no hash values)"
    )


class Overlaps(BaseModel):
    pairs: list[OverlapPair]
    total: int


@router.get("")
def list_overlaps(
    state: StateDep,
    principal: PrincipalDep,
    list_name: Annotated[str | None, Query(alias="list", max_length=170)] = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    per_pair: Annotated[int, Query(ge=0, le=MAX_PER_PAIR)] = 100,
) -> Overlaps:
    """Overlaps by list pair, newest first, between lists the caller may see."""
    pairs = overlap_report(
        state.node.store,
        rows=state.follower.lists(),
        may_see=lambda row: may_see(principal, row),
        list_name=list_name,
        since_ms=parse_since(since, now=now_ms()) if since else None,
        per_pair=per_pair,
    )
    return Overlaps(
        pairs=[OverlapPair(**p.to_json()) for p in pairs], total=sum(p.count for p in pairs)
    )
