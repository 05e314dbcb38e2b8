"""No answer is ever a plain-text 500: database faults get their JSON 507/503,
anything unexpected a JSON 500 that names nothing it should not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.errors import CatchAllMiddleware, install_error_handlers
from node.store import Store

SECRET = "ab" * 32  # a hash value: it must never reach an answer


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'api.db'}")
    yield s
    s.close()


@pytest.fixture
def client(store: Store, full_disk: Any) -> Iterator[TestClient]:
    app = FastAPI()
    install_error_handlers(app)
    pad = [("tester", "pad", "", i, {"pad": "x" * 500}) for i in range(100)]

    @app.post("/full")
    def full() -> None:
        with full_disk(store):
            store.append_audit_many(pad)

    @app.post("/raw")
    def raw() -> None:
        # A database error that escaped the store's translation (a bug): still JSON.
        with full_disk(store), store.engine.begin() as conn:
            conn.execute(text("CREATE TABLE filler (v TEXT)"))
            for _ in range(100):
                conn.execute(text("INSERT INTO filler VALUES (:v)"), {"v": SECRET * 100})

    @app.get("/down")
    def down() -> None:
        Store.open("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError(f"unexpected, with {SECRET}")

    app.add_middleware(CatchAllMiddleware)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_full_disk_is_507_json(client: TestClient) -> None:
    r = client.post("/full")
    assert r.status_code == 507
    assert r.json()["error"] == "storage_full"
    assert set(r.json()) == {"error", "detail"}


def test_database_error_that_escaped_translation_is_still_json(client: TestClient) -> None:
    r = client.post("/raw")
    assert (r.status_code, r.json()["error"]) == (507, "storage_full")
    assert SECRET not in r.text


def test_database_down_is_503_with_retry_after(client: TestClient) -> None:
    r = client.get("/down")
    assert (r.status_code, r.json()["error"]) == (503, "database_unavailable")
    assert int(r.headers["retry-after"]) > 0


def test_unexpected_error_is_a_json_500_without_details(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    r = client.get("/boom")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"] == "internal_error"
    assert SECRET not in r.text
    assert SECRET not in caplog.text
    assert "RuntimeError" in caplog.text
