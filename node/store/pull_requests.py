"""Pull requests: a notify handed from any serve process to the scheduler's holder.

Several serve processes share one database, and only one of them runs the
scheduler. A notify that reaches another process is written here; the holder
takes the rows in its checkpoint watcher (every 0.25 s) and pulls. The table
is the contract on both backends, so it needs nothing PostgreSQL-specific.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from node.store.engine import StoreBase, now_ms


class PullRequestQueries(StoreBase):
    def _pull_table(self) -> Any:
        from node.store.models import PullRequest

        return PullRequest.__table__  # type: ignore[attr-defined]

    def request_pull(self, *, peer: str) -> None:
        """Ask the scheduler's holder to pull ``peer`` (one pending row per peer)."""
        from sqlalchemy.dialects import postgresql, sqlite

        table = self._pull_table()
        row = {"peer": peer, "requested_ms": now_ms()}
        insert: Any = sqlite.insert(table) if self.is_sqlite else postgresql.insert(table)
        stmt = insert.values(**row).on_conflict_do_update(
            index_elements=["peer"], set_={"requested_ms": row["requested_ms"]}
        )
        with self.write() as conn:
            conn.execute(stmt)

    def take_pull_requests(self) -> list[str]:
        """The peers asked for since the last call, removed from the table.

        Read first, so the usual empty poll takes no write lock; a request
        written between the read and the delete (a newer ``requested_ms``)
        stays for the next call, so none is lost.
        """
        table = self._pull_table()
        with self.read() as conn:
            rows = [tuple(r) for r in conn.execute(select(table.c.peer, table.c.requested_ms))]
        if not rows:
            return []
        with self.write() as conn:
            for peer, requested in rows:
                conn.execute(
                    delete(table).where(table.c.peer == peer, table.c.requested_ms <= requested)
                )
        return sorted(peer for peer, _ in rows)
