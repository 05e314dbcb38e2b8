"""All database access. Nothing else in hashfed talks to the database.

The engine is SQLite (WAL) in the node's data folder by default, or
PostgreSQL from a URL. Hot paths (appends, entry and content scans) use
SQLAlchemy Core statements in batches, never one ORM object per row.

Write transactions are serialised per list: SQLite takes the database write
lock up front (``BEGIN IMMEDIATE``) and PostgreSQL locks the list's state row,
and :meth:`Store.append` re-checks the size it was computed against, so two
writers can never interleave entries.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from crypto.errors import ListExistsError, StoreError
from node.models import (
    ApiToken,
    AuditRecord,
    Checkpoint,
    Content,
    HashList,
    ListState,
    LogEntry,
    Principal,
)

_lists = HashList.__table__  # type: ignore[attr-defined]
_entries = LogEntry.__table__  # type: ignore[attr-defined]
_state = ListState.__table__  # type: ignore[attr-defined]
_checkpoints = Checkpoint.__table__  # type: ignore[attr-defined]
_content = Content.__table__  # type: ignore[attr-defined]
_audit = AuditRecord.__table__  # type: ignore[attr-defined]
_principals = Principal.__table__  # type: ignore[attr-defined]
_tokens = ApiToken.__table__  # type: ignore[attr-defined]

# Rows per executemany / IN clause: SQLite allows 32,766 bound parameters.
_BATCH = 5_000
_IN_BATCH = 500
AUDIT_GENESIS = b"\x00" * 32
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class ListRow:
    id: int
    owner: str
    name: str
    label: str
    description: str
    local: bool
    source_peer: str | None
    frozen_reason: str | None
    created_ms: int

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True)
class StateRow:
    size: int
    compact_range: bytes
    live_count: int


@dataclass(frozen=True)
class CheckpointRow:
    id: int
    list_id: int
    size: int
    root_hash: bytes
    timestamp: int
    note: str
    status: str
    received_ms: int


@dataclass(frozen=True)
class AuditRow:
    id: int
    ts_ms: int
    actor: str
    action: str
    target: str
    count: int
    detail: str
    prev_hash: bytes
    record_hash: bytes


@dataclass(frozen=True)
class PrincipalRow:
    id: int
    name: str
    role: str
    labels: frozenset[str]
    cert_fingerprint: str | None
    created_ms: int


# An entry as the store writes it: (seq, op, hash_type, value, category, timestamp_ms).
EntryTuple = tuple[int, str, str, str, str, int]
# A content row: (hash_type, value, category, seq).
ContentTuple = tuple[str, str, str, int]


def audit_record_hash(
    prev_hash: bytes, ts_ms: int, actor: str, action: str, target: str, count: int, detail: str
) -> bytes:
    """SHA-256 over the previous record's hash and this record's canonical JSON."""
    body = json.dumps(
        [ts_ms, actor, action, target, count, detail], separators=(",", ":"), ensure_ascii=False
    ).encode()
    return hashlib.sha256(prev_hash + body).digest()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The driver's own transaction handling is off; we BEGIN ourselves (below).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoint; WAL keeps it consistent
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # Writers take the lock at BEGIN so two read-then-write transactions
    # cannot both read the same list size (SQLAlchemy's pysqlite recipe).
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")


def _values_by_type(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """``(type, value)`` pairs grouped as ``type -> values``, for per-type primary-key IN."""
    by_type: dict[str, list[str]] = {}
    for htype, value in pairs:
        by_type.setdefault(htype, []).append(value)
    return by_type


def create_db_engine(url: str) -> Engine:
    """An engine for ``url`` with hashfed's SQLite settings where it applies."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Pooled connections: opening one (and its PRAGMAs) costs more than a lookup.
        engine = create_engine(
            url, connect_args={"check_same_thread": False}, pool_size=8, max_overflow=8
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def run_migrations(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()


class Store:
    """The node's database. Methods take keyword arguments; rows come back frozen."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        """Open the database at ``url``, upgrading its schema first."""
        engine = create_db_engine(url)
        try:
            if migrate:
                run_migrations(engine)
        except OperationalError as exc:
            engine.dispose()
            raise StoreError(f"cannot open database: {exc.orig}") from None
        except OSError as exc:
            engine.dispose()
            raise StoreError(f"cannot open database: {exc}") from None
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def shared_url(self) -> str | None:
        """This database's URL for another process to open; None for an in-memory one."""
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            return None
        return url.render_as_string(hide_password=False)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.info["write"] = True
            try:
                with conn.begin():
                    yield conn
            except (sqlite3.Error, psycopg.Error) as exc:
                # Raw driver errors come from the bulk paths (_bulk_insert). Their
                # text can quote row values (PostgreSQL's DETAIL does), and rows
                # hold hashes: only the error class and SQLSTATE are kept.
                state = getattr(exc, "sqlstate", None) or getattr(exc, "sqlite_errorname", "")
                raise StoreError(
                    f"the database refused the write: {type(exc).__name__} {state}".rstrip()
                ) from None
            finally:
                conn.info.pop("write", None)

    # --- lists -------------------------------------------------------------------

    def create_list(
        self,
        *,
        owner: str,
        name: str,
        label: str,
        description: str = "",
        local: bool = True,
        source_peer: str | None = None,
        empty_range: bytes,
    ) -> ListRow:
        """Create a list with an empty log; raises ListExistsError if taken."""
        created = now_ms()
        try:
            with self.write() as conn:
                list_id = conn.execute(
                    _lists.insert().values(
                        owner=owner,
                        name=name,
                        label=label,
                        description=description,
                        local=local,
                        source_peer=source_peer,
                        created_ms=created,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
                conn.execute(
                    _state.insert().values(
                        list_id=list_id, size=0, compact_range=empty_range, live_count=0
                    )
                )
        except IntegrityError:
            raise ListExistsError(list_name=f"{owner}/{name}") from None
        row = self.get_list(owner=owner, name=name)
        assert row is not None
        return row

    def get_list(self, *, owner: str, name: str) -> ListRow | None:
        with self.read() as conn:
            r = conn.execute(
                select(_lists).where(_lists.c.owner == owner, _lists.c.name == name)
            ).first()
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

    # --- log state ------------------------------------------------------------------

    def get_state(self, *, list_id: int, conn: Connection | None = None) -> StateRow:
        stmt = select(_state.c.size, _state.c.compact_range, _state.c.live_count).where(
            _state.c.list_id == list_id
        )
        if conn is not None:
            r = conn.execute(stmt).one()
        else:
            with self.read() as c:
                r = c.execute(stmt).one()
        return StateRow(r.size, bytes(r.compact_range), r.live_count)

    def append(
        self,
        *,
        list_id: int,
        expected_size: int,
        entries: Sequence[EntryTuple],
        adds: Sequence[ContentTuple],
        removes: Sequence[tuple[str, str]],
        new_state: StateRow,
        checkpoints: Sequence[tuple[int, bytes, int, str, str]] = (),
        audit: tuple[str, str, str, int, dict[str, Any]] | None = None,
        progress: Any = None,
    ) -> None:
        """Append entries and their effect on content, state and checkpoints atomically.

        ``checkpoints`` are ``(size, root_hash, timestamp, note, status)``;
        ``audit`` is ``(actor, action, target, count, detail)``. Raises
        StoreError if the list grew since ``expected_size`` was read.
        """
        with self.write() as conn:
            lock = select(_state.c.size).where(_state.c.list_id == list_id)
            if not self.is_sqlite:
                lock = lock.with_for_update()
            size = conn.execute(lock).scalar_one()
            if size != expected_size:
                raise StoreError(
                    f"list {list_id} changed concurrently: expected size {expected_size}, "
                    f"found {size}; retry"
                )
            self._bulk_insert(
                conn,
                "log_entry",
                ("list_id", "seq", "op", "hash_type", "value", "category", "timestamp_ms"),
                ((list_id, *e) for e in entries),
                progress=progress,
            )
            # Per type, ``value IN (...)``: SQLite answers a row-value IN of
            # (type, value) pairs with a scan of the whole list (8 s for 1,000
            # removals at 10M), this with primary-key searches.
            for htype, values in _values_by_type(removes).items():
                for i in range(0, len(values), _IN_BATCH):
                    conn.execute(
                        delete(_content).where(
                            _content.c.list_id == list_id,
                            _content.c.hash_type == htype,
                            _content.c.value.in_(values[i : i + _IN_BATCH]),
                        )
                    )
            # Key order turns B-tree inserts into appends: several times faster
            # for large imports on both backends.
            self._bulk_insert(
                conn,
                "content",
                ("list_id", "hash_type", "value", "category", "seq"),
                ((list_id, *a) for a in sorted(adds)),
            )
            conn.execute(
                update(_state)
                .where(_state.c.list_id == list_id)
                .values(
                    size=new_state.size,
                    compact_range=new_state.compact_range,
                    live_count=new_state.live_count,
                )
            )
            for cp in checkpoints:
                self._insert_checkpoint(conn, list_id, *cp)
            if audit is not None:
                self._append_audit(conn, *audit)

    def _bulk_insert(
        self,
        conn: Connection,
        table: str,
        columns: tuple[str, ...],
        rows: Iterable[tuple[Any, ...]],
        *,
        progress: Any = None,
    ) -> None:
        """Insert many rows through the driver: COPY on PostgreSQL, executemany on SQLite.

        The hot path of imports and sync: SQLAlchemy's per-row parameter
        processing costs more than the insert itself at a million rows.
        """
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if self.is_sqlite:
                # Table and column names are this module's constants, never input.
                marks = ", ".join("?" * len(columns))
                sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
                it = iter(rows)
                while chunk := list(itertools.islice(it, _BATCH)):
                    cur.executemany(sql, chunk)
                    if progress is not None:
                        progress(len(chunk))
            else:
                n = 0
                with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                        n += 1
                        if progress is not None and n % _BATCH == 0:
                            progress(_BATCH)
                if progress is not None and n % _BATCH:
                    progress(n % _BATCH)  # the last, partial batch
        finally:
            cur.close()

    # --- entries and content ------------------------------------------------------------

    def iter_entries(
        self, *, list_id: int, start: int = 0, end: int | None = None, page: int = 50_000
    ) -> Iterator[EntryTuple]:
        """Entries with ``start <= seq < end`` in seq order, read a page at a time."""
        for rows in self.iter_entry_pages(list_id=list_id, start=start, end=end, page=page):
            yield from rows

    def iter_entry_pages(
        self, *, list_id: int, start: int = 0, end: int | None = None, page: int = 65_536
    ) -> Iterator[list[EntryTuple]]:
        """As :meth:`iter_entries`, a page of up to ``page`` entries at a time.

        Raises:
            StoreError: an entry in the range is missing.
        """
        if end is None:
            end = self.get_state(list_id=list_id).size
        ph = "?" if self.is_sqlite else "%s"
        sql = (
            "SELECT seq, op, hash_type, value, category, timestamp_ms FROM log_entry "  # noqa: S608
            f"WHERE list_id = {ph} AND seq >= {ph} AND seq < {ph} ORDER BY seq"
        )
        pos = start
        while pos < end:
            upto = min(pos + page, end)
            # Plain driver tuples: this scan feeds verification and proofs a
            # million rows at a time.
            with self.read() as conn:
                cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    cur.execute(sql, (list_id, pos, upto))
                    rows = cur.fetchall()
                finally:
                    cur.close()
            if len(rows) != upto - pos:
                raise StoreError(
                    f"list {list_id}: entries {pos}..{upto - 1} are incomplete in the database"
                )
            yield list(rows)
            pos = upto

    def existing_content(
        self, *, list_id: int, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, int]]:
        """Which of ``keys`` the list holds now: ``(category, seq of the add)`` each."""
        # [federation, issue 4] a row-value IN of (type, value) pairs made SQLite
        # scan the whole list per batch; content_of searches the primary key.
        return self.content_of(list_id=list_id, keys=keys)

    def iter_content(
        self, *, list_ids: Sequence[int] | None = None, page: int = 100_000
    ) -> Iterator[list[tuple[int, str, str, str]]]:
        """Current content as pages of ``(list_id, hash_type, value, category)``."""
        cols = (_content.c.list_id, _content.c.hash_type, _content.c.value, _content.c.category)
        stmt = select(*cols).order_by(_content.c.list_id, _content.c.hash_type, _content.c.value)
        if list_ids is not None:
            stmt = stmt.where(_content.c.list_id.in_(list_ids))
        return self._driver_pages(stmt, page)

    def iter_sorted_content(
        self, *, list_id: int, page: int = 65_536
    ) -> Iterator[list[tuple[str, str, str, int]]]:
        """A list's content as pages of ``(hash_type, value, category, seq)``, sorted."""
        c = _content.c
        cols = (c.hash_type, c.value, c.category, c.seq)
        stmt = select(*cols).where(c.list_id == list_id).order_by(*cols)
        return self._driver_pages(stmt, page)

    def iter_sorted_adds(
        self, *, list_id: int, end: int, page: int = 65_536
    ) -> Iterator[list[tuple[str, str, str, int]]]:
        """The add entries below ``end`` as :meth:`iter_sorted_content` pages, sorted alike.

        The database sorts: comparing a million of these with the content
        table is a C-level list comparison, page by page.
        """
        e = _entries.c
        cols = (e.hash_type, e.value, e.category, e.seq)
        stmt = select(*cols).where(e.list_id == list_id, e.seq < end, e.op == "add").order_by(*cols)
        return self._driver_pages(stmt, page)

    def log_is_adds_only(self, *, list_id: int, end: int) -> bool:
        """Whether every entry below ``end`` is an add."""
        e = _entries.c
        other = select(e.seq).where(e.list_id == list_id, e.seq < end, e.op != "add").limit(1)
        with self.read() as conn:
            return conn.execute(other).first() is None

    def _driver_pages(self, stmt: Select[Any], page: int) -> Iterator[list[Any]]:
        """Run ``stmt`` on a raw driver cursor and yield pages of plain tuples.

        Index loads, feeds and verification read millions of rows: driver
        tuples, a page at a time, skip SQLAlchemy's per-row Row objects.
        """
        with self.engine.connect() as conn:
            compiled = stmt.compile(conn, compile_kwargs={"render_postcompile": True})
            cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                params = compiled.params
                args = (
                    tuple(params[k] for k in compiled.positiontup or ())
                    if compiled.positional
                    else params
                )
                cur.execute(str(compiled), args)
                while rows := cur.fetchmany(page):
                    yield list(rows)
            finally:
                cur.close()

    # --- checkpoints ----------------------------------------------------------------------

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

    # --- audit ----------------------------------------------------------------------------

    def _append_audit(
        self,
        conn: Connection,
        actor: str,
        action: str,
        target: str,
        count: int,
        detail: dict[str, Any],
    ) -> None:
        self._append_audit_chain(conn, [(actor, action, target, count, detail)])

    def _append_audit_chain(
        self, conn: Connection, records: Sequence[tuple[str, str, str, int, dict[str, Any]]]
    ) -> None:
        if not self.is_sqlite:
            # One chain: concurrent writers must not both extend the same record.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7214321)")
        prev = conn.execute(
            select(_audit.c.record_hash).order_by(_audit.c.id.desc()).limit(1)
        ).scalar()
        prev_hash = bytes(prev) if prev is not None else AUDIT_GENESIS
        rows = []
        for actor, action, target, count, detail in records:
            ts = now_ms()
            detail_s = json.dumps(detail, sort_keys=True, separators=(",", ":"))
            record_hash = audit_record_hash(prev_hash, ts, actor, action, target, count, detail_s)
            rows.append(
                {
                    "ts_ms": ts,
                    "actor": actor,
                    "action": action,
                    "target": target,
                    "count": count,
                    "detail": detail_s,
                    "prev_hash": prev_hash,
                    "record_hash": record_hash,
                }
            )
            prev_hash = record_hash
        # ids ascend in list order within one statement on both backends.
        conn.execute(_audit.insert(), rows)

    def append_audit(
        self, *, actor: str, action: str, target: str = "", count: int = 0, detail: dict[str, Any]
    ) -> None:
        with self.write() as conn:
            self._append_audit(conn, actor, action, target, count, detail)

    def append_audit_many(
        self, records: Sequence[tuple[str, str, str, int, dict[str, Any]]]
    ) -> None:
        """Append several ``(actor, action, target, count, detail)`` records, chained, at once."""
        if records:
            with self.write() as conn:
                self._append_audit_chain(conn, records)

    def audit_records(self, *, after_id: int = 0, limit: int = 1000) -> list[AuditRow]:
        with self.read() as conn:
            rows = conn.execute(
                select(_audit).where(_audit.c.id > after_id).order_by(_audit.c.id).limit(limit)
            ).all()
        return [
            AuditRow(
                **{
                    **r._mapping,
                    "prev_hash": bytes(r.prev_hash),
                    "record_hash": bytes(r.record_hash),
                }
            )
            for r in rows
        ]

    # --- principals and tokens ------------------------------------------------------------------

    def add_principal(
        self, *, name: str, role: str, labels: Iterable[str], cert_fingerprint: str | None
    ) -> PrincipalRow:
        try:
            with self.write() as conn:
                conn.execute(
                    _principals.insert().values(
                        name=name,
                        role=role,
                        labels=",".join(sorted(set(labels))),
                        cert_fingerprint=cert_fingerprint,
                        created_ms=now_ms(),
                    )
                )
        except IntegrityError:
            raise StoreError(
                f"a principal named {name!r} or with that certificate exists already"
            ) from None
        row = self.get_principal(name=name)
        assert row is not None
        return row

    def get_principal(
        self, *, name: str | None = None, cert_fingerprint: str | None = None
    ) -> PrincipalRow | None:
        stmt = select(_principals)
        if name is not None:
            stmt = stmt.where(_principals.c.name == name)
        elif cert_fingerprint is not None:
            stmt = stmt.where(_principals.c.cert_fingerprint == cert_fingerprint)
        else:
            raise ValueError("name or cert_fingerprint is required")
        with self.read() as conn:
            r = conn.execute(stmt).first()
        return _principal_row(r) if r else None

    def all_principals(self) -> list[PrincipalRow]:
        with self.read() as conn:
            rows = conn.execute(select(_principals).order_by(_principals.c.name)).all()
        return [_principal_row(r) for r in rows]

    def remove_principal(self, *, name: str) -> bool:
        with self.write() as conn:
            pid = conn.execute(select(_principals.c.id).where(_principals.c.name == name)).scalar()
            if pid is None:
                return False
            conn.execute(delete(_tokens).where(_tokens.c.principal_id == pid))
            conn.execute(delete(_principals).where(_principals.c.id == pid))
        return True

    def add_token(
        self,
        *,
        principal_id: int,
        token_hash: str,
        prefix: str,
        scopes: str,
        expires_ms: int | None,
    ) -> None:
        with self.write() as conn:
            conn.execute(
                _tokens.insert().values(
                    principal_id=principal_id,
                    token_hash=token_hash,
                    prefix=prefix,
                    scopes=scopes,
                    created_ms=now_ms(),
                    expires_ms=expires_ms,
                )
            )

    def principal_for_token(self, *, token_hash: str) -> tuple[PrincipalRow, str] | None:
        """The principal and scopes of a live token, or None."""
        with self.read() as conn:
            r = conn.execute(
                select(_principals, _tokens.c.scopes, _tokens.c.expires_ms)
                .join(_tokens, _tokens.c.principal_id == _principals.c.id)
                .where(_tokens.c.token_hash == token_hash, _tokens.c.revoked.is_(False))
            ).first()
        if r is None or (r.expires_ms is not None and r.expires_ms < now_ms()):
            return None
        return _principal_row(r), r.scopes

    def revoke_tokens(self, *, prefix: str) -> int:
        with self.write() as conn:
            res = conn.execute(
                update(_tokens).where(_tokens.c.prefix == prefix).values(revoked=True)
            )
        return res.rowcount

    # --- counts ---------------------------------------------------------------------------------

    def count_rows(self, table: str) -> int:
        tables = {"entries": _entries, "content": _content, "audit": _audit, "lists": _lists}
        with self.read() as conn:
            return int(conn.execute(select(func.count()).select_from(tables[table])).scalar_one())

    # --- federation (peer state, received lists) ---
    # Added for issue 4 (federation/). Rows come back as plain dicts.

    def _fed_tables(self) -> tuple[Any, Any]:
        from node.models import ListSync, PeerHealth

        return PeerHealth.__table__, ListSync.__table__  # type: ignore[attr-defined]

    def _upsert(
        self,
        conn: Connection,
        table: Any,
        keys: dict[str, Any],
        values: dict[str, Any],
        defaults: dict[str, Any] | None = None,
    ) -> None:
        """Insert ``keys + defaults + values``, or update ``values`` of the existing row."""
        from sqlalchemy.dialects import postgresql, sqlite

        row = {**(defaults or {}), **keys, **values}
        if self.is_sqlite:
            stmt: Any = sqlite.insert(table).values(**row)
        else:
            stmt = postgresql.insert(table).values(**row)
        conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=values))

    def save_peer_health(self, *, peer: str, **values: Any) -> None:
        """Create or update a peer's health row with the given columns."""
        health, _ = self._fed_tables()
        allowed = {
            "last_attempt_ms",
            "last_success_ms",
            "last_error_code",
            "last_error",
            "failures",
            "next_attempt_ms",
            "lag_entries",
        }
        if not set(values) <= allowed:
            raise ValueError(f"cannot set {set(values) - allowed}")
        with self.write() as conn:
            self._upsert(
                conn,
                health,
                {"peer": peer},
                {**values, "updated_ms": now_ms()},
                defaults={"failures": 0, "lag_entries": 0},
            )

    def peer_health(self, *, peer: str | None = None) -> list[dict[str, Any]]:
        """Health rows, of one peer or of all, by peer id."""
        health, _ = self._fed_tables()
        stmt = select(health).order_by(health.c.peer)
        if peer is not None:
            stmt = stmt.where(health.c.peer == peer)
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def save_list_sync(
        self,
        *,
        owner: str,
        name: str,
        peer: str,
        outcome: str,
        error_code: str | None = None,
        detail: str = "",
        offered_size: int = 0,
        offered_timestamp: int = 0,
        local_size: int = 0,
    ) -> None:
        """Record what ``peer`` offered of ``owner/name`` and what became of it."""
        _, sync = self._fed_tables()
        values = {
            "outcome": outcome,
            "error_code": error_code,
            "detail": detail[:1000],
            "offered_size": offered_size,
            "offered_timestamp": offered_timestamp,
            "local_size": local_size,
            "updated_ms": now_ms(),
        }
        with self.write() as conn:
            self._upsert(conn, sync, {"owner": owner, "name": name, "peer": peer}, values)

    def list_sync_rows(self, *, peer: str | None = None) -> list[dict[str, Any]]:
        _, sync = self._fed_tables()
        stmt = select(sync).order_by(sync.c.peer, sync.c.owner, sync.c.name)
        if peer is not None:
            stmt = stmt.where(sync.c.peer == peer)
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def forget_peer(self, *, peer: str) -> None:
        """Drop a removed peer's health and offer records (lists and evidence stay)."""
        health, sync = self._fed_tables()
        with self.write() as conn:
            conn.execute(delete(health).where(health.c.peer == peer))
            conn.execute(delete(sync).where(sync.c.peer == peer))

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

    def record_evidence(
        self,
        *,
        list_id: int,
        checkpoints: Sequence[tuple[int, bytes, int, str]],
        freeze_reason: str | None,
        audit: tuple[str, str, str, int, dict[str, Any]],
    ) -> None:
        """Keep refused signed checkpoints as evidence, maybe freeze the list; one transaction.

        ``checkpoints`` are ``(size, root_hash, timestamp, note)``, stored with
        status ``evidence`` unless the same note is stored already.
        """
        with self.write() as conn:
            for size, root, ts, note in checkpoints:
                seen = conn.execute(
                    select(_checkpoints.c.id)
                    .where(
                        _checkpoints.c.list_id == list_id,
                        _checkpoints.c.size == size,
                        _checkpoints.c.note == note,
                    )
                    .limit(1)
                ).first()
                if seen is None:
                    self._insert_checkpoint(conn, list_id, size, root, ts, note, "evidence")
            if freeze_reason is not None:
                conn.execute(
                    update(_lists)
                    .where(_lists.c.id == list_id)
                    .values(frozen_reason=freeze_reason[:500])
                )
            self._append_audit(conn, *audit)

    def content_of(
        self, *, list_id: int, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, int]]:
        """As ``existing_content``, but one ``hash_type = ? AND value IN (...)`` per type.

        SQLite does not use the primary key for a row-value ``IN`` of pairs: each
        batch of 500 scans the whole list (~0.3 s at 400k hashes). Per type,
        the lookup is a primary-key search: ~100x faster on large lists.
        """
        by_type = _values_by_type(keys)
        found: dict[tuple[str, str], tuple[str, int]] = {}
        cols = (_content.c.hash_type, _content.c.value, _content.c.category, _content.c.seq)
        with self.read() as conn:
            for htype, values in by_type.items():
                for i in range(0, len(values), _IN_BATCH):
                    rows = conn.execute(
                        select(*cols).where(
                            _content.c.list_id == list_id,
                            _content.c.hash_type == htype,
                            _content.c.value.in_(values[i : i + _IN_BATCH]),
                        )
                    )
                    for t, v, c, seq in rows:
                        found[(t, v)] = (c, seq)
        return found

    def try_advisory_lock(self, *, key: int) -> Connection | None:
        """PostgreSQL: take a session advisory lock on a connection kept open.

        Returns the connection holding it (close it to release), or None if
        another session holds it. SQLite has no such lock: callers use a file lock.
        """
        if self.is_sqlite:
            raise StoreError("advisory locks need PostgreSQL")
        conn = self.engine.connect()
        conn.detach()  # closing it must end the session (and the lock), not pool it
        try:
            got = conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({int(key)})").scalar()
            conn.commit()  # the session lock outlives the transaction; do not idle in one
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            return None
        return conn


def _checkpoint_row(r: Any) -> CheckpointRow:
    m = dict(r._mapping)
    m["root_hash"] = bytes(m["root_hash"])
    return CheckpointRow(**m)


def _principal_row(r: Any) -> PrincipalRow:
    return PrincipalRow(
        id=r.id,
        name=r.name,
        role=r.role,
        labels=frozenset(x for x in r.labels.split(",") if x),
        cert_fingerprint=r.cert_fingerprint,
        created_ms=r.created_ms,
    )
