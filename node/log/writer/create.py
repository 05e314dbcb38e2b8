"""Creating a list: one of our own, or one first received from a peer; each audited."""

from __future__ import annotations

from crypto.errors import ListExistsError, NotOwnerError
from crypto.merkle import CompactRange
from node.log.kinds import check_kind
from node.log.lists import check_label, parse_list_name
from node.store import ListRow, Store

__all__ = ["create_local", "create_received"]

_EMPTY_RANGE = CompactRange().to_bytes()


def create_local(
    store: Store,
    *,
    node_id: str,
    full_name: str,
    label: str,
    description: str = "",
    actor: str,
    kind: str = "block",
    allow_distance: int = 0,
) -> ListRow:
    """Create a list owned by this node, with its audit record."""
    owner, name = parse_list_name(full_name)
    if owner != node_id:
        raise NotOwnerError(list_name=full_name, node_id=node_id)
    kind, allow_distance = check_kind(kind, allow_distance)
    return store.create_list(
        owner=owner,
        name=name,
        label=check_label(label),
        description=description[:1000],
        kind=kind,
        allow_distance=allow_distance,
        empty_range=_EMPTY_RANGE,
        audit=(actor, "list.create", full_name, 0, {"label": label, "kind": kind}),
    )


def create_received(
    store: Store,
    *,
    owner: str,
    name: str,
    label: str,
    description: str,
    peer: str,
    kind: str = "block",
    allow_distance: int = 0,
) -> ListRow:
    """Create a list first received from ``peer`` (or return it if another process just did)."""
    try:
        return store.create_list(
            owner=owner,
            name=name,
            label=label,
            description=description,
            local=False,
            source_peer=peer,
            kind=kind,
            allow_distance=allow_distance,
            empty_range=_EMPTY_RANGE,
            audit=(
                f"sync:{peer}",
                "federation.create",
                f"{owner}/{name}",
                0,
                {"label": label, "kind": kind},
            ),
        )
    except ListExistsError:
        row = store.get_list(owner=owner, name=name)
        assert row is not None
        return row
