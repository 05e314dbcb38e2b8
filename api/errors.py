"""One place that turns errors into HTTP responses: ``{"error": code, "detail": message}``.

Validation messages name the field (``hashes[17].value``) and never echo the
input: a rejected value may be a hash, and hashes are sensitive.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from crypto.errors import (
    AuthError,
    DatabaseUnavailableError,
    ForbiddenError,
    HashfedError,
    InputError,
    LimitExceededError,
    ListExistsError,
    NotAuthenticatedError,
    NotOwnerError,
    PeerError,
    StorageFullError,
    StoreError,
    UnknownListError,
    VerificationError,
    WriteLockTimeoutError,
)
from node.sightings import ReplayedSightingError
from node.store import translate_db_error

# Most specific first.
STATUS_CODES: list[tuple[type[HashfedError], int]] = [
    (UnknownListError, 404),
    (ListExistsError, 409),
    (ReplayedSightingError, 409),
    (NotOwnerError, 403),
    (LimitExceededError, 413),
    (InputError, 422),
    (NotAuthenticatedError, 401),
    (ForbiddenError, 403),
    (AuthError, 403),
    (VerificationError, 422),
    (PeerError, 502),
    (StorageFullError, 507),
    (DatabaseUnavailableError, 503),
    (StoreError, 503),
    (HashfedError, 500),
]


class ErrorBody(BaseModel):
    """Every error response: a stable code and a message naming what is wrong."""

    error: str
    detail: str


# Documented on every router so clients (and schemathesis) know the shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody}
    for status in (400, 401, 403, 404, 409, 413, 422, 429, 500, 503, 507)
}
# A database that is down or refusing writes usually recovers within seconds
# (a restart, a failover, space freed): clients back off this long, then retry.
RETRY_AFTER_SECONDS = 5
log = logging.getLogger("hashfed.api")
# RFC 9110 §11.6.1: a 401 names the schemes that work. Tokens go as Bearer,
# or as the Basic password (TAXII clients and MISP feeds can only do Basic).
WWW_AUTHENTICATE = 'Bearer realm="hashfed", Basic realm="hashfed", charset="UTF-8"'
PUBLIC_DETAIL = {
    StorageFullError.code: "the node's storage is full: nothing was changed; retry later",
    DatabaseUnavailableError.code: "the node's database is unavailable; retry later",
}


def status_for(exc: HashfedError) -> int:
    return next(code for cls, code in STATUS_CODES if isinstance(exc, cls))


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _field_path(loc: tuple[object, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if p in ("body", "query", "path", "header"):
            continue
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{p}]"]
        else:
            parts.append(str(p))
    return ".".join(parts) or "request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HashfedError)
    async def _hashfed(_req: Request, exc: HashfedError) -> JSONResponse:
        return hashfed_error_response(exc)

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        return unexpected_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = [f"{_field_path(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()[:10]]
        return error_response(422, "invalid_input", "; ".join(msgs))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 429: "rate_limited"}
        return error_response(
            exc.status_code,
            code.get(exc.status_code, "http_error"),
            str(exc.detail),
            headers=getattr(exc, "headers", None),
        )


def hashfed_error_response(exc: HashfedError) -> JSONResponse:
    status = status_for(exc)
    detail = exc.message
    if isinstance(exc, StorageFullError | DatabaseUnavailableError):
        # The operator reads the cause in the log; callers (partners, peers)
        # learn nothing of the database's host or name.
        log.warning("%s: %s", exc.code, exc.message)
        detail = PUBLIC_DETAIL[exc.code]
    seconds = exc.retry_after if isinstance(exc, WriteLockTimeoutError) else RETRY_AFTER_SECONDS
    headers = {"Retry-After": str(seconds)} if status == 503 else None
    if status == 401:
        headers = {"WWW-Authenticate": WWW_AUTHENTICATE}
    return error_response(status, exc.code, detail, headers=headers)


def unexpected_error_response(exc: BaseException) -> JSONResponse:
    """The answer to an error no handler expected: a database failure or a JSON 500.

    Never plain text, and no detail: an unexpected error's text can hold
    anything, hashes included (SQLAlchemy quotes statement parameters). The
    log names the class and where it was raised, not the message.
    """
    translated = translate_db_error(exc, operation="request")
    if isinstance(translated, HashfedError):
        return hashfed_error_response(translated)
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"
    log.error("unexpected error answering a request: %s at %s", type(exc).__name__, where)
    return error_response(500, "internal_error", "internal error; see the node's log")


class CatchAllMiddleware:
    """Outermost of the app's middleware: whatever escapes becomes a JSON error.

    Starlette's own last resort answers plain text and re-raises, and the
    server then logs the exception's full text.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # the last resort, by design
            if started:  # too late for another answer; the server drops the connection
                log.error("error after the response started: %s", type(exc).__name__)
                return
            await unexpected_error_response(exc)(scope, receive, send)
