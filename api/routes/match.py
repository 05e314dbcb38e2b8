"""Matching: ``POST /api/v1/match`` (batch) and ``GET /api/v1/match/{type}/{value}``.

Answers never echo query values (the caller knows them by index), never name
a list the caller is not cleared for, and every request is audited with the
caller, the count and the number of hits — not the hashes. Requests without
a hit are summed per caller a few times a second; each request with a hit
keeps a record of its own.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match, Route
from starlette.types import Scope

from api.deps import AppState, PrincipalDep, StateDep, identify_caller
from config.settings import Limits
from crypto.errors import InputError
from node.identity.principals import Principal
from node.identity.visibility import may_see
from node.log.hashes import parse_many
from node.match.matcher import Hit
from node.match.matcher import Query as MatchQuery
from node.store import CheckpointRow

router = APIRouter(prefix="/api/v1", tags=["match"])

# Near matching beyond 31 bits leaves the multi-index's exact range and scans;
# such batches are kept small.
MAX_EXACT_RANGE_DISTANCE = 31
MAX_WIDE_BATCH = 100
BATCH_PATH = "/api/v1/match"
# A PhotoDNA hash in base64 with its JSON takes ~230 bytes; sha256 ~85.
BATCH_BYTES_PER_HASH = 256
# Inclusion proofs that cost as much as one request against the rate limit.
PROOFS_PER_REQUEST = 50


class HashQuery(BaseModel):
    type: str = Field(max_length=16, description="md5, sha1, sha256, pdq, photodna")
    value: str = Field(max_length=2048, description="hex for hex types; opaque types as printed")
    quality: int | None = Field(None, ge=0, le=100, description="PDQ quality, if known")


class MatchRequest(BaseModel):
    hashes: list[HashQuery] = Field(min_length=1, max_length=100_000)
    max_distance: int | None = Field(None, ge=0, le=64, description="PDQ bits; default 31")


class CheckpointOut(BaseModel):
    size: int
    root_hash: str
    timestamp: int
    note: str


class ProofOut(BaseModel):
    leaf_index: int
    tree_size: int
    timestamp_ms: int
    hashes: list[str]


class HitOut(BaseModel):
    list: str
    owner: str
    label: str
    category: str
    type: str
    distance: int
    value: str | None = Field(
        None,
        description="A near hit's stored value (canonical hex), to recompute the distance; "
        "null for an exact hit, whose stored value is the query's",
    )
    frozen: bool
    checkpoint: CheckpointOut | None = Field(
        description="The newest signed checkpoint covering this hash; null if not yet published"
    )
    proof: ProofOut | None = None


class ResultOut(BaseModel):
    index: int
    hits: list[HitOut]


class MatchResponse(BaseModel):
    queries: int
    hits: int
    results: list[ResultOut] = Field(
        description="One entry per query that hit, in query order; ``index`` is its "
        "position in the request. Queries without hits are left out."
    )


def _checkpoint_out(cp: CheckpointRow) -> CheckpointOut:
    return CheckpointOut(
        size=cp.size, root_hash=cp.root_hash.hex(), timestamp=cp.timestamp, note=cp.note
    )


def run_match(
    state: AppState,
    principal: Principal,
    hashes: list[HashQuery],
    max_distance: int | None,
    *,
    proof: bool,
) -> MatchResponse:
    limits = state.settings.limits
    if len(hashes) > limits.max_batch:
        raise InputError(f"at most {limits.max_batch} hashes per request", where="hashes")
    distance = state.settings.pdq_default_max_distance if max_distance is None else max_distance
    if distance > MAX_EXACT_RANGE_DISTANCE and len(hashes) > MAX_WIDE_BATCH:
        raise InputError(
            f"max_distance above {MAX_EXACT_RANGE_DISTANCE} allows at most {MAX_WIDE_BATCH} hashes",
            where="max_distance",
        )
    by_type: dict[str, list[int]] = defaultdict(list)
    for i, q in enumerate(hashes):
        by_type[q.type.strip().lower()].append(i)
    queries: list[MatchQuery] = [MatchQuery("", "")] * len(hashes)
    for type_name, idxs in by_type.items():
        canonical = parse_many(type_name, [hashes[i].value for i in idxs], idxs, where="hashes")
        for i, value in zip(idxs, canonical, strict=True):
            queries[i] = MatchQuery(type_name, value, hashes[i].quality)

    raw_hits = state.matcher.match(queries, max_distance=distance)
    store = state.node.store
    # Who may see what is decided in memory, before anything is read per list:
    # a hit in a list the caller may not see costs what a miss costs.
    rows = state.follower.lists()
    visible = {
        lid: row
        for lid in {h.list_id for h in raw_hits}
        if (row := rows.get(lid)) is not None and may_see(principal, row)
    }
    hits = [h for h in raw_hits if h.list_id in visible]

    # Which entry added each hit, to name the checkpoint that covers it. A
    # near hit is looked up by the code it matched, not by the query.
    def stored(h: Hit) -> str:
        return h.stored if h.stored is not None else queries[h.query_index].value

    seqs: dict[tuple[int, str, str], tuple[str, int]] = {}
    by_list: dict[int, set[tuple[str, str]]] = defaultdict(set)
    for h in hits:
        by_list[h.list_id].add((h.hash_type, stored(h)))
    for list_id, keys in by_list.items():
        for key, added in store.existing_content(list_id=list_id, keys=keys).items():
            seqs[(list_id, *key)] = added
    checkpoints = {lid: store.latest_checkpoint(list_id=lid) for lid in by_list}

    results: dict[int, ResultOut] = {}
    proofs = 0
    for h in hits:
        row = visible[h.list_id]
        found = seqs.get((h.list_id, h.hash_type, stored(h)))
        cp = checkpoints.get(h.list_id)
        # ``found`` is None only if the entry was removed since the index
        # answered: the hit is then named under the list's newest checkpoint.
        covered = cp is not None and (found is None or found[1] < cp.size)
        hit = HitOut(
            list=row.full_name,
            owner=row.owner,
            label=row.label,
            category=h.category,
            type=h.hash_type,
            distance=h.distance,
            value=h.stored,
            frozen=row.frozen_reason is not None,
            checkpoint=_checkpoint_out(cp) if covered and cp is not None else None,
        )
        if proof and covered and cp is not None and found is not None:
            leaf = found[1]
            entry = next(store.iter_entries(list_id=h.list_id, start=leaf, end=leaf + 1))
            path = state.proofs.inclusion(store, list_id=h.list_id, index=leaf, size=cp.size)
            proofs += 1
            hit.proof = ProofOut(
                leaf_index=leaf,
                tree_size=cp.size,
                timestamp_ms=entry[5],
                hashes=[p.hex() for p in path],
            )
        results.setdefault(h.query_index, ResultOut(index=h.query_index, hits=[])).hits.append(hit)

    if proofs:
        # A proof is a tree walk and ~1 KB out: duplicates in one batch must not
        # turn one request into megabytes of proofs for the price of one.
        state.limiter.charge(principal.name, proofs / PROOFS_PER_REQUEST)
    # Queries that hit nothing are summed per flush (see AuditBuffer); each hit is kept.
    state.audit.add(
        actor=principal.name,
        action="match",
        count=len(queries),
        aggregate=not hits,
        hits=len(hits),
        via=principal.via,
    )
    if state.metrics is not None:
        state.metrics.matched(len(queries), len(hits))
    return MatchResponse(
        queries=len(queries), hits=len(hits), results=[results[i] for i in sorted(results)]
    )


def openapi_components() -> dict[str, Any]:
    """The batch request's schemas: the route parses its body itself (:func:`_parse_batch`)."""
    schema = MatchRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    return {**schema.pop("$defs", {}), "MatchRequest": schema}


