"""The one writer: every change to a list, each in one transaction with its audit record.

Nothing else changes a list (a test reads the source to keep it so). The
callers decide *what* to change — the CLI and API through :class:`node.node.Node`,
the federation layer after :mod:`federation.trusted_state` verified an update —
and this module decides it against the list's state as read *inside* the
transaction, under the list's lock (:meth:`node.store.Store.change_list`).
Concurrent writers therefore queue instead of failing: the second add reads
the size the first one committed.

Each function returns what its callers emit to this process's indexes
(:class:`~node.log.lists.Committed`), after the commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from crypto.checkpoint import Checkpoint, CheckpointSigner, list_origin
from crypto.cosignature import add_cosignatures, cosignatures_except
from crypto.errors import (
    FrozenListError,
    InputError,
    ListExistsError,
    NotInListError,
    NotOwnerError,
    StoreError,
)
from crypto.merkle import CompactRange
from node.log.entry import leaf_hashes
from node.log.kinds import check_kind
from node.log.lists import (
    AppendResult,
    Committed,
    ContentChange,
    check_label,
    content_delta,
    parse_list_name,
)
from node.store import (
    AuditTuple,
    CheckpointRow,
    EntryTuple,
    ListChange,
    ListRow,
    ListTxn,
    StateRow,
    Store,
    now_ms,
)

__all__ = [
    "AddRequest",
    "Verified",
    "add_batch",
    "add_cosignatures_to_latest",
    "add_hashes",
    "apply_verified",
    "create_local",
    "create_received",
    "follow_metadata",
    "heartbeat",
    "publish",
    "record_evidence",
    "refresh",
    "remove_hashes",
    "set_frozen",
]

_EMPTY_RANGE = CompactRange().to_bytes()

# A verified checkpoint: (size, root_hash, timestamp, note).
Verified = tuple[int, bytes, int, str]


def _extend(state: StateRow, entries: Sequence[EntryTuple], live_delta: int) -> StateRow:
    cr = CompactRange.from_bytes(state.compact_range)
    cr.extend(leaf_hashes(entries))
    return StateRow(cr.size, cr.to_bytes(), state.live_count + live_delta)


def _require_owned(row: ListRow, node_id: str) -> None:
    if not row.local or row.owner != node_id:
        raise NotOwnerError(list_name=row.full_name, node_id=node_id)


# --- creating ---------------------------------------------------------------------------------


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


# --- local entries ---------------------------------------------------------------------------


def _unchanged(row: ListRow, state: StateRow, skipped: int) -> AppendResult:
    return AppendResult(row, 0, skipped, state.size, Committed(row.id, state.size, state.size, []))


class AddRequest(NamedTuple):
    """One caller's add: canonical ``(type, value, category)`` items, who, and the audit action."""

    items: Sequence[tuple[str, str, str]]
    actor: str
    action: str = "list.add"


def add_hashes(
    store: Store,
    *,
    node_id: str,
    row: ListRow,
    items: Sequence[tuple[str, str, str]],
    actor: str,
    action: str = "list.add",
    progress: Callable[[int], None] | None = None,
) -> AppendResult:
    """Append an add entry for every item the list does not hold yet.

    ``items`` are canonical ``(type, value, category)``; duplicates, within
    the batch or against the list as it is inside the transaction, are skipped.
    """
    return add_batch(
        store,
        node_id=node_id,
        row=row,
        requests=[AddRequest(items, actor, action)],
        progress=progress,
    )[0]


def add_batch(
    store: Store,
    *,
    node_id: str,
    row: ListRow,
    requests: Sequence[AddRequest],
    progress: Callable[[int], None] | None = None,
) -> list[AppendResult]:
    """Several callers' adds to one list in one transaction, in order, each with its audit record.

    Each request's entries are contiguous and its result says what it added;
    a hash an earlier request of the batch added is skipped by a later one,
    exactly as if they had committed one after the other. One commit for
    many small adds is what lets concurrent writers to one list go fast
    (:mod:`node.log.add_queue`); all of them commit, or none.
    """
    _require_owned(row, node_id)
    keys = {(t, v) for req in requests for t, v, _c in req.items}

    def plan(txn: ListTxn) -> tuple[ListChange | None, list[AppendResult]]:
        state = txn.state
        held = set(txn.content_of(keys)) if state.live_count else set()
        ts = now_ms()
        entries: list[EntryTuple] = []
        audits: list[AuditTuple] = []
        spans: list[tuple[int, int, int]] = []  # (first entry, end entry, skipped)
        for req in requests:
            first = len(entries)
            for t, v, c in req.items:
                if (t, v) not in held:
                    held.add((t, v))
                    entries.append((state.size + len(entries), "add", t, v, c, ts))
            added = len(entries) - first
            skipped = len(req.items) - added
            spans.append((first, len(entries), skipped))
            if added:
                audits.append((req.actor, req.action, row.full_name, added, {"skipped": skipped}))
        new_state = _extend(state, entries, len(entries)) if entries else state
        results = []
        for first, end, skipped in spans:
            changes = [
                ContentChange("add", row.id, t, v, c) for _s, _o, t, v, c, _ts in entries[first:end]
            ]
            committed = Committed(row.id, state.size + first, state.size + end, changes)
            results.append(AppendResult(row, end - first, skipped, state.size + end, committed))
        if not entries:
            return None, results
        change = ListChange(
            entries=entries,
            adds=[(t, v, c, s) for s, _o, t, v, c, _ts in entries],
            new_state=new_state,
            audits=audits,
        )
        return change, results

    return store.change_list(list_id=row.id, plan=plan, progress=progress)


def remove_hashes(
    store: Store,
    *,
    node_id: str,
    row: ListRow,
    items: Sequence[tuple[str, str]],
    actor: str,
) -> AppendResult:
    """Append a remove entry for each ``(type, value)``; all must be present."""
    _require_owned(row, node_id)
    keys = list(dict.fromkeys(items))

    def plan(txn: ListTxn) -> tuple[ListChange | None, AppendResult]:
        state = txn.state
        present = txn.content_of(keys)
        for i, key in enumerate(keys):
            if key not in present:
                raise NotInListError(list_name=row.full_name, where=f"hashes[{i}]")
        ts = now_ms()
        # A remove entry carries the category of the add it undoes, so feeds and
        # TAXII can say what was revoked without reading history.
        entries = [
            (state.size + i, "remove", t, v, present[(t, v)][0], ts)
            for i, (t, v) in enumerate(keys)
        ]
        new_state = _extend(state, entries, -len(entries))
        change = ListChange(
            entries=entries,
            removes=keys,
            new_state=new_state,
            audit=(actor, "list.remove", row.full_name, len(entries), {}),
        )
        changes = [ContentChange("remove", row.id, t, v, c) for _s, _o, t, v, c, _ts in entries]
        committed = Committed(row.id, state.size, new_state.size, changes)
        return change, AppendResult(row, len(entries), 0, new_state.size, committed)

    return store.change_list(list_id=row.id, plan=plan)


# --- checkpoints of our own lists ------------------------------------------------------------


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
    _require_owned(row, node_id)
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
    _require_owned(row, node_id)
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


# --- lists received from peers ---------------------------------------------------------------


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
