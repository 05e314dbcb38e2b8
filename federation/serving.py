"""The serving side of federation: what a caller may receive, and in which form.

Route handlers (api/routes/federation.py) parse the request, call these, and
serialise. A list is served with the newest checkpoint this node accepted for
it, which for a received list is its owner's note: a relay passes the owner's
signature on and can add nothing of its own. Entries are served only up to
that checkpoint's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from crypto.errors import InputError, UnknownListError
from federation.policy import may_receive, offered
from federation.protocol import Catalog, CatalogList, NodeInfo, encode_entry
from node.identity.principals import Principal
from node.node import Node
from node.store import CheckpointRow, ListRow

__all__ = ["Served", "catalog", "entry_lines", "node_info", "resolve"]

# Rows per database read while streaming entries.
_STREAM_PAGE = 10_000
# Lines joined into one chunk of the response: fewer, larger writes.
_LINES_PER_CHUNK = 1_000


@dataclass(frozen=True)
class Served:
    """A list a caller may receive, with the checkpoint that bounds what is served."""

    row: ListRow
    checkpoint: CheckpointRow

    @property
    def size(self) -> int:
        return self.checkpoint.size


def node_info(node: Node) -> NodeInfo:
    return NodeInfo(
        node_id=node.node_id,
        role=node.settings.role,
        signing_keys=[node.signer.verifier_key, node.cosigner.verifier_key],
    )


def catalog(node: Node, principal: Principal) -> Catalog:
    """Every list ``principal`` may receive that has a signed checkpoint."""
    store = node.store
    items = []
    for row in offered(principal, store.all_lists()):
        if row.owner == principal.name:
            continue  # its own lists: it has them
        cp = store.latest_checkpoint(list_id=row.id)
        if cp is None:
            continue  # unpublished: nothing signed to offer yet
        items.append(
            CatalogList(
                owner=row.owner,
                name=row.name,
                label=row.label,
                description=row.description,
                kind=row.kind,
                allow_distance=row.allow_distance,
                size=cp.size,
                checkpoint=cp.note,
            )
        )
    return Catalog(node_id=node.node_id, lists=items)


class AuditSink(Protocol):
    """Where a refusal's audit record goes: the API's buffer, written off the request."""

    def add(
        self,
        *,
        actor: str,
        action: str,
        target: str = "",
        count: int = 0,
        aggregate: bool = False,
        **detail: object,
    ) -> None: ...


class ListDirectory(Protocol):
    """Every list's row, kept in memory (the matcher's log follower)."""

    def find(self, owner: str, name: str) -> ListRow | None: ...


def resolve(
    node: Node,
    principal: Principal,
    owner: str,
    name: str,
    *,
    directory: ListDirectory,
    audit: AuditSink,
) -> Served:
    """The list ``owner/name`` if ``principal`` may receive it.

    A list that does not exist, is not cleared for the caller, is frozen or
    is unpublished all look the same to the caller, in the answer and in the
    time it takes: the decision is made on the rows kept in memory, with no
    database read, and the denial of an existing list is audited through a
    buffer, not written before answering. Only a cleared caller's request
    reads the database (the row again, fresh, and its checkpoint).

    Raises:
        UnknownListError: in every one of those cases (HTTP 404).
    """
    known = directory.find(owner, name)
    if known is None or not may_receive(principal, known):
        if known is not None:
            audit.add(
                actor=principal.name,
                action="federation.denied",
                target=known.full_name,
                aggregate=True,
                role=principal.role,
                label=known.label,
            )
        raise UnknownListError(list_name=f"{owner}/{name}")
    store = node.store
    row = store.get_list(owner=owner, name=name)  # frozen or relabelled since the last check?
    cp = store.latest_checkpoint(list_id=row.id) if row is not None else None
    if row is None or cp is None or not may_receive(principal, row):
        raise UnknownListError(list_name=f"{owner}/{name}")
    return Served(row, cp)


def check_range(served: Served, start: int, limit: int, max_page: int) -> int:
    """The end (exclusive) of an entries request, after checking its bounds.

    Raises:
        InputError: ``limit`` above the page size, or ``start`` past the checkpoint.
    """
    if limit > max_page:
        raise InputError(f"at most {max_page} entries per page", where="limit")
    if start > served.size:
        raise InputError(f"start is past the checkpoint size {served.size}", where="start")
    return min(start + limit, served.size)


def entry_lines(node: Node, served: Served, start: int, end: int) -> Iterator[bytes]:
    """NDJSON chunks for entries ``[start, end)`` in seq order."""
    batch: list[bytes] = []
    for entry in node.store.iter_entries(
        list_id=served.row.id, start=start, end=end, page=_STREAM_PAGE
    ):
        batch.append(encode_entry(entry))
        if len(batch) >= _LINES_PER_CHUNK:
            yield b"".join(batch)
            batch = []
    if batch:
        yield b"".join(batch)
