"""Owners re-sign their lists on a heartbeat, so receivers can tell live from frozen.

A receiver refuses checkpoints older than ``max_checkpoint_age_seconds``
(freeze attack: a peer replaying an old, validly signed checkpoint to hide
new entries and removals). An owner therefore re-signs every published list
at least every ``heartbeat_seconds`` even when nothing changed: the same
size and root, a fresh timestamp. Unpublished entries stay unpublished — the
heartbeat signs the newest published tree, never more.
"""

from __future__ import annotations

from crypto.checkpoint import Checkpoint, list_origin, sign_checkpoint
from node.node import Node

__all__ = ["resign_due"]


def resign_due(node: Node, *, now: int) -> list[str]:
    """Re-sign every owned, published, unfrozen list whose newest checkpoint is due.

    Returns:
        The names of the lists re-signed.
    """
    store = node.store
    every = node.settings.heartbeat_seconds
    done = []
    for row in store.all_lists():
        if not row.local or row.owner != node.node_id or row.frozen_reason is not None:
            continue
        latest = store.latest_checkpoint(list_id=row.id)
        if latest is None or now - latest.timestamp < every:
            continue
        cp = Checkpoint(
            origin=list_origin(row.owner, row.name),
            size=latest.size,
            root_hash=latest.root_hash,
            timestamp=now,
        )
        store.add_checkpoint(
            list_id=row.id,
            size=cp.size,
            root_hash=cp.root_hash,
            timestamp=cp.timestamp,
            note=sign_checkpoint(cp, node.signer),
        )
        store.append_audit(
            actor="heartbeat",
            action="list.heartbeat",
            target=row.full_name,
            count=cp.size,
            detail={},
        )
        done.append(row.full_name)
    return done
