"""What the OpenAPI document says beyond the routes' own declarations.

* ``securitySchemes``: mutual TLS (a registered client certificate) and a
  bearer token (``hashfed token create``; TAXII clients may send it as the
  Basic password), and a document-wide ``security`` that accepts either;
  each route still needs its token scope (api/auth.py, ``ROUTE_SCOPES``).
* The feeds' response bodies: the manifest (JSON) and the entries stream,
  whose NDJSON lines are a list header, entry lines and the closing cursor
  (docs/PROTOCOL.md). The routes build these bodies themselves, so their
  schemas are declared here.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

__all__ = ["install"]

NDJSON = "application/x-ndjson"
FEED_MANIFEST_PATH = "/feeds/v1/{label}"
FEED_ENTRIES_PATH = "/feeds/v1/{label}/entries"

SECURITY_SCHEMES: dict[str, Any] = {
    "mutualTLS": {
        "type": "mutualTLS",
        "description": "A client certificate registered with `hashfed principal add`: pinned, "
        "or issued by a trusted CA. The node's own certificate is its administrator.",
    },
    "bearerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token from `hashfed token create`, limited to its scopes.",
    },
    "basicToken": {
        "type": "http",
        "scheme": "basic",
        "description": "For TAXII clients: the API token as the password; the user is ignored.",
    },
}


class FeedManifestList(BaseModel):
    list: str = Field(description="owner/name")
    owner: str
    name: str
    description: str
    size: int = Field(description="Entries in the log up to the signed checkpoint")
    hashes: int = Field(description="Live hashes at that size")
    timestamp: int = Field(description="When the owner signed the checkpoint, Unix seconds")
    checkpoint: str = Field(description="The signed checkpoint (C2SP signed note)")


class FeedManifest(BaseModel):
    node_id: str
    label: str
    cursor: str = Field(description="Pass as ?since= to get only what changes after this")
    lists: list[FeedManifestList]


class FeedListHeader(BaseModel):
    """First line for each list: the entries that follow are [start, size)."""

    list: str
    start: int
    size: int
    checkpoint: str = Field(description="The signed checkpoint the entries verify against")


class FeedEntryLine(BaseModel):
    """One log entry, in its canonical line form (docs/PROTOCOL.md, "Entry line")."""

    list: str
    seq: int
    op: str = Field(description="add or remove")
    type: str
    value: str
    category: str
    timestamp_ms: int


class FeedCursorLine(BaseModel):
    """The last line: the cursor to pass as ?since= next time."""

    cursor: str


_MODELS: tuple[type[BaseModel], ...] = (
    FeedManifest,
    FeedListHeader,
    FeedEntryLine,
    FeedCursorLine,
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _patch(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    schemas = components.setdefault("schemas", {})
    for model in _MODELS:
        doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(doc.pop("$defs", {}))
        schemas[model.__name__] = doc
    schema["security"] = [{"mutualTLS": []}, {"bearerToken": []}, {"basicToken": []}]
    paths = schema.get("paths", {})
    manifest = paths.get(FEED_MANIFEST_PATH, {}).get("get")
    if manifest is not None:
        manifest["responses"].setdefault("200", {})["content"] = {
            "application/json": {"schema": _ref("FeedManifest")}
        }
    entries = paths.get(FEED_ENTRIES_PATH, {}).get("get")
    if entries is not None:
        entries["responses"].setdefault("200", {})["content"] = {
            NDJSON: {
                "schema": {
                    "description": "One JSON document a line: per list a header then its "
                    "entries; the cursor last",
                    "oneOf": [
                        _ref("FeedListHeader"),
                        _ref("FeedEntryLine"),
                        _ref("FeedCursorLine"),
                    ],
                }
            },
            "text/csv": {
                "schema": {
                    "type": "string",
                    "description": "Header op,list,type,value,category; then one row an entry",
                }
            },
            "text/plain": {
                "schema": {"type": "string", "description": "One hash value a line (?type=)"}
            },
        }


def install(app: FastAPI) -> None:
    """Add the security schemes and the feeds' body schemas to the app's OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _patch(build())
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]
