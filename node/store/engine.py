"""All database access. Nothing else in hashfed talks to the database.

The engine is SQLite (WAL) in the node's data folder by default, or
PostgreSQL from a URL. Hot paths (appends, entry and content scans) use
SQLAlchemy Core statements in batches, never one ORM object per row.

Writers wait, they do not refuse: SQLite takes the database write lock up
front (``BEGIN IMMEDIATE``; threads of one process queue on a gate before
it), PostgreSQL locks the list's state row (``SELECT ... FOR UPDATE``), and a
list's state is read only after that, inside the transaction. The wait is
bounded by ``write_lock_timeout`` (SQLite ``busy_timeout``, PostgreSQL
``lock_timeout``); past it the write raises :class:`WriteLockTimeoutError`."""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import psycopg
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    create_engine,
    event,
    func,
    select,
)

from crypto.errors import DatabaseUnavailableError, WriteLockTimeoutError
from node.store.errors import DB_ERRORS, is_lock_timeout, translate_db_error
from node.store.tables import _audit, _content, _entries, _lists

# Rows per executemany / IN clause: SQLite allows 32,766 bound parameters.
_BATCH = 5_000
_IN_BATCH = 500
# PostgreSQL: fewer rows than this are INSERTed, more are COPied.
_COPY_FROM = 64
# SQLite's page cache per connection is 2 MB; a large write's index inserts
# (the log's key index takes rows in hash order, i.e. at random) would read
# and evict a page for most rows. A large write gets this much while it runs.
_BULK_ROWS = 50_000
_BULK_CACHE_KIB = 262_144
_DEFAULT_CACHE_KIB = 2_000
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# How long a writer waits for a list's lock unless the settings say otherwise.
DEFAULT_WRITE_LOCK_TIMEOUT = 10.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # The driver's own transaction handling is off; we BEGIN ourselves (below).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoint; WAL keeps it consistent
        cur.execute("PRAGMA foreign_keys=ON")
        # The bounded wait for another process's write lock.
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.close()

    return on_connect


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


def create_db_engine(url: str, *, write_lock_timeout: float = DEFAULT_WRITE_LOCK_TIMEOUT) -> Engine:
    """An engine for ``url`` with hashfed's SQLite settings where it applies."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Pooled connections: opening one (and its PRAGMAs) costs more than a lookup.
        engine = create_engine(
            url, connect_args={"check_same_thread": False}, pool_size=8, max_overflow=8
        )
        event.listen(engine, "connect", _sqlite_pragmas(int(write_lock_timeout * 1000)))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


# ``revision = "0011"`` and ``down_revision = "0010"`` (or None) in a migration script.
_REVISION_LINE = re.compile(r"""^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+?)\s*$""", re.M)


@functools.cache
def script_head() -> str | None:
    """The newest revision of the migration scripts, read from their text; None if unsure.

    Every ``hashfed`` command opens the store, and asking Alembic whether the
    database is current costs more than the command (importing it and running
    every script): :func:`run_migrations` compares this with the database's
    revision first. Anything but one linear history of plainly written
    revisions answers None, and Alembic decides.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = _REVISION_LINE.findall(path.read_text(encoding="utf-8"))
        if sorted(name for name, _ in found) != ["down_revision", "revision"]:
            return None
        rev, down = dict(found)["revision"], dict(found)["down_revision"]
        if not re.fullmatch(r"""(['"])\w+\1""", rev) or not re.fullmatch(
            r"""None|(['"])\w+\1""", down
        ):
            return None
        revisions.add(rev[1:-1])
        if down != "None":
            parents.add(down[1:-1])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


def _database_revision(engine: Engine) -> str | None:
    """The revision the database was migrated to; None if it has none (or cannot say)."""
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except DB_ERRORS:
        return None  # a new database: no alembic_version table yet
    return str(rows[0][0]) if len(rows) == 1 else None


