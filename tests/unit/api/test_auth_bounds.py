"""Memory kept for failed logins is bounded, however many distinct bad tokens arrive."""

from __future__ import annotations

from pathlib import Path

from api.auth import FailureLimiter, PrincipalCache, scope_for


def test_distinct_bad_tokens_cannot_grow_the_negative_cache_without_bound(tmp_path: Path) -> None:
    cache = PrincipalCache(tmp_path / "marker", max_entries=100)
    for i in range(5_000):
        assert cache.get(f"token:{i:064x}", lambda: None) is None
    assert len(cache) == 100


def test_recently_used_principals_survive_a_flood_of_bad_tokens(tmp_path: Path) -> None:
    cache = PrincipalCache(tmp_path / "marker", max_entries=100)
    calls = []
    for i in range(1_000):
        cache.get("cert:good", lambda: calls.append(1))  # type: ignore[func-returns-value]
        cache.get(f"token:{i}", lambda: None)
    assert len(calls) == 1


def test_a_flood_of_source_addresses_cannot_grow_the_failure_table_without_bound() -> None:
    limiter = FailureLimiter(burst=3, refill_seconds=60, max_sources=50)
    for i in range(1_000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._buckets) == 50


def test_a_source_is_held_back_after_its_burst_of_failures() -> None:
    limiter = FailureLimiter(burst=3, refill_seconds=60)
    for _ in range(3):
        assert limiter.retry_after("192.0.2.1") == 0
        limiter.failed("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") >= 59
    assert limiter.retry_after("192.0.2.2") == 0


def test_every_route_prefix_needs_a_scope_and_unknown_routes_none() -> None:
    assert scope_for("GET", "/api/v1/match/md5/00") == "match"
    assert scope_for("POST", "/api/v1/match") == "match"
    assert scope_for("GET", "/api/v1/lists") == "lists:read"
    assert scope_for("POST", "/api/v1/lists/a/b/hashes") == "lists:write"
    assert scope_for("GET", "/api/v1/listsx") is None  # a prefix is a path segment
    assert scope_for("GET", "/taxii2/") == "feeds"
    assert scope_for("GET", "/api/v1/anything-new") is None


def test_every_authenticated_route_of_the_app_is_covered_by_a_scope(tmp_path: Path) -> None:
    from fastapi.routing import APIRoute

    from api.app import create_app
    from api.routes.federation import build_routers
    from config import load_settings
    from node.datadir import init_data_dir

    init_data_dir(tmp_path / "n", node_id="au-argos")
    app = create_app(load_settings(tmp_path / "n"), extra_routers=build_routers())
    public = {"/healthz"}
    missing = [
        (method, route.path)
        for route in app.routes
        if isinstance(route, APIRoute) and route.path not in public
        for method in route.methods
        if scope_for(method, route.path.replace("{", "x").replace("}", "")) is None
    ]
    assert missing == []
