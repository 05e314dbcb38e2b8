"""The API's own documentation, for principals only, with no asset from the internet.

FastAPI's default ``/docs``, ``/redoc`` and ``/openapi.json`` answer anyone
who completes the TLS handshake and load Swagger UI from a CDN, which leaves
an air-gapped node's page blank. Here each needs a registered principal, and
the JavaScript and CSS come from the ``fastapi-offline`` package's copy of
Swagger UI and ReDoc, served by the node itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from api.deps import PrincipalDep

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_ASSETS = Path(fastapi_offline.__file__).parent / "static"
# Served by name from this fixed set: nothing else of the package is reachable.
_ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
_STATIC = "/docs/static"


@router.get("/openapi.json")
def openapi(request: Request, _principal: PrincipalDep) -> JSONResponse:
    schema: dict[str, Any] = request.app.openapi()
    return JSONResponse(schema)


@router.get("/docs")
def swagger_ui(request: Request, _principal: PrincipalDep) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{_STATIC}/swagger-ui-bundle.js",
        swagger_css_url=f"{_STATIC}/swagger-ui.css",
        swagger_favicon_url=f"{_STATIC}/favicon.png",
    )


@router.get("/redoc")
def redoc(request: Request, _principal: PrincipalDep) -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/openapi.json",
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{_STATIC}/redoc.standalone.js",
        redoc_favicon_url=f"{_STATIC}/favicon.png",
        with_google_fonts=False,
    )


@router.get(_STATIC + "/{name}")
def asset(name: str, _principal: PrincipalDep) -> FileResponse:
    media_type = _ASSET_TYPES.get(name)
    if media_type is None:
        raise HTTPException(404, "no such documentation asset")
    return FileResponse(_ASSETS / name, media_type=media_type)