def batch_body_limit(limits: Limits) -> int:
    """The largest batch body accepted: what ``max_batch`` hashes take, on average."""
    return min(limits.max_body_bytes, limits.max_batch * BATCH_BYTES_PER_HASH + 4096)


def _parse_batch(raw: bytes, limits: Limits) -> MatchRequest:
    """The request, its length checked before a model is built for each hash.

    Building 100,000 models costs a core for a second; a JSON parse and a
    count cost a few milliseconds.
    """
    try:
        doc = json.loads(raw)
    except ValueError:
        raise InputError("expected a JSON object", where="request") from None
    hashes = doc.get("hashes") if isinstance(doc, dict) else None
    if isinstance(hashes, list) and len(hashes) > limits.max_batch:
        raise InputError(f"at most {limits.max_batch} hashes per request", where="hashes")
    try:
        return MatchRequest.model_validate(doc)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None


@router.post(
    BATCH_PATH.removeprefix(router.prefix),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/MatchRequest"}}
            },
        }
    },
)
async def match_batch(
    request: Request,
    principal: PrincipalDep,
    state: StateDep,
    proof: Annotated[bool, Query(description="Add an inclusion proof to each hit")] = False,
) -> MatchResponse:
    """Match a batch of hashes against every list the caller is cleared for."""
    body = _parse_batch(await request.body(), state.settings.limits)
    return await run_in_threadpool(
        run_match, state, principal, body.hashes, body.max_distance, proof=proof
    )


