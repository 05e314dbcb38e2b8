"""Checkpoints of our own lists: publishing, the heartbeat that re-signs, witnesses' cosignatures.

``publish`` and the heartbeat share one signing function, so both sign under
the list's lock with their audit record.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from crypto.checkpoint import Checkpoint, CheckpointSigner, list_origin
from crypto.cosignature import add_cosignatures, cosignatures_except
from crypto.merkle import CompactRange
from node.log.writer.local import require_owned
from node.store import CheckpointRow, ListChange, ListRow, ListTxn, Store

__all__ = ["add_cosignatures_to_latest", "heartbeat", "publish"]


def _sign(
    store: Store,
    *,
    row: ListRow,
    signer: CheckpointSigner,
    actor: str,
    action: str,
    timestamp: int,
    published_only: bool,
    due_after: int | None = None,
) -> CheckpointRow | None:
    """Sign a checkpoint of the current tree, or re-sign the newest published one.

    With ``due_after``, only when the newest checkpoint is at least that many
    seconds older than ``timestamp`` (read under the lock, so two processes
    on one database do not both re-sign). Returns the newest checkpoint after,
    or None if nothing was due.
    """

    def plan(txn: ListTxn) -> tuple[ListChange | None, bool]:
        latest = txn.latest_checkpoint()
        if published_only:
            if latest is None or (
                due_after is not None and timestamp - latest.timestamp < due_after
            ):
                return None, False
            size, root = latest.size, latest.root_hash
        else:
            cr = CompactRange.from_bytes(txn.state.compact_range)
            size, root = cr.size, cr.root()
        cp = Checkpoint(origin=list_origin(row.owner, row.name), size=size, root_hash=root)
        note = signer.sign(cp, timestamp)
        if latest is not None and (latest.size, latest.root_hash) == (size, root):
            # The same tree: the witnesses' cosignatures of it hold for the new note too.
            owner_names = {row.owner, signer.log.name, signer.cosigner.name}
            note = add_cosignatures(note, cosignatures_except(latest.note, owner_names))
        change = ListChange(
            checkpoints=[(cp.size, cp.root_hash, timestamp, note, "accepted")],
            audit=(actor, action, row.full_name, cp.size, {}),
        )
        return change, True

    if not store.change_list(list_id=row.id, plan=plan):
        return None
    return store.latest_checkpoint(list_id=row.id)


def publish(
    store: Store,
    *,
    node_id: str,
    row: ListRow,
    signer: CheckpointSigner,
    actor: str,
    timestamp: int | None = None,
) -> CheckpointRow:
    """Sign a checkpoint over the list's current size and root.

    Publishing an unchanged list re-signs it with a fresh timestamp: that is
    the heartbeat that tells receivers the list is alive.
    """
    require_owned(row, node_id)
    when = int(time.time()) if timestamp is None else timestamp
    latest = _sign(
        store,
        row=row,
        signer=signer,
        actor=actor,
        action="list.publish",
        timestamp=when,
        published_only=False,
    )
    assert latest is not None
    return latest


def heartbeat(
    store: Store,
    *,
    node_id: str,
    row: ListRow,
    signer: CheckpointSigner,
    now: int,
    every: int,
    actor: str = "heartbeat",
) -> bool:
    """Re-sign the newest published tree with a fresh timestamp if it is ``every`` s old.

    Unpublished entries stay unpublished. Returns whether it re-signed.
    ``every`` 0 re-signs now (new keys, or a note from before cosignatures).
    """
    require_owned(row, node_id)
    return (
        _sign(
            store,
            row=row,
            signer=signer,
            actor=actor,
            action="list.heartbeat" if actor == "heartbeat" else "list.resign",
            timestamp=now,
            published_only=True,
            due_after=every,
        )
        is not None
    )


def add_cosignatures_to_latest(
    store: Store,
    *,
    row: ListRow,
    size: int,
    root_hash: bytes,
    lines: Sequence[str],
    actor: str,
) -> bool:
    """Store the newest checkpoint again with witnesses' cosignature lines added.

    For our own lists (cosignatures a witness returned) and for lists we
    pulled (our own cosignature as their witness), so that whoever fetches
    the checkpoint from us gets them with it. Only while the newest
    checkpoint is still the tree cosigned (``size``, ``root_hash``): a
    cosignature of an older tree is not attached to a newer one. Returns
    whether a new note was stored.
    """

    def plan(txn: ListTxn) -> tuple[ListChange | None, bool]:
        latest = txn.latest_checkpoint()
        if latest is None or (latest.size, latest.root_hash) != (size, root_hash):
            return None, False
        note = add_cosignatures(latest.note, lines)
        if note == latest.note:
            return None, False
        change = ListChange(
            checkpoints=[(size, root_hash, latest.timestamp, note, latest.status)],
            audit=(actor, "checkpoint.cosigned", row.full_name, size, {}),
        )
        return change, True

    return store.change_list(list_id=row.id, plan=plan)
