"""A direct path for the hottest request: ``GET /api/v1/match/{type}/{value}``.

Industry filters look up one hash at a time, thousands of times a second.
FastAPI's routing, dependency resolution and response validation cost more
per request than the lookup itself (6 µs), so this ASGI middleware answers the
plain form of that request (no query string) directly, through the same
functions the route uses: :func:`api.deps.identify_caller` (certificate or
token, principal lookup, rate limit) and :func:`api.routes.match.run_match`.

Anything else goes to the app unchanged, and so does every request this path
cannot answer with a 200: an unknown caller, a rate-limited one, a malformed
value. The app then gives exactly the answer the route gives, errors included;
nothing is audited or charged on the way (a refused caller was charged nothing).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException
from starlette.requests import Request

from api.deps import AppState, identify_caller
from api.routes.match import HashQuery, run_match
from crypto.errors import HashfedError
from node.log.hashes import parse_hash

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREFIX = "/api/v1/match/"
# The route's own bounds (api/routes/match.py, match_one): longer goes to the app.
MAX_TYPE_LENGTH = 16
MAX_VALUE_LENGTH = 2048


class FastMatchMiddleware:
    """Answer plain single-hash match GETs without FastAPI's per-request machinery."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self._answer(scope) if _is_plain_match_get(scope) else None
        if body is None:
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode("ascii")),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _answer(self, scope: Scope) -> bytes | None:
        """The 200 body, or None to let the app answer."""
        state: AppState | None = getattr(scope["app"].state, "hashfed", None)
        if state is None:  # before start-up finished
            return None
        hash_type, _, value = scope["path"][len(PREFIX) :].partition("/")
        try:
            parse_hash(hash_type.strip().lower(), value)  # before the caller is charged
            principal = identify_caller(Request(scope), state)
            query = [HashQuery(type=hash_type, value=value)]
            response = run_match(state, principal, query, None, proof=False)
        except (HashfedError, HTTPException):
            return None
        return response.model_dump_json().encode("utf-8")


def _is_plain_match_get(scope: Scope) -> bool:
    if scope["type"] != "http" or scope["method"] != "GET" or scope.get("query_string"):
        return False
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return False
    hash_type, sep, value = path[len(PREFIX) :].partition("/")
    return (
        bool(sep)
        and 0 < len(hash_type) <= MAX_TYPE_LENGTH
        and 0 < len(value) <= MAX_VALUE_LENGTH
        and "/" not in value
        and "app" in scope
    )
