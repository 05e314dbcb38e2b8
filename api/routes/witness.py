"""The C2SP tlog-witness endpoint: ``POST /witness/v1/add-checkpoint``.

Peers (and tokens with the ``witness`` scope) submit a checkpoint of a log
whose keys this node trusts; the answer is this node's cosignature, or the
status code the spec prescribes. The logic is federation/witness.py.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from api.deps import StateDep, get_peer
from federation import witness


def build_router() -> APIRouter:
    router = APIRouter(prefix="/witness/v1", tags=["witness"], dependencies=[Depends(get_peer)])

    @router.post("/add-checkpoint", response_class=PlainTextResponse)
    async def add_checkpoint(request: Request, state: StateDep) -> PlainTextResponse:
        """Cosign a checkpoint consistent with the last one cosigned for its origin."""
        body = await request.body()
        node = state.node
        answer = await run_in_threadpool(
            witness.add_checkpoint,
            node.store,
            body=body,
            cosigner=node.cosigner,
            log_keys=node.verifiers_for,
            now=int(time.time()),
        )
        return PlainTextResponse(
            answer.body, status_code=answer.status, media_type=answer.content_type
        )

    return router
