"""The compact range of a large import, hashed on a helper process: the same range as here."""

from __future__ import annotations

import hashlib
import multiprocessing

import pytest

from crypto.errors import StoreError
from crypto.merkle import CompactRange
from node.log import tree_fold
from node.log.entry import leaf_hashes
from node.log.tree_fold import TreeFold
from node.store import EntryTuple


def _entries(start: int, n: int) -> list[EntryTuple]:
    return [
        (s, "add" if s % 5 else "remove", "md5", hashlib.md5(b"%d" % s).hexdigest(), "A1", s)  # noqa: S324
        for s in range(start, start + n)
    ]


def _here(start: CompactRange, pages: list[list[EntryTuple]]) -> bytes:
    tree = CompactRange.from_bytes(start.to_bytes())
    for page in pages:
        tree.extend(leaf_hashes(page))
    return tree.to_bytes()


@pytest.mark.parametrize("sizes", [[3, 40, 1, 64, 17], [64, 64, 64], [5]])
def test_the_helper_folds_what_this_process_would(
    monkeypatch: pytest.MonkeyPatch, sizes: list[int]
) -> None:
    monkeypatch.setattr(tree_fold, "HELPER_FROM", 32)  # pages of 32 and more go to the helper
    start = CompactRange()
    start.extend(leaf_hashes(_entries(0, 13)))  # an odd-sized list before the import
    pages, seq = [], 13
    for n in sizes:
        pages.append(_entries(seq, n))
        seq += n

    with TreeFold(start.to_bytes()) as fold:
        for page in pages:
            fold.extend(page)
        started = fold._proc is not None
        got = fold.to_bytes()

    assert got == _here(start, pages)
    assert started == any(n >= 32 for n in sizes)
    assert not multiprocessing.active_children()


def test_a_killed_helper_is_a_clear_error_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tree_fold, "HELPER_FROM", 8)
    with TreeFold(CompactRange().to_bytes()) as fold:
        fold.extend(_entries(0, 8))
        fold._proc.kill()
        fold._proc.join()
        with pytest.raises(StoreError, match="stopped; nothing was written"):
            fold.extend(_entries(8, 8))
    assert not multiprocessing.active_children()
