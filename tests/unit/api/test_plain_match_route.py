"""The plain route for single-hash GETs gives exactly the FastAPI route's answers.

In-process (ASGI) with real token authentication. A spy around the plain
route's ``identify_caller`` (the real function still runs) shows which
requests it took; the same request with a neutral query string goes through
FastAPI's route, so the two answers can be compared byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import api.routes.match
from api.app import create_app
from config import load_settings
from node.datadir import init_data_dir
from node.identity.principals import add_principal, create_token

BASE = "ab" * 32
RESTRICTED = "cd" * 32
UNKNOWN = "ef" * 32


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    data = tmp_path / "au-argos"
    init_data_dir(data, node_id="au-argos")
    limits = {"rate_limit_per_second": 0.001, "rate_limit_burst": 50}
    app = create_app(load_settings(data, limits=limits))
    with TestClient(app) as c:
        node = c.app.state.hashfed.node  # type: ignore[attr-defined]
        for name, label, value in (
            ("base", "baseline", BASE),
            ("secret", "restricted", RESTRICTED),
        ):
            node.create_list(f"au-argos/{name}", label=label, actor="test")
            node.add_raw(f"au-argos/{name}", [("sha256", value, "A1")], actor="test")
            node.publish(f"au-argos/{name}", actor="test")
        yield c


def _token(client: TestClient, name: str, labels: list[str]) -> dict[str, str]:
    store = client.app.state.hashfed.node.store  # type: ignore[attr-defined]
    add_principal(store, name=name, role="partner", labels=labels, fingerprint=None, actor="test")
    token = create_token(store, principal=name, ttl_days=None, actor="test")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many requests the plain route took (a spy: the real function runs)."""
    calls: list[int] = []
    real = api.routes.match.identify_caller

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(api.routes.match, "identify_caller", spy)
    return calls


@pytest.mark.parametrize("value", [BASE, BASE.upper(), UNKNOWN, RESTRICTED])
def test_fast_answer_equals_the_routes_byte_for_byte(
    client: TestClient, fast_calls: list[int], value: str
) -> None:
    auth = _token(client, "acme", ["baseline", "restricted"])
    fast = client.get(f"/api/v1/match/sha256/{value}", headers=auth)
    assert len(fast_calls) == 1
    routed = client.get(f"/api/v1/match/sha256/{value}?proof=false", headers=auth)
    assert len(fast_calls) == 1  # a query string goes to the route
    assert fast.status_code == routed.status_code == 200
    assert fast.headers["content-type"] == routed.headers["content-type"]
    assert fast.content == routed.content
    assert fast.json()["hits"] == (0 if value == UNKNOWN else 1)


def test_fast_path_shows_a_partner_only_its_cleared_lists(
    client: TestClient, fast_calls: list[int]
) -> None:
    auth = _token(client, "acme", ["baseline"])
    seen = client.get(f"/api/v1/match/sha256/{BASE}", headers=auth).json()
    hidden = client.get(f"/api/v1/match/sha256/{RESTRICTED}", headers=auth).json()
    assert len(fast_calls) == 2
    assert [h["list"] for r in seen["results"] for h in r["hits"]] == ["au-argos/base"]
    assert hidden == {"queries": 1, "hits": 0, "results": []}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/match/sha256/xyz", 422),  # malformed value
        (f"/api/v1/match/sha999/{BASE}", 422),  # unknown type
        (f"/api/v1/match/sha256/{BASE}", 401),  # no caller
    ],
)
def test_refusals_are_the_routes_own(
    client: TestClient, fast_calls: list[int], path: str, status: int
) -> None:
    auth = {} if status == 401 else _token(client, "acme", ["baseline"])
    plain = client.get(path, headers=auth)
    assert len(fast_calls) == 1
    routed = client.get(f"{path}?proof=false", headers=auth)
    assert len(fast_calls) == 1
    assert plain.status_code == routed.status_code == status
    assert plain.json() == routed.json()
    assert "xyz" not in plain.text  # never echoed


def test_over_long_parts_go_to_the_route(client: TestClient, fast_calls: list[int]) -> None:
    auth = _token(client, "acme", ["baseline"])
    r = client.get("/api/v1/match/sha256/" + "a" * 3000, headers=auth)
    assert r.status_code == 422
    assert fast_calls == []


def test_a_refused_request_is_charged_once(tmp_path: Path) -> None:
    data = tmp_path / "au-argos"
    init_data_dir(data, node_id="au-argos")
    limits = {"rate_limit_per_second": 0.001, "rate_limit_burst": 3}
    with TestClient(create_app(load_settings(data, limits=limits))) as client:
        auth = _token(client, "acme", ["baseline"])
        codes = [
            client.get(path, headers=auth).status_code
            for path in (
                f"/api/v1/match/sha256/{UNKNOWN}",
                "/api/v1/match/sha256/not-hex",  # charged once, as any request
                f"/api/v1/match/sha256/{UNKNOWN}",
                f"/api/v1/match/sha256/{UNKNOWN}",
            )
        ]
    assert codes == [200, 422, 200, 429]
