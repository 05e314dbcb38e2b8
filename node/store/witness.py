"""What this node cosigned as a witness: one row per log origin, advanced by compare-and-swap."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import select, update

from node.store.engine import StoreBase


class Witnessed(NamedTuple):
    """The newest checkpoint cosigned for an origin."""

    origin: str
    size: int
    root_hash: bytes
    note: str
    cosigned_at: int


class WitnessQueries(StoreBase):
    def _witness_table(self) -> Any:
        from node.store.models import WitnessedCheckpoint

        return WitnessedCheckpoint.__table__  # type: ignore[attr-defined]

    def witnessed(self, *, origin: str) -> Witnessed | None:
        """The newest checkpoint cosigned for ``origin``, if any."""
        t = self._witness_table()
        with self.read() as conn:
            r = conn.execute(select(t).where(t.c.origin == origin)).first()
        return Witnessed(r.origin, r.size, bytes(r.root_hash), r.note, r.cosigned_at) if r else None

    def advance_witnessed(
        self,
        *,
        origin: str,
        old: tuple[int, bytes] | None,
        size: int,
        root_hash: bytes,
        note: str,
        cosigned_at: int,
    ) -> bool:
        """Replace the row for ``origin`` only if it still holds ``old`` (None: no row yet).

        Returns:
            False if another request moved it first: the caller re-reads and
            checks consistency again, never cosigns on a stale view.
        """
        t = self._witness_table()
        values = {"size": size, "root_hash": root_hash, "note": note, "cosigned_at": cosigned_at}
        with self.write() as conn:
            if old is None:
                if conn.execute(select(t.c.origin).where(t.c.origin == origin)).first():
                    return False
                conn.execute(t.insert().values(origin=origin, **values))
                return True
            done = conn.execute(
                update(t)
                .where(t.c.origin == origin, t.c.size == old[0], t.c.root_hash == old[1])
                .values(**values)
            )
            return bool(done.rowcount == 1)
