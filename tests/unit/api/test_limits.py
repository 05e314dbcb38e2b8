"""Request bounds: body size (413) and the per-principal rate limit (429)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import RateLimiter
from config import load_settings
from node.datadir import init_data_dir
from node.identity.principals import add_principal, create_token


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    data = tmp_path / "au-argos"
    init_data_dir(data, node_id="au-argos")
    settings = load_settings(
        data, limits={"max_body_bytes": 4096, "rate_limit_per_second": 1, "rate_limit_burst": 3}
    )
    app = create_app(settings)
    with TestClient(app) as c:
        yield c


def test_oversized_body_is_refused_before_it_is_read(client: TestClient) -> None:
    # An attacker must not make the node buffer an arbitrarily large body.
    body = b'{"hashes": [' + b'{"type": "md5", "value": "' + b"0" * 8000 + b'"}]}'
    r = client.post("/api/v1/match", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"] == "too_large"


def test_one_principal_flooding_is_rate_limited(client: TestClient) -> None:
    # Through the real authentication: a partner's token, then its bucket
    # (burst 3, 1/s) stops the flood with 429 and Retry-After.
    store = client.app.state.hashfed.node.store  # type: ignore[attr-defined]
    add_principal(
        store, name="acme", role="partner", labels=["baseline"], fingerprint=None, actor="test"
    )
    token = create_token(store, principal="acme", ttl_days=None, actor="test")
    auth = {"Authorization": f"Bearer {token}"}
    responses = [client.get(f"/api/v1/match/md5/{'0' * 32}", headers=auth) for _ in range(6)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429, 429]
    assert responses[-1].headers["retry-after"] == "1"
    assert responses[-1].json()["error"] == "rate_limited"


def test_token_bucket_refills_over_time() -> None:
    # 5/s: the three calls below refill nothing unless 200 ms pass between
    # them (1 ms did once, on a loaded machine, at 1000/s).
    limiter = RateLimiter(rate=5.0, burst=2)
    assert limiter.allow("a")
    assert limiter.allow("a")
    assert not limiter.allow("a")
    assert limiter.allow("b")  # buckets are per principal
    import time

    time.sleep(0.3)  # 300 ms at 5/s refills a token and a half
    assert limiter.allow("a")
