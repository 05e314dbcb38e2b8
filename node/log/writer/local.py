"""Entries of the lists this node owns: adds (also batched from several callers) and removes.

Duplicates are skipped and removes checked against the list's content as read
inside the transaction, under the list's lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from crypto.errors import NotInListError, NotOwnerError
from crypto.merkle import CompactRange
from node.log.entry import leaf_hashes
from node.log.lists import AppendResult, Committed, ContentChange
from node.store import AuditTuple, EntryTuple, ListChange, ListRow, ListTxn, StateRow, Store, now_ms

__all__ = ["AddRequest", "add_batch", "add_hashes", "remove_hashes", "require_owned"]


def _extend(state: StateRow, entries: Sequence[EntryTuple], live_delta: int) -> StateRow:
    cr = CompactRange.from_bytes(state.compact_range)
    cr.extend(leaf_hashes(entries))
    return StateRow(cr.size, cr.to_bytes(), state.live_count + live_delta)


def require_owned(row: ListRow, node_id: str) -> None:
    if not row.local or row.owner != node_id:
        raise NotOwnerError(list_name=row.full_name, node_id=node_id)


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
    )[0]


def add_batch(
    store: Store,
    *,
    node_id: str,
    row: ListRow,
    requests: Sequence[AddRequest],
) -> list[AppendResult]:
    """Several callers' adds to one list in one transaction, in order, each with its audit record.

    Each request's entries are contiguous and its result says what it added;
    a hash an earlier request of the batch added is skipped by a later one,
    exactly as if they had committed one after the other. One commit for
    many small adds is what lets concurrent writers to one list go fast
    (:mod:`node.log.add_queue`); all of them commit, or none.
    """
    require_owned(row, node_id)

    def plan(txn: ListTxn) -> tuple[ListChange | None, list[AppendResult]]:
        state = txn.state
        held: set[tuple[str, str]] = set()
        if state.live_count:  # an empty list (a first import) holds nothing to look up
            held.update(txn.content_of({(t, v) for req in requests for t, v, _c in req.items}))
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

    return store.change_list(list_id=row.id, plan=plan)


def remove_hashes(
    store: Store,
    *,
    node_id: str,
    row: ListRow,
    items: Sequence[tuple[str, str]],
    actor: str,
) -> AppendResult:
    """Append a remove entry for each ``(type, value)``; all must be present."""
    require_owned(row, node_id)
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
