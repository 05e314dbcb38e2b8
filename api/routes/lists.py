"""List administration over HTTPS (admin role): the CLI's operations."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path as FsPath
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.deps import AdminDep, StateDep, get_admin
from crypto.errors import LimitExceededError
from node.feeds.vics import write_vics
from node.store import ListRow

router = APIRouter(prefix="/api/v1/lists", tags=["lists"], dependencies=[Depends(get_admin)])

OwnerPath = Annotated[str, Path(max_length=63)]
NamePath = Annotated[str, Path(max_length=100)]


class ListCreate(BaseModel):
    name: str = Field(max_length=170, description="owner/name; the owner is this node")
    label: str = Field(max_length=32)
    description: str = Field("", max_length=1000)
    kind: str = Field("block", max_length=8, description="block, or allow (known-benign)")
    allow_distance: int = Field(0, description="For an allow-list: PDQ distance counted as on it")


class ListOut(BaseModel):
    name: str
    owner: str
    label: str
    description: str
    local: bool
    source_peer: str | None
    frozen_reason: str | None
    kind: str = "block"
    allow_distance: int = 0
    size: int
    hashes: int
    checkpoint_size: int | None
    checkpoint_root: str | None
    checkpoint_timestamp: int | None


class HashIn(BaseModel):
    type: str = Field(max_length=16)
    value: str = Field(max_length=2048)
    category: str = Field("", max_length=64)


class HashKey(BaseModel):
    type: str = Field(max_length=16)
    value: str = Field(max_length=2048)


class AddRequest(BaseModel):
    hashes: list[HashIn] = Field(min_length=1, max_length=100_000)


class RemoveRequest(BaseModel):
    hashes: list[HashKey] = Field(min_length=1, max_length=100_000)


class AppendOut(BaseModel):
    list: str
    appended: int
    skipped: int
    size: int


def list_out(state: StateDep, row: ListRow) -> ListOut:
    st = state.node.store.get_state(list_id=row.id)
    cp = state.node.store.latest_checkpoint(list_id=row.id)
    return ListOut(
        name=row.full_name,
        owner=row.owner,
        label=row.label,
        description=row.description,
        local=row.local,
        source_peer=row.source_peer,
        frozen_reason=row.frozen_reason,
        kind=row.kind,
        allow_distance=row.allow_distance,
        size=st.size,
        hashes=st.live_count,
        checkpoint_size=cp.size if cp else None,
        checkpoint_root=cp.root_hash.hex() if cp else None,
        checkpoint_timestamp=cp.timestamp if cp else None,
    )


@router.get("")
def all_lists(state: StateDep) -> list[ListOut]:
    """Every list on this node, owned and received."""
    return [list_out(state, r) for r in state.node.store.all_lists()]


@router.post("", status_code=201)
def create_list(body: ListCreate, state: StateDep, admin: AdminDep) -> ListOut:
    """Create a list owned by this node."""
    row = state.node.create_list(
        body.name,
        label=body.label,
        description=body.description,
        actor=admin.name,
        kind=body.kind,
        allow_distance=body.allow_distance,
    )
    return list_out(state, row)


@router.get("/{owner}/{name}")
def show_list(owner: OwnerPath, name: NamePath, state: StateDep) -> ListOut:
    """One list: metadata, size, newest checkpoint."""
    return list_out(state, state.node.get_list(f"{owner}/{name}"))


@router.post("/{owner}/{name}/hashes")
def add_hashes(
    owner: OwnerPath, name: NamePath, body: AddRequest, state: StateDep, admin: AdminDep
) -> AppendOut:
    """Add hashes; those already in the list are skipped."""
    r = state.node.add_raw(
        f"{owner}/{name}", [(h.type, h.value, h.category) for h in body.hashes], actor=admin.name
    )
    return AppendOut(list=r.row.full_name, appended=r.appended, skipped=r.skipped, size=r.size)


@router.post("/{owner}/{name}/remove")
def remove_hashes(
    owner: OwnerPath, name: NamePath, body: RemoveRequest, state: StateDep, admin: AdminDep
) -> AppendOut:
    """Remove hashes (appends tombstones); every one must be in the list."""
    r = state.node.remove(
        f"{owner}/{name}", [(h.type, h.value) for h in body.hashes], actor=admin.name
    )
    return AppendOut(list=r.row.full_name, appended=r.appended, skipped=r.skipped, size=r.size)


@router.post("/{owner}/{name}/import")
async def import_hashes(
    owner: OwnerPath,
    name: NamePath,
    request: Request,
    state: StateDep,
    admin: AdminDep,
    fmt: Annotated[Literal["csv", "text", "vics"] | None, Query(alias="format")] = None,
    hash_type: Annotated[str | None, Query(alias="type", max_length=16)] = None,
    category: Annotated[str, Query(max_length=64)] = "",
) -> AppendOut:
    """Import a CSV, one-hash-per-line or Project VIC (VICS) body in one transaction."""
    from starlette.concurrency import run_in_threadpool

    limit = state.settings.limits.max_body_bytes
    fd, tmp = tempfile.mkstemp(prefix="hashfed-import-", suffix=".txt")
    try:
        with os.fdopen(fd, "wb") as fh:
            total = 0
            async for chunk in request.stream():
                total += len(chunk)
                if total > limit:
                    raise LimitExceededError(limit="request body bytes", value=total, maximum=limit)
                fh.write(chunk)
        r = await run_in_threadpool(
            state.node.import_file,
            f"{owner}/{name}",
            FsPath(tmp),
            fmt=fmt,
            default_type=hash_type,
            default_category=category,
            actor=admin.name,
        )
    finally:
        os.unlink(tmp)
    return AppendOut(list=r.row.full_name, appended=r.appended, skipped=r.skipped, size=r.size)


@router.post("/{owner}/{name}/publish")
def publish(owner: OwnerPath, name: NamePath, state: StateDep, admin: AdminDep) -> ListOut:
    """Sign a checkpoint over the list's current entries."""
    full = f"{owner}/{name}"
    state.node.publish(full, actor=admin.name)
    return list_out(state, state.node.get_list(full))


@router.get("/{owner}/{name}/export")
def export(
    owner: OwnerPath,
    name: NamePath,
    state: StateDep,
    admin: AdminDep,
    fmt: Annotated[Literal["csv", "ndjson", "vics", "vics13"], Query(alias="format")] = "csv",
) -> StreamingResponse:
    """A list's current content, streamed as CSV, NDJSON or a VICS 2.0 / 1.3 hash set."""
    full = f"{owner}/{name}"
    state.node.get_list(full)  # 404 before the stream starts
    state.node.audit(actor=admin.name, action="list.export", target=full, detail={"format": fmt})

    def rows() -> Iterator[str]:
        if fmt in ("vics", "vics13"):
            yield from write_vics(
                state.node.content(full), version="2.0" if fmt == "vics" else "1.3"
            )
        elif fmt == "csv":
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["type", "value", "category"])
            for item in state.node.content(full):
                w.writerow(item)
                if buf.tell() > 1 << 16:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
            yield buf.getvalue()
        else:
            for t, v, c in state.node.content(full):
                yield json.dumps({"type": t, "value": v, "category": c}) + "\n"

    media = {"csv": "text/csv", "ndjson": "application/x-ndjson"}.get(fmt, "application/json")
    return StreamingResponse(rows(), media_type=media)
