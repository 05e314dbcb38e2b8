"""Writers wait, they do not refuse: concurrent admin adds through real ``hashfed serve`` processes.

- three serve processes sharing one PostgreSQL database (the same data folder
  copied: one identity, three ports), 64 adds of distinct hashes to one list
  at once → none refused, every hash exactly once, ``hashfed list verify`` passes;
- the same with one process on SQLite and many client threads;
- a list lock held past the configured wait → the API answers 503 with
  ``Retry-After`` and the JSON error body, the CLI prints one line and exits
  non-zero, and nothing is written.

The PostgreSQL cases run when HASHFED_TEST_DATABASE_URL is set (CI sets it).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from _cluster import pg_schema
from _nodes import NodeProcess, cleanup, copy_data, free_port
from sqlalchemy import create_engine, text

from node.store import Store

PG_URL = os.environ.get("HASHFED_TEST_DATABASE_URL")
LIST = "au-argos/concurrent"
ADD = "/api/v1/lists/au-argos/concurrent/hashes"
needs_pg = pytest.mark.skipif(not PG_URL, reason="HASHFED_TEST_DATABASE_URL is not set")
# serial: it measures time (see tests/conftest.py).
pytestmark = pytest.mark.serial


def _hash(i: int, salt: str) -> str:
    return f"{salt}{i:08x}".ljust(64, "0")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema of the test PostgreSQL database, dropped afterwards."""
    with pg_schema() as url:
        yield url


def _concurrent_adds(
    nodes: list[NodeProcess], count: int, threads: int, salt: str
) -> list[tuple[int, dict[str, object]]]:
    """``count`` adds of one distinct hash each, spread over ``nodes``, ``threads`` at once."""
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def client_for(i: int) -> httpx.Client:
        by_node = getattr(local, "clients", None)
        if by_node is None:
            by_node = local.clients = {}
        n = nodes[i % len(nodes)]
        if n.port not in by_node:
            by_node[n.port] = n.client()
            with lock:
                clients.append(by_node[n.port])
        return by_node[n.port]

    def add(i: int) -> tuple[int, dict[str, object]]:
        body = {"hashes": [{"type": "sha256", "value": _hash(i, salt), "category": "A1"}]}
        r = client_for(i).post(ADD, json=body)
        return r.status_code, r.json()

    try:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(add, range(count)))
    finally:
        for c in clients:
            c.close()


def _assert_each_once(url: str, count: int, salt: str, node: NodeProcess) -> None:
    store = Store.open(url, migrate=False)
    try:
        row = store.get_list(owner="au-argos", name="concurrent")
        assert row is not None
        values = [e[3] for e in store.iter_entries(list_id=row.id)]
    finally:
        store.close()
    assert sorted(values) == sorted(_hash(i, salt) for i in range(count))
    node.cli("list", "publish", LIST)
    assert node.cli("list", "verify", LIST).returncode == 0


@needs_pg
def test_64_concurrent_adds_through_three_processes_on_postgresql_none_refused(
    tmp_path: Path, pg_url: str
) -> None:
    first = NodeProcess(
        "au-argos", tmp_path / "a", free_port(), env={"HASHFED_DATABASE_URL": pg_url}
    )
    first.init()
    nodes = [first]
    try:
        first.start()  # migrates the schema before the others open it
        for name in ("b", "c"):
            copy_data(first.data, tmp_path / name)
            port = free_port()
            env = {"HASHFED_DATABASE_URL": pg_url, "HASHFED_PORT": str(port)}
            nodes.append(NodeProcess("au-argos", tmp_path / name, port, env=env).start())
        first.cli("list", "create", LIST, "--label", "baseline")
        results = _concurrent_adds(nodes, 64, threads=16, salt="c0ffee")
        refused = [r for r in results if r[0] != 200]
        assert refused == []
        assert all(body["appended"] == 1 for _s, body in results)
        _assert_each_once(pg_url, 64, "c0ffee", first)
    finally:
        cleanup(nodes)


def test_concurrent_adds_through_one_process_on_sqlite_none_refused(tmp_path: Path) -> None:
    node = NodeProcess("au-argos", tmp_path / "a", free_port()).init()
    try:
        node.start()
        node.cli("list", "create", LIST, "--label", "baseline")
        results = _concurrent_adds([node], 128, threads=16, salt="beef")
        assert [r for r in results if r[0] != 200] == []
        url = f"sqlite:///{(node.data / 'hashfed.db').resolve()}"
        _assert_each_once(url, 128, "beef", node)
    finally:
        node.stop()


# --- a lock held too long ---------------------------------------------------------------------


def _holder_sqlite(db: Path) -> Callable[[], None]:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")  # what another process's write transaction holds

    def release() -> None:
        conn.execute("ROLLBACK")
        conn.close()

    return release


def _holder_pg(url: str) -> Callable[[], None]:
    engine = create_engine(url)
    conn = engine.connect()
    conn.begin()
    conn.execute(text("SELECT size FROM list_state FOR UPDATE"))

    def release() -> None:
        conn.rollback()
        conn.close()
        engine.dispose()

    return release


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=needs_pg)])
def test_a_list_lock_held_past_the_wait_is_503_retry_after_and_one_cli_line(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    env = {"HASHFED_LIMITS__WRITE_LOCK_TIMEOUT_SECONDS": "0.5"}
    if backend == "postgresql":
        url = request.getfixturevalue("pg_url")
        env["HASHFED_DATABASE_URL"] = url
    node = NodeProcess("au-argos", tmp_path / "a", free_port(), env=env).init()
    if backend == "sqlite":
        url = f"sqlite:///{(node.data / 'hashfed.db').resolve()}"
    try:
        node.start()
        node.cli("list", "create", LIST, "--label", "baseline")
        release = (
            _holder_sqlite(node.data / "hashfed.db") if backend == "sqlite" else _holder_pg(url)
        )
        try:
            with node.client() as c:
                t0 = time.monotonic()
                r = c.post(ADD, json={"hashes": [{"type": "sha256", "value": _hash(1, "ab")}]})
                waited = time.monotonic() - t0
            assert r.status_code == 503
            assert r.headers["retry-after"].isdigit()
            assert r.headers["content-type"].startswith("application/json")
            assert r.json()["error"] == "write_lock_timeout"
            assert set(r.json()) == {"error", "detail"}
            assert 0.4 <= waited < 10
            proc = node.cli("list", "add", LIST, "sha256", _hash(2, "ab"), check=False)
            assert proc.returncode == 7  # the CLI's exit code for StoreError
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            assert len(lines) == 1, proc.stderr
            assert lines[0].startswith("error: ")
            assert _hash(2, "ab") not in proc.stderr + proc.stdout
        finally:
            release()
        store = Store.open(url, migrate=False)
        try:
            row = store.get_list(owner="au-argos", name="concurrent")
            assert row is not None
            assert store.get_state(list_id=row.id).size == 0
        finally:
            store.close()
        # And once the lock is free, the same add goes through.
        with node.client() as c:
            r = c.post(ADD, json={"hashes": [{"type": "sha256", "value": _hash(1, "ab")}]})
        assert r.status_code == 200
    finally:
        node.stop()
