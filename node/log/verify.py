"""Verifying stored lists against their signed checkpoints (``hashfed list verify``).

For each list: the stored entries are hashed into the Merkle tree again and
must give the stored tree state and the newest checkpoint's root; that
checkpoint's signature must verify; and the content table (what is matched and
exported) must be exactly the fold of the entries.

Hashing a million entries and checking a million content rows each keep one
core busy for seconds in CPython. For a large list the content check runs in
a second process (spawned once per sweep) while this one hashes the entries.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from types import TracebackType

from crypto.checkpoint import list_origin, open_checkpoint
from crypto.errors import HashfedError, InputError, RootMismatchError, StoreError
from crypto.keys import NoteVerifier
from crypto.merkle import CompactRange
from node.log.entry import leaf_hashes
from node.log.gc_pause import gc_paused
from node.log.lists import fold
from node.store import CheckpointRow, ListRow, StateRow, Store

# Below this many entries a list is checked in one process: starting the
# second one (about 0.7 s of imports) would cost more than it saves.
PARALLEL_FROM = 200_000


@dataclass(frozen=True)
class VerifyResult:
    """One list's verdict; ``reason`` says what failed, or "ok"."""

    row: ListRow
    size: int
    checkpoint_size: int | None
    ok: bool
    reason: str


class Verifier:
    """Verifies lists of one database; use as a context manager.

    Lists of ``parallel_from`` entries or more have their content checked by
    a worker process that opens the same database (not for an in-memory one).
    """

    def __init__(self, store: Store, *, parallel_from: int = PARALLEL_FROM) -> None:
        self.store = store
        self.database_url = store.shared_url
        self.parallel_from = parallel_from
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Verifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def verify(self, row: ListRow, verifiers: Sequence[NoteVerifier]) -> VerifyResult:
        """Check one list; every failure is a result with a reason, never an exception."""
        state = self.store.get_state(list_id=row.id)
        latest = self.store.latest_checkpoint(list_id=row.id)
        content_ok: Future[bool] | None = None
        if self.database_url is not None and state.size >= self.parallel_from:
            if self._pool is None:
                # spawn, not fork: a fresh interpreter shares no connections or threads.
                ctx = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(1, mp_context=ctx)
            content_ok = self._pool.submit(
                _content_check_worker, self.database_url, row.id, state.size
            )

        def fail(reason: str) -> VerifyResult:
            return VerifyResult(row, state.size, latest.size if latest else None, False, reason)

        try:
            root_at_checkpoint = _check_tree(self.store, row, state, latest)
            content_matches = self._content_result(content_ok, row.id, state.size)
        except _TreeMismatch as exc:
            return fail(exc.reason)
        except HashfedError as exc:
            return fail(exc.message)
        if not content_matches:
            return fail("the content table differs from the fold of the log")
        if latest is None:
            return VerifyResult(row, state.size, None, True, "no checkpoint yet (unpublished)")
        origin = list_origin(row.owner, row.name)
        try:
            # The owner's signature over the stored root; its date is not
            # this check's concern (a note from before cosignatures still counts).
            cp, _ = open_checkpoint(latest.note, origin=origin, verifiers=verifiers)
            if cp.size != latest.size or cp.root_hash != latest.root_hash:
                raise InputError("stored checkpoint columns differ from the signed note")
            if root_at_checkpoint != cp.root_hash:
                raise RootMismatchError(
                    origin=origin,
                    size=cp.size,
                    expected=cp.root_hash.hex(),
                    got=root_at_checkpoint.hex() if root_at_checkpoint else "(entries missing)",
                )
        except HashfedError as exc:  # report per list; a sweep goes on to the next
            return fail(exc.message)
        return VerifyResult(row, state.size, latest.size, True, "ok")

    def _content_result(self, pending: Future[bool] | None, list_id: int, end: int) -> bool:
        if pending is not None:
            try:
                return pending.result()
            except BrokenProcessPool:  # the worker died (killed, out of memory): check here
                self.close()
        return content_matches_log(self.store, list_id=list_id, end=end)


class _TreeMismatch(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _check_tree(
    store: Store, row: ListRow, state: StateRow, latest: CheckpointRow | None
) -> bytes | None:
    """Hash the stored entries; return the root at the checkpoint's size.

    Raises:
        _TreeMismatch: entries are missing, or do not hash to the stored tree state.
    """
    cr = CompactRange()
    root_at_checkpoint = cr.root() if latest is not None and latest.size == 0 else None
    try:
        for page in store.iter_entry_pages(list_id=row.id, end=state.size):
            hashes = leaf_hashes(page)
            if latest is not None and cr.size < latest.size <= cr.size + len(hashes):
                cut = latest.size - cr.size
                cr.extend(hashes[:cut])
                root_at_checkpoint = cr.root()
                hashes = hashes[cut:]
            cr.extend(hashes)
    except StoreError as exc:
        raise _TreeMismatch(exc.message) from None
    stored = CompactRange.from_bytes(state.compact_range)
    if cr.size != stored.size or cr.root() != stored.root():
        raise _TreeMismatch("stored entries do not hash to the stored tree state")
    return root_at_checkpoint


def content_matches_log(store: Store, *, list_id: int, end: int) -> bool:
    """Whether the content table is exactly the fold of the list's first ``end`` entries.

    A log of adds only (the usual large list) folds to all its adds. Then the
    database sorts both sides and they are compared page by page: equal
    sorted streams mean equal multisets, and content keys are unique, so the
    log repeats no key and its fold is the content. Otherwise, or when that
    comparison differs (a repeated add is a legitimate no-op), the log is
    folded here and every content row is looked up in the fold.
    """
    if store.log_is_adds_only(list_id=list_id, end=end):
        adds = store.iter_sorted_adds(list_id=list_id, end=end)
        content = store.iter_sorted_content(list_id=list_id)
        # The same page size on both sides: equal streams have equal pages.
        if all(a == c for a, c in itertools.zip_longest(adds, content)):
            return True
    with gc_paused():  # a fold holds a million small tuples: collections would walk them
        folded = fold(store.iter_entries(list_id=list_id, end=end))
        count = 0
        for page in store.iter_sorted_content(list_id=list_id):
            types, values, categories, seqs = zip(*page, strict=True)
            # One C-level lookup per row; a wrong category or add seq differs.
            got = map(folded.get, zip(types, values, strict=True))
            if list(got) != list(zip(categories, seqs, strict=True)):
                return False
            count += len(page)
        return count == len(folded)


_worker_stores: dict[str, Store] = {}


def _content_check_worker(database_url: str, list_id: int, end: int) -> bool:
    """:func:`content_matches_log` in the worker process, on its own connection."""
    store = _worker_stores.get(database_url)
    if store is None:
        store = _worker_stores[database_url] = Store.open(database_url, migrate=False)
    return content_matches_log(store, list_id=list_id, end=end)
