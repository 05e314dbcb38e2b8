"""Shared fixtures: database URLs (SQLite always, PostgreSQL when configured),
node data folders, signing keys.

Database tests take the ``db_url`` fixture and run once per backend. On
PostgreSQL each test gets its own schema (through ``search_path``), dropped
afterwards, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, event, text

PG_URL = os.environ.get("HASHFED_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])

# The integration tests start hundreds of `hashfed` processes. Where the
# environment says PYTHONDONTWRITEBYTECODE, each of them would compile every
# module of ours from source again: they get a byte-code cache of their own,
# kept in the virtual environment, never beside the sources.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
    os.environ.setdefault("PYTHONPYCACHEPREFIX", os.path.join(sys.prefix, "pycache"))


def _pg_schema_url(schema: str) -> str:
    assert PG_URL
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL on each configured backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    assert PG_URL
    schema = "t_" + secrets.token_hex(6)
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database the migrations brought to the head, once per session.

    Running every migration again for each test that needs a store cost more
    than most of those tests: they get a copy (:func:`_migrated_copy`). The
    migrations themselves are tested on empty databases (tests/unit/test_migrations.py).
    """
    from node.store import Store

    path = tmp_path_factory.mktemp("migrated") / "head.db"
    Store.open(f"sqlite:///{path}").close()
    return path


def _migrated_copy(template: Path, url: str) -> None:
    """Put a copy of ``template`` at a new SQLite ``url``'s file, with an identity of its own."""
    path = Path(url.removeprefix("sqlite:///"))
    if not url.startswith("sqlite:///") or path.exists():
        return
    shutil.copyfile(template, path)
    # Each database has its own random identity (migration 0011).
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE database_identity SET value = ?", (secrets.token_hex(16),))


@pytest.fixture
def store(db_url: str, migrated_sqlite: Path) -> Iterator[object]:
    from node.store import Store

    _migrated_copy(migrated_sqlite, db_url)
    s = Store.open(db_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def node_factory(tmp_path: Path, db_url: str, migrated_sqlite: Path) -> Iterator[object]:
    """Build initialised nodes (data folder + database) on the current backend."""
    from config import load_settings
    from node.datadir import init_data_dir
    from node.node import Node

    opened: list[Node] = []

    def make(node_id: str = "au-argos") -> Node:
        data = tmp_path / node_id
        init_data_dir(data, node_id=node_id)
        url = db_url if not opened else _second_db(tmp_path, node_id)
        _migrated_copy(migrated_sqlite, url)
        node = Node.open(load_settings(data, database_url=url))
        opened.append(node)
        return node

    def _second_db(base: Path, node_id: str) -> str:
        return f"sqlite:///{base / (node_id + '.db')}"

    yield make
    for n in opened:
        n.close()


@contextmanager
def sqlite_full(store: Any) -> Iterator[None]:
    """A full disk for a SQLite store: new connections may not grow the database file.

    ``PRAGMA max_page_count`` at the current size makes SQLite answer exactly
    what a full disk answers (SQLITE_FULL) on the real database; pooled
    connections are dropped so that every connection gets the cap.
    """
    with store.engine.connect() as conn:
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar())

    def cap(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count={pages}")

    event.listen(store.engine, "connect", cap)
    store.engine.dispose()
    try:
        yield
    finally:
        event.remove(store.engine, "connect", cap)
        store.engine.dispose()


@pytest.fixture
def full_disk() -> Any:
    """:func:`sqlite_full`, for tests: ``with full_disk(store): ...``."""
    return sqlite_full


# --- serial tests -------------------------------------------------------------------------------
# `make test` runs the suite in parallel (pytest-xdist) and then, alone, the
# tests marked `serial`: they measure time (latency bounds, timing oracles,
# rate-limit refills, lock waits), and other tests' load would skew them.


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--serial",
        choices=("include", "skip", "only"),
        default="include",
        help="Tests marked serial: run them with the rest (include, the default), "
        "leave them out (skip: the parallel run), or run only them (only).",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mode = config.getoption("--serial")
    if mode == "include":
        return
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        serial = item.get_closest_marker("serial") is not None
        (keep if serial == (mode == "only") else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
