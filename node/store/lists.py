"""Lists: their rows and metadata."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    bindparam,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from crypto.errors import ListExistsError
from node.store.audit import AuditQueries
from node.store.engine import now_ms
from node.store.rows import (
    ListRow,
)
from node.store.tables import (
    _lists,
    _state,
)

# Built once: every admin add looks its list up, and building the statement
# cost more than running it.
_LIST_BY_NAME = select(_lists).where(
    _lists.c.owner == bindparam("owner"), _lists.c.name == bindparam("name")
)


class ListQueries(AuditQueries):
    def create_list(
        self,
        *,
        owner: str,
        name: str,
        label: str,
        description: str = "",
        local: bool = True,
        source_peer: str | None = None,
        kind: str = "block",
        allow_distance: int = 0,
        empty_range: bytes,
        audit: tuple[str, str, str, int, dict[str, Any]] | None = None,
    ) -> ListRow:
        """Create a list with an empty log, and its audit record; ListExistsError if taken."""
        created = now_ms()
        with self.write() as conn:
            try:
                list_id = conn.execute(
                    _lists.insert().values(
                        owner=owner,
                        name=name,
                        label=label,
                        description=description,
                        local=local,
                        source_peer=source_peer,
                        kind=kind,
                        allow_distance=allow_distance,
                        created_ms=created,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            except IntegrityError:
                raise ListExistsError(list_name=f"{owner}/{name}") from None
            conn.execute(
                _state.insert().values(
                    list_id=list_id, size=0, compact_range=empty_range, live_count=0
                )
            )
            if audit is not None:
                self._append_audit(conn, *audit)
        row = self.get_list(owner=owner, name=name)
        assert row is not None
        return row

    def get_list(self, *, owner: str, name: str) -> ListRow | None:
        with self.read() as conn:
            r = conn.execute(_LIST_BY_NAME, {"owner": owner, "name": name}).first()
        return ListRow(**r._mapping) if r else None

    def get_list_by_id(self, list_id: int) -> ListRow | None:
        with self.read() as conn:
            r = conn.execute(select(_lists).where(_lists.c.id == list_id)).first()
        return ListRow(**r._mapping) if r else None

    def all_lists(self) -> list[ListRow]:
        with self.read() as conn:
            rows = conn.execute(select(_lists).order_by(_lists.c.owner, _lists.c.name)).all()
        return [ListRow(**r._mapping) for r in rows]

    def update_list(self, *, list_id: int, **values: Any) -> None:
        """Update list metadata (label, description, source_peer, frozen_reason)."""
        allowed = {"label", "description", "source_peer", "frozen_reason"}
        if not set(values) <= allowed:
            raise ValueError(f"cannot update {set(values) - allowed}")
        with self.write() as conn:
            conn.execute(update(_lists).where(_lists.c.id == list_id).values(**values))
