"""Fuzz the whole API from its OpenAPI schema: no 5xx, every response as documented.

In-process (ASGI) with the admin principal injected, so every route is
reachable; TLS and identity are covered by the real-process tests.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.deps import get_principal
from config import load_settings
from node.datadir import init_data_dir
from node.identity.principals import Principal

# Built at import: schemathesis reads the schema while collecting.
_DATA = Path(tempfile.mkdtemp(prefix="hashfed-fuzz-")) / "au-argos"
init_data_dir(_DATA, node_id="au-argos")
app = create_app(load_settings(_DATA))
app.dependency_overrides[get_principal] = lambda: Principal("fuzzer", "admin", None, "self")
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
STATUSES: list[int] = []


@pytest.fixture(scope="module", autouse=True)
def running_node() -> Iterator[None]:
    """Run the app's lifespan (store, indexes) around the fuzzing, with some content."""
    with TestClient(app) as client:
        client.post("/api/v1/lists", json={"name": "au-argos/base", "label": "baseline"})
        client.post(
            "/api/v1/lists/au-argos/base/hashes",
            json={"hashes": [{"type": "sha256", "value": "ab" * 32, "category": "A1"}]},
        )
        client.post("/api/v1/lists/au-argos/base/publish")
        yield
    shutil.rmtree(_DATA.parent, ignore_errors=True)
    print(f"\nschemathesis: {len(STATUSES)} requests, {sum(s >= 500 for s in STATUSES)} with 5xx")
    assert STATUSES, "the fuzzer made no request"
    assert all(s < 500 for s in STATUSES)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_fails_and_matches_its_schema(case: schemathesis.Case) -> None:
    response = case.call()
    STATUSES.append(response.status_code)
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
