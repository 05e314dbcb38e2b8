"""One place that turns errors into HTTP responses: ``{"error": code, "detail": message}``.

Validation messages name the field (``hashes[17].value``) and never echo the
input: a rejected value may be a hash, and hashes are sensitive.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from crypto.errors import (
    AuthError,
    ForbiddenError,
    HashfedError,
    InputError,
    LimitExceededError,
    ListExistsError,
    NotAuthenticatedError,
    NotOwnerError,
    PeerError,
    StoreError,
    UnknownListError,
    VerificationError,
    WriteLockTimeoutError,
)

# Most specific first.
STATUS_CODES: list[tuple[type[HashfedError], int]] = [
    (UnknownListError, 404),
    (ListExistsError, 409),
    (NotOwnerError, 403),
    (LimitExceededError, 413),
    (InputError, 422),
    (NotAuthenticatedError, 401),
    (ForbiddenError, 403),
    (AuthError, 403),
    (VerificationError, 422),
    (PeerError, 502),
    (StoreError, 503),
    (HashfedError, 500),
]


class ErrorBody(BaseModel):
    """Every error response: a stable code and a message naming what is wrong."""

    error: str
    detail: str


# Documented on every router so clients (and schemathesis) know the shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 413, 422, 429, 503)
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
        headers = None
        if isinstance(exc, WriteLockTimeoutError):  # busy, not broken: tell clients when to retry
            headers = {"Retry-After": str(exc.retry_after)}
        return error_response(status_for(exc), exc.code, exc.message, headers=headers)

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
