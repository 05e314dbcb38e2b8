"""Database failures as hashfed errors: the one place that classifies them.

A driver's message can quote row values (PostgreSQL's DETAIL does), and rows
hold hashes: what is kept of a failure is its class, code or SQLSTATE.
"""

from __future__ import annotations

import errno
import sqlite3

import psycopg
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from crypto.errors import DatabaseUnavailableError, StorageFullError, StoreError

__all__ = ["ANY_DB_ERROR", "DB_ERRORS", "is_lock_timeout", "translate_db_error"]

# PostgreSQL's SQLSTATE for lock_timeout; SQLite's SQLITE_BUSY and SQLITE_LOCKED.
_PG_LOCK_NOT_AVAILABLE = "55P03"
_SQLITE_BUSY_CODES = (5, 6)
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


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` (SQLAlchemy-wrapped or raw) is a lock wait that ran out."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(orig, sqlite3.OperationalError):
        return (getattr(orig, "sqlite_errorcode", 0) & 0xFF) in _SQLITE_BUSY_CODES
    return getattr(orig, "sqlstate", None) == _PG_LOCK_NOT_AVAILABLE