def run_migrations(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    head = script_head()
    if head is not None and _database_revision(engine) == head:
        return  # current: what Alembic would find too, without loading it
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()


class StoreBase:
    """The engine, transactions and the raw driver paths every query module shares."""

    def __init__(
        self, engine: Engine, *, write_lock_timeout: float = DEFAULT_WRITE_LOCK_TIMEOUT
    ) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.write_lock_timeout = write_lock_timeout
        # SQLite's busy handler polls with sleeps of up to 100 ms: threads of
        # one process queue here instead, in order, and only other processes
        # are waited for by busy_timeout.
        self._write_gate = threading.Lock()

    @classmethod
    def open(
        cls,
        url: str,
        *,
        migrate: bool = True,
        write_lock_timeout: float = DEFAULT_WRITE_LOCK_TIMEOUT,
    ) -> Self:
        """Open the database at ``url``, upgrading its schema first."""
        engine: Engine | None = None
        try:
            engine = create_db_engine(url, write_lock_timeout=write_lock_timeout)
            if migrate:
                run_migrations(engine)
        except DB_ERRORS as exc:
            if engine is not None:
                engine.dispose()
            raise translate_db_error(exc, operation="open") from None
        except OSError as exc:  # the folder or file itself (permissions, a missing mount)
            if engine is not None:
                engine.dispose()
            if exc.errno == errno.ENOSPC:
                raise translate_db_error(exc, operation="open") from None
            raise DatabaseUnavailableError(
                operation="open", reason=exc.strerror or type(exc).__name__
            ) from None
        return cls(engine, write_lock_timeout=write_lock_timeout)

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
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except DB_ERRORS as exc:
            raise translate_db_error(exc, operation="read") from None

    def ping(self) -> bool:
        """Whether the database answers a trivial query now (readiness probes)."""
        try:
            with self.read() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception:  # any failure means "not ready"; the probe gives no detail
            return False
        return True

    def _connect(self, operation: str) -> Connection:
        """A pooled connection; failing to get one is a translated error too."""
        try:
            return self.engine.connect()
        except DB_ERRORS as exc:
            raise translate_db_error(exc, operation=operation) from None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        gated = self.is_sqlite
        if gated and not self._write_gate.acquire(timeout=self.write_lock_timeout):
            raise WriteLockTimeoutError(seconds=self.write_lock_timeout)
        try:
            with self._write_transaction() as conn:
                yield conn
        finally:
            if gated:
                self._write_gate.release()

    @contextmanager
    def _write_transaction(self) -> Iterator[Connection]:
        with self._connect("write") as conn:
            conn.info["write"] = True
            try:
                with conn.begin():
                    if not self.is_sqlite:
                        # Bounds every lock this transaction waits for: the
                        # list's row lock and the audit chain's.
                        ms = max(1, int(self.write_lock_timeout * 1000))
                        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}")
                    yield conn
            except DB_ERRORS as exc:
                if is_lock_timeout(exc):
                    raise WriteLockTimeoutError(seconds=self.write_lock_timeout) from None
                raise translate_db_error(exc, operation="write") from None
            finally:
                conn.info.pop("write", None)

    def _bulk_cache_on(self, conn: Connection, rows: int) -> bool:
        """A larger SQLite page cache for the rest of a ``rows``-row write; whether it was set."""
        if not self.is_sqlite or rows < _BULK_ROWS:
            return False
        conn.exec_driver_sql(f"PRAGMA cache_size=-{_BULK_CACHE_KIB}")
        return True

    def _bulk_cache_off(self, conn: Connection) -> None:
        # Pages still dirty stay until the commit writes them; clean ones go.
        # A connection that failed keeps its cache until the pool drops it.
        with contextlib.suppress(*DB_ERRORS):
            conn.exec_driver_sql(f"PRAGMA cache_size=-{_DEFAULT_CACHE_KIB}")

    def _bulk_insert(
        self,
        conn: Connection,
        table: str,
        columns: tuple[str, ...],
        rows: Iterable[tuple[Any, ...]],
    ) -> None:
        """Insert many rows through the driver: COPY on PostgreSQL, executemany on SQLite.

        The hot path of imports and sync: SQLAlchemy's per-row parameter
        processing costs more than the insert itself at a million rows.
        """
        with self._write_cursor(conn) as cur:
            self._bulk_rows(cur, table, columns, rows)

    @contextmanager
    def _write_cursor(self, conn: Connection) -> Iterator[Any]:
        """A driver cursor of a write transaction; its errors leave as hashfed errors."""
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            yield cur
        except (sqlite3.Error, psycopg.Error) as exc:
            if is_lock_timeout(exc):
                raise WriteLockTimeoutError(seconds=self.write_lock_timeout) from None
            raise translate_db_error(exc, operation="write") from None
        finally:
            cur.close()

    def _insert_if_new(
        self,
        conn: Connection,
        table: str,
        columns: tuple[str, ...],
        rows: Iterable[tuple[Any, ...]],
    ) -> bool:
        """As :meth:`_bulk_insert`, unless a row's key exists already: then none, and False.

        Cheaper than looking each key up first where none usually exists (a
        savepoint undoes the rows inserted before the one that clashed).
        """
        with self._write_cursor(conn) as cur:
            cur.execute("SAVEPOINT insert_if_new")
            try:
                self._bulk_rows(cur, table, columns, rows)
            except (sqlite3.IntegrityError, psycopg.IntegrityError):
                cur.execute("ROLLBACK TO SAVEPOINT insert_if_new")
                new = False
            else:
                new = True
            # Not after other errors: a full disk may have ended the transaction.
            cur.execute("RELEASE SAVEPOINT insert_if_new")
            return new

    def _bulk_rows(
        self, cur: Any, table: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]
    ) -> None:
        """The driver calls of :meth:`_bulk_insert`, whose errors it translates."""
        names = ", ".join(columns)
        if self.is_sqlite:
            # Table and column names are this module's constants, never input.
            sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"  # noqa: S608
            it = iter(rows)
            while chunk := list(itertools.islice(it, _BATCH)):
                cur.executemany(sql, chunk)
            return
        it = iter(rows)
        head = list(itertools.islice(it, _COPY_FROM))
        if len(head) < _COPY_FROM:
            # A few rows (one admin add): COPY's extra round trips cost
            # more than it saves, and they are made holding the list lock.
            marks = ", ".join(["%s"] * len(columns))
            cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", head)  # noqa: S608
            return
        with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in itertools.chain(head, it):
                copy.write_row(row)

    def _driver_pages(self, stmt: Select[Any], page: int) -> Iterator[list[Any]]:
        """Run ``stmt`` on a raw driver cursor and yield pages of plain tuples.

        Index loads, feeds and verification read millions of rows: driver
        tuples, a page at a time, skip SQLAlchemy's per-row Row objects.
        """
        try:
            yield from self._driver_pages_raw(stmt, page)
        except DB_ERRORS as exc:
            raise translate_db_error(exc, operation="read") from None

    def _driver_pages_raw(self, stmt: Select[Any], page: int) -> Iterator[list[Any]]:
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

    # --- counts ---------------------------------------------------------------------------------

    def count_rows(self, table: str) -> int:
        tables = {"entries": _entries, "content": _content, "audit": _audit, "lists": _lists}
        with self.read() as conn:
            return int(conn.execute(select(func.count()).select_from(tables[table])).scalar_one())
