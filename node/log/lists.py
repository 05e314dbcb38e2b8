"""What a list is, without changing one: names, labels, the fold, change records.

A list is an append-only log. Adding a hash the list already holds is a no-op;
removing appends a tombstone entry, never an edit. The current content is the
fold of the log (:func:`fold`, the one definition of it), kept materialised in
the ``content`` table. Every change to a list is made by
:mod:`node.log.writer`; verification is :mod:`node.log.verify`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from crypto.errors import InputError, UnknownListError
from node.store import ContentTuple, EntryTuple, ListRow, Store

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


class Committed(NamedTuple):
    """One committed change to a list's log, as the writer's callers emit it.

    ``start``/``end`` are the log sizes before and after the commit (the
    entries ``start <= seq < end`` are new); ``changes`` are its effect on
    current content, in order, or ``None`` where the writer did not keep
    them (a streamed import): a listener then reads the new entries.
    """

    list_id: int
    start: int
    end: int
    changes: Sequence[ContentChange] | None


@dataclass
class AppendResult:
    """What an add/remove/import/apply did to one list."""

    row: ListRow
    appended: int
    skipped: int
    size: int
    committed: Committed

    @property
    def changes(self) -> Sequence[ContentChange] | None:
        return self.committed.changes


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


Key = tuple[str, str]


def fold(
    entries: Iterable[EntryTuple], existing: Mapping[Key, tuple[str, int]] | None = None
) -> dict[Key, tuple[str, int]]:
    """The content a log describes: ``(type, value) -> (category, seq of the add)``.

    ``existing`` is content held before ``entries`` (all of it, or just the
    keys the entries touch); an add of a key held already and a remove of a
    key not held change nothing.
    """
    content = dict(existing) if existing else {}
    for seq, op, htype, value, category, _ts in entries:
        if op == "add":
            content.setdefault((htype, value), (category, seq))
        else:
            content.pop((htype, value), None)
    return content


def content_delta(
    entries: Sequence[EntryTuple], existing: Mapping[Key, tuple[str, int]], list_id: int
) -> tuple[list[ContentTuple], list[Key], list[ContentChange]]:
    """What appending ``entries`` does to content, by :func:`fold`.

    Args:
        entries: New entries in seq order.
        existing: ``(type, value) -> (category, seq)`` for those of the
            entries' keys the list holds now.
        list_id: The list, for the change records.

    Returns:
        Content rows to insert, keys to delete, and the index changes
        (removals first, then additions; a key removed and added again is both).
    """
    after = fold(entries, existing)
    keys = dict.fromkeys((e[2], e[3]) for e in entries)
    adds: list[ContentTuple] = []
    removes: list[Key] = []
    gone: list[ContentChange] = []
    new: list[ContentChange] = []
    for key in keys:
        before, now = existing.get(key), after.get(key)
        if before == now:
            continue
        if before is not None:
            removes.append(key)
            gone.append(ContentChange("remove", list_id, key[0], key[1], before[0]))
        if now is not None:
            adds.append((key[0], key[1], now[0], now[1]))
            new.append(ContentChange("add", list_id, key[0], key[1], now[0]))
    return adds, removes, gone + new


def get_list(store: Store, full_name: str) -> ListRow:
    owner, name = parse_list_name(full_name)
    row = store.get_list(owner=owner, name=name)
    if row is None:
        raise UnknownListError(list_name=full_name)
    return row
