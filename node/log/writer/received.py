"""Lists received from peers: verified entries and checkpoints, evidence, freezing, metadata.

The federation layer calls these only after :mod:`federation.trusted_state`
verified what it hands over. ``apply_verified`` re-reads the list under its
lock, so an update another process applied meanwhile is skipped, not repeated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crypto.errors import FrozenListError, InputError, StoreError
from crypto.merkle import CompactRange
from node.log.entry import leaf_hashes
from node.log.lists import AppendResult, Committed, content_delta
from node.store import EntryTuple, ListChange, ListRow, ListTxn, StateRow, Store

__all__ = [
    "Verified",
    "apply_verified",
    "follow_metadata",
    "record_evidence",
    "refresh",
    "set_frozen",
]

# A verified checkpoint: (size, root_hash, timestamp, note).
Verified = tuple[int, bytes, int, str]


def _unchanged(row: ListRow, state: StateRow, skipped: int) -> AppendResult:
    return AppendResult(row, 0, skipped, state.size, Committed(row.id, state.size, state.size, []))


def apply_verified(
    store: Store,
    *,
    row: ListRow,
    peer: str,
    entries: Sequence[EntryTuple],
    from_size: int,
    from_range: bytes,
    accepted: Verified,
    compact_range: bytes,
) -> AppendResult:
    """Append entries verified against ``accepted``, with the checkpoint, in one transaction.

    ``entries`` continue the tree ``from_range`` (of ``from_size`` entries)
    up to ``accepted``'s size and ``compact_range``. Another process may have
    applied some or all of them between verification and now: the state is
    re-read under the lock, entries already there are skipped (applying is
    idempotent), and a stored tree that is not a prefix of the verified one
    is refused rather than extended.

    Raises:
        FrozenListError: the list was frozen since (nothing written).
        StoreError: the stored list is not on the verified tree (never written over).
    """
    size, root, ts, note = accepted
    if from_size + len(entries) != size:
        raise InputError(f"expected {size - from_size} entries, got {len(entries)}")

    def plan(txn: ListTxn) -> tuple[ListChange | None, AppendResult]:
        state = txn.state
        frozen = txn.row().frozen_reason
        if frozen is not None:  # frozen (a fork seen elsewhere) since it was verified
            raise FrozenListError(list_name=row.full_name, reason=frozen)
        if state.size >= size:
            if state.size == size and state.compact_range != compact_range:
                raise StoreError(f"list {row.full_name}: stored tree differs from the verified one")
            return None, _unchanged(row, state, len(entries))  # applied meanwhile
        done = state.size - from_size
        if done < 0:
            raise StoreError(f"list {row.full_name} shrank from {from_size} to {state.size}")
        if done:
            cr = CompactRange.from_bytes(from_range)
            cr.extend(leaf_hashes(entries[:done]))
            if cr.to_bytes() != state.compact_range:
                raise StoreError(f"list {row.full_name}: stored tree differs from the verified one")
        new = entries[done:]
        keys = {(e[2], e[3]) for e in new}
        existing = txn.content_of(keys) if state.live_count else {}
        adds, removes, changes = content_delta(new, existing, row.id)
        values: dict[str, Any] = {} if row.source_peer == peer else {"source_peer": peer}
        change = ListChange(
            entries=new,
            adds=adds,
            removes=removes,
            new_state=StateRow(size, compact_range, state.live_count + len(adds) - len(removes)),
            checkpoints=[(size, root, ts, note, "accepted")],
            list_values=values,
            audit=(
                f"sync:{peer}",
                "federation.apply",
                row.full_name,
                len(new),
                {"peer": peer, "size": size, "from": state.size},
            ),
        )
        committed = Committed(row.id, state.size, size, changes)
        return change, AppendResult(row, len(new), done, size, committed)

    return store.change_list(list_id=row.id, plan=plan)


def refresh(store: Store, *, row: ListRow, peer: str, accepted: Verified) -> bool:
    """Keep a newer checkpoint of the size already held (the owner's heartbeat).

    Returns False if this very note is stored already (another process kept it).
    """
    size, root, ts, note = accepted

    def plan(txn: ListTxn) -> tuple[ListChange | None, bool]:
        if txn.has_checkpoint(size=size, note=note):
            return None, False
        change = ListChange(
            checkpoints=[(size, root, ts, note, "accepted")],
            audit=(f"sync:{peer}", "federation.refresh", row.full_name, size, {"peer": peer}),
        )
        return change, True

    return store.change_list(list_id=row.id, plan=plan)


def record_evidence(
    store: Store,
    *,
    row: ListRow,
    checkpoints: Sequence[Verified],
    freeze_reason: str | None,
    audit: tuple[str, str, int, dict[str, Any]],
) -> None:
    """Keep refused signed checkpoints as evidence, maybe freeze the list; one transaction.

    A note already stored is not stored twice. ``audit`` is ``(actor,
    action, count, detail)``, its target the list.
    """
    actor, action, count, detail = audit

    def plan(txn: ListTxn) -> tuple[ListChange | None, None]:
        kept = [
            (size, root, ts, note, "evidence")
            for size, root, ts, note in checkpoints
            if not txn.has_checkpoint(size=size, note=note)
        ]
        values = {} if freeze_reason is None else {"frozen_reason": freeze_reason[:500]}
        change = ListChange(
            checkpoints=kept,
            list_values=values,
            audit=(actor, action, row.full_name, count, detail),
        )
        return change, None

    store.change_list(list_id=row.id, plan=plan)


def set_frozen(store: Store, *, row: ListRow, reason: str | None, actor: str) -> None:
    """Freeze a list (``reason``) or take updates for it again (None), audited."""
    action = "federation.freeze" if reason is not None else "federation.unfreeze"
    detail = {"was": (row.frozen_reason or "")[:300]} if reason is None else {"reason": reason}

    def plan(txn: ListTxn) -> tuple[ListChange | None, None]:
        values = {"frozen_reason": reason[:500] if reason is not None else None}
        return ListChange(list_values=values, audit=(actor, action, row.full_name, 0, detail)), None

    store.change_list(list_id=row.id, plan=plan)


def follow_metadata(store: Store, *, row: ListRow, peer: str, label: str, description: str) -> bool:
    """Take the owner's new label or description for a received list, audited.

    Returns whether anything changed (as read under the lock).
    """

    def plan(txn: ListTxn) -> tuple[ListChange | None, bool]:
        now = txn.row()
        if (now.label, now.description) == (label, description):
            return None, False
        change = ListChange(
            list_values={"label": label, "description": description},
            audit=(
                f"sync:{peer}",
                "federation.relabel",
                row.full_name,
                0,
                {"label": label, "was": now.label},
            ),
        )
        return change, True

    return store.change_list(list_id=row.id, plan=plan)
