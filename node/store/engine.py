"""All database access. Nothing else in hashfed talks to the database.

The engine is SQLite (WAL) in the node's data folder by default, or
PostgreSQL from a URL. Hot paths (appends, entry and content scans) use
SQLAlchemy Core statements in batches, never one ORM object per row.

Write transactions are serialised per list: SQLite takes the database write
lock up front (``BEGIN IMMEDIATE``) and PostgreSQL locks the list's state row,
and :meth:`Store.append` re-checks the size it was computed against, so two
writers can never interleave entries."""

from __future__ import annotations

import errno
import itertools
import sqlite3
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
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from crypto.errors import DatabaseUnavailableError, StorageFullError, StoreError
from node.store.tables import _audit, _content, _entries, _lists

# Rows per executemany / IN clause: SQLite allows 32,766 bound parameters.
_BATCH = 5_000
_IN_BATCH = 500
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


# SQLite primary result codes (extended codes carry them in the low byte).
_SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 10, 13, 14
# PostgreSQL SQLSTATEs: disk_full; connection exceptions; operator intervention
# (admin_shutdown when a backend is terminated, crash_shutdown, cannot_connect_now).
_PG_DISK_FULL = "53100"
_PG_UNAVAILABLE_CLASSES = ("08", "57P")
# What a database failure arrives as: wrapped by SQLAlchemy, or raw from the
# driver paths below. Not OSError: inside a transaction it may be the caller's
# own file (an import); only ENOSPC is translated wherever it arrives.
DB_ERRORS = (DBAPIError, sqlite3.Error, psycopg.Error)
# Everything the database layer can raise, for last-resort handlers (the CLI's main).
ANY_DB_ERROR = (SQLAlchemyError, sqlite3.Error, psycopg.Error)


def translate_db_error(exc: BaseException, *, operation: str) -> BaseException:
    """The hashfed error for a database failure; the one place that classifies them.

    Disk full becomes :class:`StorageFullError`, a database that cannot be
    reached or dropped the connection :class:`DatabaseUnavailableError`, any
    other refusal a plain :class:`StoreError`. Messages name only the error
    class, code or SQLSTATE: a driver's text can quote row values (PostgreSQL's
    DETAIL does), and rows hold hashes. Constraint violations are returned
    unchanged, because the query modules turn them into their own errors
    (a list or principal that exists already); so is anything that is not a
    database error.
    """
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return StorageFullError(operation=operation, reason="no space left on device")
    if not isinstance(exc, DB_ERRORS) or isinstance(exc, IntegrityError):
        return exc
    orig: BaseException | None = exc
    invalidated = False
    if isinstance(exc, DBAPIError):
        orig, invalidated = exc.orig, exc.connection_invalidated
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        name = getattr(orig, "sqlite_errorname", "") or type(orig).__name__
        primary = code & 0xFF if isinstance(code, int) else None
        if primary == _SQLITE_FULL or "database or disk is full" in str(orig):
            return StorageFullError(operation=operation, reason=name)
        if primary in (_SQLITE_IOERR, _SQLITE_CANTOPEN):
            return DatabaseUnavailableError(operation=operation, reason=name)
        return StoreError(f"the database refused the {operation}: {name}")
    if isinstance(orig, psycopg.Error):
        state = orig.sqlstate or ""
        if state == _PG_DISK_FULL:
            return StorageFullError(operation=operation, reason=f"SQLSTATE {state}")
        if state.startswith(_PG_UNAVAILABLE_CLASSES) or invalidated:
            return DatabaseUnavailableError(
                operation=operation, reason=f"{type(orig).__name__} {state}".rstrip()
            )
        if type(orig) is psycopg.OperationalError:
            # The bare class is libpq's own failure (connect, lost connection),
            # never a statement's: its first line names host and reason, no rows.
            first = (str(orig).strip().splitlines() or ["connection failed"])[0][:200]
            return DatabaseUnavailableError(operation=operation, reason=first)
        return StoreError(f"the database refused the {operation}: {type(orig).__name__} {state}")
    if invalidated:
        return DatabaseUnavailableError(operation=operation, reason="connection lost")
    return StoreError(f"the database refused the {operation}: {type(orig).__name__}")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


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


class StoreBase:
    """The engine, transactions and the raw driver paths every query module shares."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Self:
        """Open the database at ``url``, upgrading its schema first."""
        engine: Engine | None = None
        try:
            engine = create_db_engine(url)
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
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except DB_ERRORS as exc:
            raise translate_db_error(exc, operation="read") from None

    def _connect(self, operation: str) -> Connection:
        """A pooled connection; failing to get one is a translated error too."""
        try:
            return self.engine.connect()
        except DB_ERRORS as exc:
            raise translate_db_error(exc, operation=operation) from None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self._connect("write") as conn:
            conn.info["write"] = True
            try:
                with conn.begin():
                    yield conn
            except DB_ERRORS as exc:
                raise translate_db_error(exc, operation="write") from None
            finally:
                conn.info.pop("write", None)

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
            self._bulk_rows(cur, table, columns, rows, progress)
        except (sqlite3.Error, psycopg.Error) as exc:
            raise translate_db_error(exc, operation="write") from None
        finally:
            cur.close()

    def _bulk_rows(
        self,
        cur: Any,
        table: str,
        columns: tuple[str, ...],
        rows: Iterable[tuple[Any, ...]],
        progress: Any,
    ) -> None:
        """The driver calls of :meth:`_bulk_insert`, whose errors it translates."""
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
