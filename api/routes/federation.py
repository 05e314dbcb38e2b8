"""Federation endpoints (``/federation/v1``, peers) and peer administration (``/api/v1/peers``).

A caller not cleared for a list gets the same 404 as for a list that does not
exist, and the denial is audited (federation/serving.py). Handlers are thin:
parse, call federation/, serialise.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import PeerDep, StateDep, get_admin, get_peer
from api.routes.witness import build_router as witness_router
from crypto.errors import InputError
from federation import serving
from federation.protocol import (
    NDJSON,
    Catalog,
    ConsistencyProof,
    InclusionProof,
    NodeInfo,
    NotifyRequest,
    NotifyResponse,
    encode_proof,
)
from federation.scheduler import FederationRuntime

OwnerPath = Annotated[str, Path(max_length=63)]
NamePath = Annotated[str, Path(max_length=100)]
Count = Annotated[int, Query(ge=0, le=2**63 - 1)]


def build_routers(runtime: FederationRuntime | None = None) -> list[APIRouter]:
    """The federation routers; ``runtime`` (the scheduler) serves notify and admin sync."""
    peers = APIRouter(
        prefix="/federation/v1", tags=["federation"], dependencies=[Depends(get_peer)]
    )
    admin = APIRouter(prefix="/api/v1/peers", tags=["peers"], dependencies=[Depends(get_admin)])

    @peers.get("/node")
    def node_info(state: StateDep) -> NodeInfo:
        """This node's id, role and checkpoint-signing keys."""
        return serving.node_info(state.node)

    @peers.get("/lists")
    def catalog(state: StateDep, principal: PeerDep) -> Catalog:
        """The lists the caller may receive, owned and relayed, each with its owner's checkpoint."""
        return serving.catalog(state.node, principal)

    @peers.get("/lists/{owner}/{name}/entries", response_class=StreamingResponse)
    def entries(
        owner: OwnerPath,
        name: NamePath,
        state: StateDep,
        principal: PeerDep,
        start: Count = 0,
        limit: Annotated[int, Query(ge=1)] = 1000,
    ) -> StreamingResponse:
        """Entries ``[start, start+limit)`` in seq order as NDJSON, up to the checkpoint size."""
        served = serving.resolve(
            state.node, principal, owner, name, directory=state.follower, audit=state.audit
        )
        end = serving.check_range(served, start, limit, state.settings.limits.max_page_entries)
        state.node.audit(
            actor=principal.name,
            action="federation.entries",
            target=served.row.full_name,
            count=end - start,
            detail={"start": start},
        )
        return StreamingResponse(
            serving.entry_lines(state.node, served, start, end), media_type=NDJSON
        )

    @peers.get("/lists/{owner}/{name}/proof/consistency")
    def consistency(
        owner: OwnerPath,
        name: NamePath,
        state: StateDep,
        principal: PeerDep,
        size1: Annotated[int, Query(alias="from", ge=0)],
        size2: Annotated[int, Query(alias="to", ge=0)],
    ) -> ConsistencyProof:
        """Proof that the tree of ``from`` entries is a prefix of the tree of ``to`` entries."""
        served = serving.resolve(
            state.node, principal, owner, name, directory=state.follower, audit=state.audit
        )
        if not size1 <= size2 <= served.size:
            raise InputError(f"expected 0 <= from <= to <= {served.size}", where="from")
        proof = state.proofs.consistency(
            state.node.store, list_id=served.row.id, size1=size1, size2=size2
        )
        return ConsistencyProof(size1=size1, size2=size2, proof=encode_proof(proof))

    @peers.get("/lists/{owner}/{name}/proof/inclusion")
    def inclusion(
        owner: OwnerPath,
        name: NamePath,
        state: StateDep,
        principal: PeerDep,
        index: Annotated[int, Query(ge=0)],
        size: Annotated[int, Query(ge=1)],
    ) -> InclusionProof:
        """Proof that entry ``index`` is in the tree of ``size`` entries."""
        served = serving.resolve(
            state.node, principal, owner, name, directory=state.follower, audit=state.audit
        )
        if not index < size <= served.size:
            raise InputError(f"expected 0 <= index < size <= {served.size}", where="size")
        proof = state.proofs.inclusion(
            state.node.store, list_id=served.row.id, index=index, size=size
        )
        return InclusionProof(index=index, size=size, proof=encode_proof(proof))

    @peers.post("/notify", status_code=202)
    def notify(body: NotifyRequest, state: StateDep, principal: PeerDep) -> NotifyResponse:
        """A peer has a new checkpoint: pull it now (coalesced, at most one pull queued)."""
        scheduled = runtime.trigger(principal.name) if runtime is not None else False
        state.node.audit(
            actor=principal.name,
            action="federation.notify",
            target=f"{body.owner}/{body.name}",
            count=body.size,
            detail={"scheduled": scheduled},
        )
        return NotifyResponse(scheduled=scheduled)

    @admin.get("")
    def peer_health(state: StateDep) -> list[dict[str, Any]]:
        """Every configured peer with its pull health and what it offers."""
        return state.peer_status() if state.peer_status else []

    @admin.post("/{peer}/sync")
    async def sync_peer(peer: OwnerPath) -> dict[str, Any]:
        """Pull one peer now and return the report (waits for a pull already running)."""
        if runtime is None:
            raise InputError("federation is not running in this process", where="peer")
        report = await run_in_threadpool(runtime.pull_now, peer)
        return report.to_dict()

    return [peers, admin, witness_router()]
