"""The operator's views in process: readiness, the section registry, the
OpenAPI security schemes and feed schemas, and the vendored assets' checksums."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import PlainTextResponse
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from api.app import build_state, create_app
from api.health_server import is_ready
from api.metrics import NodeMetrics
from api.ui import nav
from api.ui.router import build_router
from config import NodeSettings
from node.identity.principals import Principal

UI = Path(__file__).parents[3] / "api" / "ui"
DOCS = Path(__file__).parents[3] / "docs"


def test_ready_needs_a_running_caught_up_follower_and_a_database(node_factory: Any) -> None:
    node = node_factory()
    state = build_state(node.settings, node)
    try:
        assert not is_ready(state)  # the follower has not started
        state.follower.start()
        assert is_ready(state)
        good = node.store.engine
        node.store.engine = create_engine("sqlite:////nonexistent-folder/hashfed.db")
        try:
            assert not node.store.ping()
            assert not is_ready(state)
        finally:
            node.store.engine.dispose()
            node.store.engine = good
        assert is_ready(state)
    finally:
        state.follower.stop()
        state.audit.close()


def test_registered_section_reaches_navigation_and_routes() -> None:
    extra = APIRouter()

    @extra.get("/overlaps-test")
    def overlaps() -> PlainTextResponse:
        return PlainTextResponse("overlaps")

    section = nav.Section("overlaps-test", "Overlaps", "/ui/overlaps-test", router=extra, order=45)
    nav.register_section(section)
    try:
        admin = Principal("self", "admin", None, "self")
        partner = Principal("acme", "partner", frozenset({"baseline"}), "cert")
        assert section in nav.sections_for(admin)
        assert section not in nav.sections_for(partner)
        app = FastAPI()
        app.include_router(build_router())
        with TestClient(app) as client:
            assert client.get("/ui/overlaps-test").text == "overlaps"
    finally:
        nav._SECTIONS.pop("overlaps-test")


def test_openapi_names_mutual_tls_and_tokens_and_feed_bodies(tmp_path: Path) -> None:
    doc = create_app(NodeSettings(node_id="au-argos", data_dir=tmp_path)).openapi()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["mutualTLS"]["type"] == "mutualTLS"
    assert (schemes["bearerToken"]["type"], schemes["bearerToken"]["scheme"]) == ("http", "bearer")
    assert {"mutualTLS": []} in doc["security"]
    manifest = doc["paths"]["/feeds/v1/{label}"]["get"]["responses"]["200"]["content"]
    assert manifest["application/json"]["schema"]["$ref"].endswith("/FeedManifest")
    entries = doc["paths"]["/feeds/v1/{label}/entries"]["get"]["responses"]["200"]["content"]
    lines = {
        x["$ref"].rsplit("/", 1)[1] for x in entries["application/x-ndjson"]["schema"]["oneOf"]
    }
    assert lines == {"FeedListHeader", "FeedEntryLine", "FeedCursorLine"}
    for name in lines | {"FeedManifest", "FeedManifestList"}:
        assert name in doc["components"]["schemas"]
    taxii = doc["paths"]["/taxii2/"]["get"]["responses"]["200"]["content"]
    assert "schema" in taxii["application/taxii+json;version=2.1"]
    assert not any(p.startswith("/ui") for p in doc["paths"])


def test_vendored_assets_match_their_checksums() -> None:
    table = (UI / "VENDORED.md").read_text()
    rows = re.findall(r"\| `(static/[^`]+)` \|.*\| `([0-9a-f]{64})` \|", table)
    assert len(rows) == 3
    for path, digest in rows:
        assert hashlib.sha256((UI / path).read_bytes()).hexdigest() == digest, path


def test_grafana_dashboard_queries_only_metrics_the_node_exports(node_factory: Any) -> None:
    node = node_factory()
    state = build_state(node.settings, node)
    try:
        metrics = NodeMetrics(lambda: state)
        metrics.observe("/api/v1/match/{hash_type}/{value}", "GET", 200, 0.001)
        metrics.matched(1, 1)
        names: set[str] = set()
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
            names.add(family.name)
            names.update(s.name for s in family.samples)
    finally:
        state.audit.close()
    board = json.loads((DOCS / "grafana" / "hashfed-node.json").read_text())
    used = {
        name
        for panel in board["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bhashfed_[a-z_]+", target["expr"])
    }
    assert used
    assert used <= names, used - names
