"""Imports: a file's hashes appended to one of our lists in one transaction, a page at a time.

Hash sets run to tens of millions of hashes and several GB. The reader's
items are taken a page at a time *inside* the one transaction: each page
loses the keys it repeats and those the list holds (earlier pages of this
import included: the transaction sees its own writes), is appended, and
its leaves are folded into the compact range. Memory holds one page, never
the import. The readers raise on a bad record only at the end, after
counting every error; the transaction is then rolled back, so an import is
still all or nothing.

Within a page, entries are appended in key order, not in the file's order:
a list is a set, and key order turns the database's index inserts into
near-appends. A hash the file repeats keeps its first category.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence

from node.log.lists import AppendResult, Committed
from node.log.tree_fold import TreeFold
from node.log.writer.local import require_owned
from node.store import (
    ContentTuple,
    EntryTuple,
    ListChange,
    ListRow,
    ListTxn,
    StateRow,
    Store,
    now_ms,
)

__all__ = ["PAGE", "import_items"]

HashItem = tuple[str, str, str]

# Items read per page: ~100 MB at most. Larger pages insert with more
# locality (65,536 took 20 % longer at 2M hashes); a power of two keeps the
# compact range's batches aligned.
PAGE = 131_072


def _unique_in_key_order(page: Sequence[HashItem]) -> list[HashItem]:
    """The page's items in key order, each key once, with its first category."""
    out: list[HashItem] = []
    for htype in sorted({item[0] for item in page}):
        # Reversed, so that a value the page repeats keeps its first category.
        first = {v: c for t, v, c in reversed(page) if t == htype}
        out.extend((htype, v, first[v]) for v in sorted(first))
    return out


def _not_held(txn: ListTxn, items: list[HashItem]) -> list[HashItem]:
    held: set[tuple[str, str]] = set()
    for htype in {t for t, _v, _c in items}:
        values = [v for t, v, _c in items if t == htype]
        held.update((htype, v) for v in txn.held_values(htype, values))
    return [item for item in items if (item[0], item[1]) not in held] if held else items


def _change(items: list[HashItem], size: int, ts: int) -> ListChange:
    entries: list[EntryTuple] = [
        (size + i, "add", t, v, c, ts) for i, (t, v, c) in enumerate(items)
    ]
    adds: list[ContentTuple] = [(t, v, c, s) for s, _o, t, v, c, _ts in entries]
    return ListChange(entries=entries, adds=adds)


def import_items(
    store: Store,
    *,
    node_id: str,
    row: ListRow,
    items: Iterable[HashItem],
    actor: str,
    on_written: Callable[[int], None] | None = None,
) -> AppendResult:
    """Append an add entry for every item the list does not hold yet, streamed, in one commit.

    ``items`` are canonical ``(type, value, category)``, read as the writer
    goes (a reader of a file); its errors roll the whole import back.
    ``on_written`` hears how many entries each page appended.

    The result's ``committed.changes`` is ``None``: listeners read the new
    entries from the log rather than holding them all in memory here.
    """
    require_owned(row, node_id)

    def plan(txn: ListTxn) -> tuple[ListChange | None, AppendResult]:
        with TreeFold(txn.state.compact_range) as tree:
            return _plan(txn, tree)

    def _plan(txn: ListTxn, tree: TreeFold) -> tuple[ListChange | None, AppendResult]:
        start = txn.state
        size, read = start.size, 0
        # Into an empty list, a page is written as if none of its hashes were
        # held, and looked up only if the database finds one that is (an
        # earlier page's): once that happened, every later page looks up first.
        look_up = start.live_count > 0
        ts = now_ms()
        it = iter(items)
        while page := list(itertools.islice(it, PAGE)):
            read += len(page)
            new = _unique_in_key_order(page)
            if look_up:
                change = _change(_not_held(txn, new), size, ts)
                txn.write(change)
            else:
                change = _change(new, size, ts)
                if not txn.write_if_new(change):
                    look_up = True
                    change = _change(_not_held(txn, new), size, ts)
                    txn.write(change)
            tree.extend(change.entries)
            size += len(change.entries)
            if on_written is not None and change.entries:
                on_written(len(change.entries))
        appended = size - start.size
        result = AppendResult(
            row, appended, read - appended, size, Committed(row.id, start.size, size, None)
        )
        if not appended:
            return None, result
        change = ListChange(
            new_state=StateRow(size, tree.to_bytes(), start.live_count + appended),
            audit=(actor, "list.import", row.full_name, appended, {"skipped": read - appended}),
        )
        return change, result

    return store.change_list(list_id=row.id, plan=plan)
