"""Owners re-sign their lists on a heartbeat, so receivers can tell live from frozen.

A receiver refuses checkpoints older than ``max_checkpoint_age_seconds``
(freeze attack: a peer replaying an old, validly signed checkpoint to hide
new entries and removals). An owner therefore re-signs every published list
at least every ``heartbeat_seconds`` even when nothing changed: the same
size and root, a fresh timestamp. Unpublished entries stay unpublished — the
heartbeat signs the newest published tree, never more.
"""

from __future__ import annotations

from node.node import Node

__all__ = ["resign_due"]


def resign_due(node: Node, *, now: int) -> list[str]:
    """Re-sign every owned, published, unfrozen list whose newest checkpoint is due.

    The signing is the node's list writer's, the same as ``publish``.

    Returns:
        The names of the lists re-signed.
    """
    return node.heartbeat(now=now)