MAX_TYPE_LENGTH = 16
MAX_VALUE_LENGTH = 2048


class PlainMatchRoute(Route):
    """``GET /api/v1/match/{type}/{value}`` without a query string, answered directly.

    Industry filters look up one hash at a time, thousands of times a second;
    FastAPI's dependency resolution and response validation cost more than
    the lookup (6 µs). This route stands first in the app's one router and
    matches only the plain form within the route's bounds; anything else
    (a query string, an over-long part) falls through to :func:`match_one`.
    It authenticates, charges and matches through the same functions, and
    its errors go through the app's exception handlers, so refusals are the
    route's own.
    """

    def __init__(self) -> None:
        super().__init__(
            f"{router.prefix}/match/{{hash_type}}/{{value}}", _plain_match, methods=["GET"]
        )

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get("query_string"):
            return Match.NONE, {}
        match, child = super().matches(scope)
        params = child.get("path_params", {})
        if match is Match.FULL and not (
            0 < len(params["hash_type"]) <= MAX_TYPE_LENGTH
            and 0 < len(params["value"]) <= MAX_VALUE_LENGTH
        ):
            return Match.NONE, {}
        child["route"] = self  # as FastAPI's routes do: metrics label by template
        return match, child


async def _plain_match(request: Request) -> Response:
    state: AppState = request.app.state.hashfed
    principal = identify_caller(request, state)
    query = [HashQuery(type=request.path_params["hash_type"], value=request.path_params["value"])]
    answer = run_match(state, principal, query, None, proof=False)
    return Response(answer.model_dump_json(), media_type="application/json")


@router.get("/match/{hash_type}/{value}")
async def match_one(
    hash_type: Annotated[str, Path(max_length=MAX_TYPE_LENGTH)],
    value: Annotated[str, Path(max_length=MAX_VALUE_LENGTH)],
    principal: PrincipalDep,
    state: StateDep,
    max_distance: Annotated[int | None, Query(ge=0, le=64)] = None,
    proof: bool = False,
) -> MatchResponse:
    """Match one hash."""
    query = [HashQuery(type=hash_type, value=value)]
    if proof:  # a first proof of a large list builds its tree: not on the event loop
        return await run_in_threadpool(run_match, state, principal, query, max_distance, proof=True)
    # One lookup takes microseconds; a thread hop would cost more than the work.
    return run_match(state, principal, query, max_distance, proof=False)
