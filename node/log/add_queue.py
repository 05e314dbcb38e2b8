"""Group commit: concurrent adds to one list in one process share one transaction.

A list's writers queue on its lock anyway (one transaction at a time), and
on PostgreSQL each commit waits for its WAL flush while holding the row
lock, so one add per transaction caps a list at a few hundred adds per
second. Here the caller that gets the list's turn takes every add waiting
for that list and hands them to :func:`node.log.writer.add_batch` as one
transaction (one audit record per caller, in it); the others wait for their
result. Nothing changes for a caller: it gets what its own add did, or the
error that stopped the batch (then nothing of the batch is written).

The wait for a turn is bounded by the store's ``write_lock_timeout``, as the
database's own lock waits are.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from crypto.errors import WriteLockTimeoutError
from node.log import writer
from node.log.lists import AppendResult
from node.store import ListRow, Store

__all__ = ["AddQueue"]


@dataclass(eq=False)
class _Waiting:
    request: writer.AddRequest
    done: threading.Event = field(default_factory=threading.Event)
    result: AppendResult | None = None
    error: BaseException | None = None


class AddQueue:
    """Per-process queues of adds, one per list. Thread-safe."""

    def __init__(self, store: Store, *, node_id: str) -> None:
        self._store = store
        self._node_id = node_id
        self._guard = threading.Lock()
        self._pending: dict[int, list[_Waiting]] = {}
        self._turns: dict[int, threading.Lock] = {}

    def add(
        self, row: ListRow, items: Sequence[tuple[str, str, str]], *, actor: str, action: str
    ) -> AppendResult:
        """Add ``items`` to ``row``'s list, in a batch with whatever else is waiting for it."""
        me = _Waiting(writer.AddRequest(items, actor, action))
        with self._guard:
            self._pending.setdefault(row.id, []).append(me)
            turn = self._turns.setdefault(row.id, threading.Lock())
        if turn.acquire(timeout=self._store.write_lock_timeout):
            try:
                if not me.done.is_set():
                    with self._guard:
                        batch = self._pending.pop(row.id, [])
                    self._run(row, batch)
            finally:
                turn.release()
        else:
            with self._guard:
                queue = self._pending.get(row.id, [])
                if me in queue:  # nobody took it: give up, as a database lock wait would
                    queue.remove(me)
                    raise WriteLockTimeoutError(seconds=self._store.write_lock_timeout)
            me.done.wait()  # a batch in progress holds it; its outcome is ours
        if me.error is not None:
            raise me.error
        assert me.result is not None
        return me.result

    def _run(self, row: ListRow, batch: list[_Waiting]) -> None:
        try:
            results = writer.add_batch(
                self._store,
                node_id=self._node_id,
                row=row,
                requests=[w.request for w in batch],
            )
            for w, r in zip(batch, results, strict=True):
                w.result = r
        except BaseException as exc:  # every caller of the batch gets the error that stopped it
            for w in batch:
                w.error = exc
        finally:
            for w in batch:
                w.done.set()
