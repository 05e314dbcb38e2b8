"""A list's compact range extended by a large import, hashed on a helper process.

Hashing each new entry's leaf and folding it into the tree costs ~4 µs an
entry, a sixth of an import; the database inserts, in this process, take
most of the rest. With two cores, the pages go to a helper process as they
are written and it does the hashing meanwhile; the range comes back at the
end. Small pages are folded here: a small import starts no process.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from multiprocessing.connection import Connection
from types import TracebackType
from typing import TYPE_CHECKING, Any

from crypto.errors import StoreError
from crypto.merkle import CompactRange
from node.log.entry import leaf_hashes

if TYPE_CHECKING:  # the helper imports this module: not the database layer with it
    from node.store import EntryTuple

__all__ = ["HELPER_FROM", "TreeFold"]

# A page of this many entries starts the helper (it takes a second to start,
# while this process writes the page): small imports are folded here.
HELPER_FROM = 65_536


class TreeFold:
    """The compact range ``start`` extended by every entry passed to :meth:`extend`.

    Use as a context manager: leaving it stops the helper, if one started.
    """

    def __init__(self, start: bytes) -> None:
        self._tree = CompactRange.from_bytes(start)
        self._conn: Connection | None = None
        self._proc: Any = None

    def extend(self, entries: Sequence[EntryTuple]) -> None:
        """Append the leaves of ``entries`` (the next ones of the list, in seq order)."""
        if not entries:
            return
        if self._conn is None and len(entries) < HELPER_FROM:
            self._tree.extend(leaf_hashes(entries))
            return
        if self._conn is None:
            # spawn, not fork: a fresh interpreter shares no connections or threads.
            ctx = multiprocessing.get_context("spawn")
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(
                target=_fold, args=(theirs, self._tree.to_bytes()), name="hashfed-tree-fold"
            )
            try:
                proc.start()
            finally:
                theirs.close()
            self._conn, self._proc = ours, proc
        self._send(list(entries))

    def to_bytes(self) -> bytes:
        """The range over every entry extended so far (waits for the helper)."""
        if self._conn is not None:
            self._send(None)
            try:
                done = self._conn.recv()
            except (EOFError, OSError):
                raise _helper_stopped() from None
            self._tree = CompactRange.from_bytes(done)
            self.close()
        return self._tree.to_bytes()

    def _send(self, message: list[EntryTuple] | None) -> None:
        assert self._conn is not None
        try:
            self._conn.send(message)
        except (BrokenPipeError, OSError):
            raise _helper_stopped() from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            self._proc.join(timeout=5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
            self._proc = None

    def __enter__(self) -> TreeFold:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _helper_stopped() -> StoreError:
    return StoreError("the process hashing the import's Merkle tree stopped; nothing was written")


def _fold(conn: Connection, start: bytes) -> None:
    """The helper: extend the range by each page received; send it back on None."""
    tree = CompactRange.from_bytes(start)
    try:
        while (entries := conn.recv()) is not None:
            tree.extend(leaf_hashes(entries))
        conn.send(tree.to_bytes())
    except (EOFError, BrokenPipeError):
        pass  # the import failed and closed its end: nothing to send
    finally:
        conn.close()
