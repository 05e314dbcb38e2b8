"""Signed checkpoints: accepted ones and those kept as evidence."""

from __future__ import annotations

from sqlalchemy import (
    Connection,
    func,
    select,
)

from node.store.engine import StoreBase, now_ms
from node.store.rows import (
    CheckpointRow,
    _checkpoint_row,
)
from node.store.tables import (
    _checkpoints,
)


class CheckpointQueries(StoreBase):
    def _insert_checkpoint(
        self,
        conn: Connection,
        list_id: int,
        size: int,
        root_hash: bytes,
        timestamp: int,
        note: str,
        status: str,
    ) -> None:
        conn.execute(
            _checkpoints.insert().values(
                list_id=list_id,
                size=size,
                root_hash=root_hash,
                timestamp=timestamp,
                note=note,
                status=status,
                received_ms=now_ms(),
            )
        )

    def add_checkpoint(
        self,
        *,
        list_id: int,
        size: int,
        root_hash: bytes,
        timestamp: int,
        note: str,
        status: str = "accepted",
    ) -> None:
        with self.write() as conn:
            self._insert_checkpoint(conn, list_id, size, root_hash, timestamp, note, status)

    def latest_checkpoint(self, *, list_id: int) -> CheckpointRow | None:
        """The newest accepted checkpoint: largest size, then newest timestamp."""
        with self.read() as conn:
            return self._latest_checkpoint(conn, list_id)

    def _latest_checkpoint(self, conn: Connection, list_id: int) -> CheckpointRow | None:
        r = conn.execute(
            select(_checkpoints)
            .where(_checkpoints.c.list_id == list_id, _checkpoints.c.status == "accepted")
            .order_by(
                _checkpoints.c.size.desc(),
                _checkpoints.c.timestamp.desc(),
                _checkpoints.c.id.desc(),
            )
            .limit(1)
        ).first()
        return _checkpoint_row(r) if r else None

    def checkpoints(self, *, list_id: int, status: str | None = None) -> list[CheckpointRow]:
        stmt = select(_checkpoints).where(_checkpoints.c.list_id == list_id)
        if status is not None:
            stmt = stmt.where(_checkpoints.c.status == status)
        with self.read() as conn:
            rows = conn.execute(stmt.order_by(_checkpoints.c.id)).all()
        return [_checkpoint_row(r) for r in rows]

    def checkpoint_at(self, *, list_id: int, size: int) -> CheckpointRow | None:
        """The newest accepted checkpoint of exactly ``size``."""
        with self.read() as conn:
            r = conn.execute(
                select(_checkpoints)
                .where(
                    _checkpoints.c.list_id == list_id,
                    _checkpoints.c.status == "accepted",
                    _checkpoints.c.size == size,
                )
                .order_by(_checkpoints.c.timestamp.desc(), _checkpoints.c.id.desc())
                .limit(1)
            ).first()
        return _checkpoint_row(r) if r else None

    def accepted_checkpoints_after(
        self, *, after_id: int, limit: int = 1000
    ) -> list[CheckpointRow]:
        """Accepted checkpoints with ``id > after_id``, oldest first (to notify peers)."""
        with self.read() as conn:
            rows = conn.execute(
                select(_checkpoints)
                .where(_checkpoints.c.id > after_id, _checkpoints.c.status == "accepted")
                .order_by(_checkpoints.c.id)
                .limit(limit)
            ).all()
        return [_checkpoint_row(r) for r in rows]

    def max_checkpoint_id(self) -> int:
        with self.read() as conn:
            return int(conn.execute(select(func.max(_checkpoints.c.id))).scalar() or 0)
