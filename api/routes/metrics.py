"""``GET /metrics``: Prometheus text format, for administrators and ``metrics`` tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import PrincipalDep
from crypto.errors import ForbiddenError

__all__ = ["router"]

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
def metrics(request: Request, principal: PrincipalDep) -> Response:
    """Prometheus metrics (admin, or a token with the ``metrics`` scope)."""
    # A token reaches here only with the scope (api/auth.py); a certificate needs admin.
    if principal.scopes is None and not principal.is_admin:
        raise ForbiddenError(reason="metrics need the admin role or a token with 'metrics'")
    node_metrics = request.app.state.metrics  # the route exists only when metrics are on
    return Response(generate_latest(node_metrics.registry), media_type=CONTENT_TYPE_LATEST)
