"""Owning lists: create, add, remove, publish (verify is :mod:`node.log.verify`).

A list is an append-only log. Adding a hash the list already holds is a no-op;
removing appends a tombstone entry, never an edit. The current content is the
fold of the log (:func:`fold`), kept materialised in the ``content`` table and
updated in the same transaction as the entries.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from crypto.checkpoint import Checkpoint, list_origin, sign_checkpoint
from crypto.errors import (
    InputError,
    NotInListError,
    NotOwnerError,
    UnknownListError,
)
from crypto.keys import NoteSigner
from crypto.merkle import CompactRange
from node.log.entry import leaf_hashes
from node.store import CheckpointRow, ContentTuple, EntryTuple, ListRow, StateRow, Store, now_ms

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
_OWNER_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class ContentChange(NamedTuple):
    """One change to current content, for the in-memory indexes.

    A NamedTuple, not a dataclass: imports and pulls make one per changed
    hash, and at a million changes the dataclass constructor alone cost ~3 s.
    """

    op: str  # add | remove
    list_id: int
    hash_type: str
    value: str
    category: str


@dataclass
class AppendResult:
    """What an add/remove/import did to one list."""

    row: ListRow
    appended: int
    skipped: int
    size: int
    changes: list[ContentChange] = field(default_factory=list)


def parse_list_name(full: str, *, where: str = "list") -> tuple[str, str]:
    """Split ``owner/name`` and check both parts."""
    owner, sep, name = full.partition("/")
    if not sep or not _OWNER_RE.fullmatch(owner) or not _NAME_RE.fullmatch(name):
        raise InputError(
            "expected owner/name with lowercase letters, digits, '-', '.', '_'", where=where
        )
    return owner, name


def check_label(label: str) -> str:
    if not _LABEL_RE.fullmatch(label):
        raise InputError("expected lowercase letters, digits, '-' or '_'", where="label")
    return label


def fold(entries: Iterable[EntryTuple]) -> dict[tuple[str, str], tuple[str, int]]:
    """The content a log describes: ``(type, value) -> (category, seq of the add)``."""
    content: dict[tuple[str, str], tuple[str, int]] = {}
    for seq, op, htype, value, category, _ts in entries:
        if op == "add":
            content.setdefault((htype, value), (category, seq))
        else:
            content.pop((htype, value), None)
    return content


def get_list(store: Store, full_name: str) -> ListRow:
    owner, name = parse_list_name(full_name)
    row = store.get_list(owner=owner, name=name)
    if row is None:
        raise UnknownListError(list_name=full_name)
    return row


def create_list(
    store: Store, *, node_id: str, full_name: str, label: str, description: str = ""
) -> ListRow:
    """Create a list owned by this node."""
    owner, name = parse_list_name(full_name)
    if owner != node_id:
        raise NotOwnerError(list_name=full_name, node_id=node_id)
    return store.create_list(
        owner=owner,
        name=name,
        label=check_label(label),
        description=description[:1000],
        empty_range=CompactRange().to_bytes(),
    )


def _require_owned(row: ListRow, node_id: str) -> None:
    if not row.local or row.owner != node_id:
        raise NotOwnerError(list_name=row.full_name, node_id=node_id)


def _extend(state: StateRow, entries: Sequence[EntryTuple], live_delta: int) -> StateRow:
    cr = CompactRange.from_bytes(state.compact_range)
    cr.extend(leaf_hashes(entries))
    return StateRow(cr.size, cr.to_bytes(), state.live_count + live_delta)


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
    the batch or against the list, are skipped. One transaction.
    """
    _require_owned(row, node_id)
    state = store.get_state(list_id=row.id)
    seen: set[tuple[str, str]] = set()
    unique: list[tuple[str, str, str]] = []
    for htype, value, category in items:
        if (htype, value) not in seen:
            seen.add((htype, value))
            unique.append((htype, value, category))
    if state.live_count:
        present = store.existing_content(list_id=row.id, keys=seen)
        unique = [it for it in unique if (it[0], it[1]) not in present]
    ts = now_ms()
    entries: list[EntryTuple] = [
        (state.size + i, "add", t, v, c, ts) for i, (t, v, c) in enumerate(unique)
    ]
    adds: list[ContentTuple] = [(t, v, c, s) for s, _o, t, v, c, _ts in entries]
    new_state = _extend(state, entries, len(entries))
    if entries:
        store.append(
            list_id=row.id,
            expected_size=state.size,
            entries=entries,
            adds=adds,
            removes=(),
            new_state=new_state,
            audit=(
                actor,
                action,
                row.full_name,
                len(entries),
                {"skipped": len(items) - len(entries)},
            ),
            progress=progress,
        )
    return AppendResult(
        row=row,
        appended=len(entries),
        skipped=len(items) - len(entries),
        size=new_state.size,
        changes=[ContentChange("add", row.id, t, v, c) for _s, _o, t, v, c, _ts in entries],
    )


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
    state = store.get_state(list_id=row.id)
    keys = list(dict.fromkeys(items))
    present = store.existing_content(list_id=row.id, keys=keys)
    for i, key in enumerate(keys):
        if key not in present:
            raise NotInListError(list_name=row.full_name, where=f"hashes[{i}]")
    ts = now_ms()
    # A remove entry carries the category of the add it undoes, so feeds and
    # TAXII can say what was revoked without reading history.
    entries: list[EntryTuple] = [
        (state.size + i, "remove", t, v, present[(t, v)][0], ts) for i, (t, v) in enumerate(keys)
    ]
    new_state = _extend(state, entries, -len(entries))
    store.append(
        list_id=row.id,
        expected_size=state.size,
        entries=entries,
        adds=(),
        removes=keys,
        new_state=new_state,
        audit=(actor, "list.remove", row.full_name, len(entries), {}),
    )
    return AppendResult(
        row=row,
        appended=len(entries),
        skipped=0,
        size=new_state.size,
        changes=[ContentChange("remove", row.id, t, v, c) for _s, _o, t, v, c, _ts in entries],
    )


def publish(
    store: Store,
    *,
    node_id: str,
    row: ListRow,
    signer: NoteSigner,
    actor: str,
    timestamp: int | None = None,
) -> CheckpointRow:
    """Sign a checkpoint over the list's current size and root.

    Publishing an unchanged list re-signs it with a fresh timestamp: that is
    the heartbeat that tells receivers the list is alive.
    """
    _require_owned(row, node_id)
    state = store.get_state(list_id=row.id)
    cr = CompactRange.from_bytes(state.compact_range)
    cp = Checkpoint(
        origin=list_origin(row.owner, row.name),
        size=cr.size,
        root_hash=cr.root(),
        timestamp=int(time.time()) if timestamp is None else timestamp,
    )
    note = sign_checkpoint(cp, signer)
    store.add_checkpoint(
        list_id=row.id, size=cp.size, root_hash=cp.root_hash, timestamp=cp.timestamp, note=note
    )
    store.append_audit(
        actor=actor, action="list.publish", target=row.full_name, count=cp.size, detail={}
    )
    latest = store.latest_checkpoint(list_id=row.id)
    assert latest is not None
    return latest
