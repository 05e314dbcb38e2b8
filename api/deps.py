"""FastAPI dependencies: the node, the caller, and role checks as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from api.auth import FailureLimiter, PrincipalCache, RateLimiter, authenticate, require_role
from api.metrics import NodeMetrics
from config import NodeSettings
from crypto.errors import NotAuthenticatedError
from node.identity.audit import AuditBuffer
from node.identity.principals import Principal
from node.identity.trust import TrustAnchors
from node.log.proofs import ProofCache
from node.match.follower import LogFollower
from node.match.matcher import Matcher
from node.match.segments import SegmentManager
from node.node import Node
from node.overlaps import OverlapDetector


@dataclass
class AppState:
    """Everything the routes share, built once by the app's lifespan."""

    settings: NodeSettings
    node: Node
    matcher: Matcher
    follower: LogFollower
    own_fingerprint: str
    limiter: RateLimiter
    audit: AuditBuffer
    principals: PrincipalCache
    anchors: TrustAnchors
    failures: FailureLimiter
    proofs: ProofCache = field(default_factory=ProofCache)
    # Certificates whose connections may forward a client's certificate in a header.
    proxy_fingerprints: frozenset[str] = frozenset()
    # Set by the federation layer when it runs: per-peer health for /status.
    peer_status: Callable[[], list[dict[str, Any]]] | None = None
    # Index segments in the data folder: started by the lifespan.
    segments: SegmentManager | None = None
    # Prometheus metrics (api/metrics.py), None when turned off.
    metrics: NodeMetrics | None = None
    # Overlap detection (its listeners hear of each batch of new overlaps).
    overlaps: OverlapDetector | None = None


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.hashfed
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def identify_caller(request: Request, state: AppState) -> Principal:
    """The caller's principal, charged one request against its rate limit.

    Raises:
        NotAuthenticatedError, ForbiddenError: see :func:`api.auth.authenticate`.
        HTTPException: 429, the caller is over its rate limit, or its address
            failed to log in too often.
    """
    source = request.client.host if request.client else "unknown"
    wait = state.failures.retry_after(source)
    if wait:
        raise HTTPException(
            429, "too many failed logins from this address", headers={"Retry-After": str(wait)}
        )
    try:
        principal = authenticate(
            request,
            store=state.node.store,
            own_fingerprint=state.own_fingerprint,
            proxy_header=state.settings.trusted_proxy_cert_header,
            cache=state.principals,
            anchors=state.anchors,
            proxy_fingerprints=state.proxy_fingerprints,
        )
    except NotAuthenticatedError:
        state.failures.failed(source)
        raise
    if not state.limiter.allow(principal.name):
        raise HTTPException(429, "rate limit exceeded; retry shortly", headers={"Retry-After": "1"})
    return principal


async def get_principal(request: Request, state: StateDep) -> Principal:
    # Async: a cache hit needs no thread; a miss is one indexed lookup.
    return identify_caller(request, state)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_admin(principal: PrincipalDep) -> Principal:
    require_role(principal, "admin")
    return principal


async def get_peer(principal: PrincipalDep) -> Principal:
    require_role(principal, "peer", "admin")
    return principal


AdminDep = Annotated[Principal, Depends(get_admin)]
PeerDep = Annotated[Principal, Depends(get_peer)]
