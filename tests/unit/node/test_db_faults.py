"""Database faults become named errors, and a refused write changes nothing.

A full disk is SQLite's real SQLITE_FULL (the database capped at its size with
``PRAGMA max_page_count``); a lost database is a PostgreSQL backend
terminated from a second connection, or a server that does not answer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import PG_URL
from sqlalchemy import create_engine, select, text

from crypto.errors import DatabaseUnavailableError, StorageFullError, StoreError
from node.identity.audit import verify_audit_chain
from node.node import Node
from node.store import Store, translate_db_error

NodeFactory = Callable[..., Node]
LIST = "au-argos/series-7"
# Enough rows that the write needs new pages, whatever free space the last page has.
# Nothing listens on port 1: connection refused, as when the server is down.
UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"
MANY = [("sha256", f"{i:064x}", "A1") for i in range(1, 2001)]


def _sqlite_node(node_factory: NodeFactory) -> Node:
    node = node_factory("au-argos")
    if not node.store.is_sqlite:
        pytest.skip("SQLite's full disk; PostgreSQL's faults are tested below")
    return node


def test_full_disk_refuses_an_add_and_changes_nothing(
    node_factory: NodeFactory, full_disk: Any
) -> None:
    node = _sqlite_node(node_factory)
    node.create_list(LIST, label="restricted", actor="alice")
    node.add_raw(LIST, MANY[:5], actor="alice")
    node.publish(LIST, actor="alice")
    row = node.get_list(LIST)
    before = (node.store.get_state(list_id=row.id), node.store.count_rows("audit"))

    with full_disk(node.store), pytest.raises(StorageFullError) as caught:
        node.add_raw(LIST, MANY[5:], actor="bob")

    assert caught.value.code == "storage_full"
    assert not any(v in str(caught.value) for _, v, _ in MANY)
    assert (node.store.get_state(list_id=row.id), node.store.count_rows("audit")) == before
    # Space freed: the same add succeeds and everything verifies.
    result = node.add_raw(LIST, MANY[5:], actor="bob")
    assert result.appended == len(MANY) - 5
    node.publish(LIST, actor="bob")
    assert all(r.ok for r in node.verify(LIST))
    assert verify_audit_chain(node.store).ok


def test_full_disk_refuses_import_and_create(
    node_factory: NodeFactory, full_disk: Any, tmp_path: Path
) -> None:
    # The bulk path (driver executemany) and the ORM-less Core path alike.
    node = _sqlite_node(node_factory)
    node.create_list(LIST, label="restricted", actor="alice")
    path = tmp_path / "import.csv"
    path.write_text("type,value,category\n" + "".join(f"{t},{v},{c}\n" for t, v, c in MANY))
    with full_disk(node.store):
        with pytest.raises(StorageFullError):
            node.import_file(LIST, path, actor="carol")
        with pytest.raises(StorageFullError):
            _create_until_full(node)
    assert node.store.get_state(list_id=node.get_list(LIST).id).size == 0
    assert node.import_file(LIST, path, actor="carol").appended == len(MANY)


def _create_until_full(node: Node) -> None:
    for i in range(200):  # list rows are small: create until the pages run out
        node.create_list(f"au-argos/extra-{i}", label="restricted", actor="carol")


def test_reads_go_on_while_the_disk_is_full(node_factory: NodeFactory, full_disk: Any) -> None:
    node = _sqlite_node(node_factory)
    node.create_list(LIST, label="restricted", actor="alice")
    node.add_raw(LIST, MANY[:3], actor="alice")
    with full_disk(node.store):
        assert len(list(node.content(LIST))) == 3
        assert verify_audit_chain(node.store).ok


def test_unreachable_database_is_unavailable_at_open() -> None:
    with pytest.raises(DatabaseUnavailableError) as caught:
        Store.open(UNREACHABLE)
    assert caught.value.code == "database_unavailable"


def test_database_gone_after_open_is_unavailable_for_reads_and_writes() -> None:
    from node.store import create_db_engine

    store = Store(create_db_engine(UNREACHABLE))
    try:
        with pytest.raises(DatabaseUnavailableError):
            store.append_audit(actor="a", action="x", detail={})
        with pytest.raises(DatabaseUnavailableError):
            store.count_rows("audit")
        with pytest.raises(DatabaseUnavailableError):
            list(store._driver_pages(select(1), 10))
    finally:
        store.close()


def test_sqlite_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("")
    with pytest.raises(DatabaseUnavailableError):
        Store.open(f"sqlite:///{tmp_path / 'not-a-folder' / 'hashfed.db'}")


def test_constraint_errors_pass_through_for_the_query_modules(store: Store) -> None:
    # Callers turn these into their own errors (a list that exists already).
    from sqlalchemy.exc import IntegrityError

    def insert_twice() -> None:
        with store.write() as conn:
            conn.execute(text("CREATE TABLE t_unique (v INTEGER PRIMARY KEY)"))
            conn.execute(text("INSERT INTO t_unique VALUES (1), (1)"))

    with pytest.raises(IntegrityError) as caught:
        insert_twice()
    assert translate_db_error(caught.value, operation="write") is caught.value


def test_other_refusals_name_no_value(store: Store) -> None:
    secret = "ab" * 32
    with pytest.raises(StoreError) as caught, store.write() as conn:
        conn.execute(text(f"SELECT * FROM no_such_table_{secret}"))  # noqa: S608
    assert type(caught.value) is StoreError
    assert secret not in str(caught.value)


def test_non_database_errors_are_not_translated() -> None:
    err = ValueError("x")
    assert translate_db_error(err, operation="write") is err


# --- PostgreSQL: a connection that is terminated ------------------------------------------


@pytest.fixture
def pg_admin() -> Any:
    if not PG_URL:
        pytest.skip("needs HASHFED_TEST_DATABASE_URL")
    admin = create_engine(PG_URL)
    yield admin
    admin.dispose()


def _terminate(admin: Any, pid: int) -> None:
    with admin.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def _pid(conn: Any) -> int:
    return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def test_terminated_connection_mid_write_is_unavailable_and_changes_nothing(
    node_factory: NodeFactory, pg_admin: Any
) -> None:
    node = node_factory("au-argos")
    if node.store.is_sqlite:
        pytest.skip("PostgreSQL only")
    node.create_list(LIST, label="restricted", actor="alice")
    audits = node.store.count_rows("audit")

    def write_and_lose_the_connection() -> None:
        with node.store.write() as conn:
            node.store._append_audit(conn, "mallory", "list.nothing", "", 0, {})
            _terminate(pg_admin, _pid(conn))
            conn.exec_driver_sql("SELECT 1")

    with pytest.raises(DatabaseUnavailableError):
        write_and_lose_the_connection()
    assert node.store.count_rows("audit") == audits  # rolled back with the connection
    node.add_raw(LIST, MANY[:2], actor="alice")  # a new connection: working again
    assert verify_audit_chain(node.store).ok


def test_terminated_connection_mid_read_is_unavailable(store: Store, pg_admin: Any) -> None:
    if store.is_sqlite:
        pytest.skip("PostgreSQL only")

    def read_and_lose_the_connection() -> None:
        with store.read() as conn:
            _terminate(pg_admin, _pid(conn))
            conn.exec_driver_sql("SELECT 1")

    with pytest.raises(DatabaseUnavailableError):
        read_and_lose_the_connection()
    assert store.count_rows("audit") == 0
