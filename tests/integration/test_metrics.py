"""``/metrics`` on a real serve process, read with prometheus_client's own parser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _dashboard_node import KNOWN, PRIVATE_KNOWN, UNKNOWN, ServedNode, database, served_node
from conftest import BACKENDS
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.network


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedNode]:
    tmp = tmp_path_factory.mktemp("metrics")
    with database(request.param, tmp) as db_url:
        s = served_node(tmp, db_url=db_url)
        yield s
        s.node.stop()


def _scrape(client: httpx.Client, **headers: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def _value(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    return sum(
        v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items())
    )


def test_metrics_scraped_by_the_prometheus_parser(served: ServedNode) -> None:
    node = served.node
    with node.client() as admin:
        for h in [KNOWN[0], KNOWN[1], UNKNOWN]:
            assert admin.get(f"/api/v1/match/sha256/{h}").status_code == 200
        r = admin.post("/api/v1/match", json={"hashes": [{"type": "sha256", "value": KNOWN[2]}]})
        assert r.json()["hits"] == 1
        assert admin.get("/api/v1/nothing-here/" + KNOWN[3]).status_code == 404
        m = _scrape(admin)
    route = "/api/v1/match/{hash_type}/{value}"
    assert _value(m, "hashfed_http_requests_total", route=route, method="GET", status="200") == 3
    assert _value(m, "hashfed_http_requests_total", route="/api/v1/match", status="200") == 1
    assert _value(m, "hashfed_match_duration_seconds_count", route=route) == 3
    assert _value(m, "hashfed_match_queries_total") == 4
    assert _value(m, "hashfed_match_hits_total") == 3
    assert _value(m, "hashfed_index_codes", type="sha256") == len(KNOWN) + 1
    assert _value(m, "hashfed_list_hashes", label="baseline") == len(KNOWN)
    assert "hashfed_index_apply_lag_entries" in m
    assert ({"queue": "audit"}, _value(m, "hashfed_backlog", queue="audit")) in m["hashfed_backlog"]
    queues = {lab["queue"] for lab, _v in m["hashfed_backlog"]}
    assert {"audit", "webhook", "overlaps"} <= queues
    # A 404's path is the caller's text: it is counted, never used as a label.
    assert _value(m, "hashfed_http_requests_total", route="unmatched", status="404") == 1


def test_metrics_never_carry_a_hash_value(served: ServedNode) -> None:
    with served.node.client() as admin:
        admin.get(f"/api/v1/match/sha256/{KNOWN[0]}")
        admin.get(f"/api/v1/match/sha256/{UNKNOWN}?max_distance=3")
        admin.get(f"/no/such/{UNKNOWN}")
        text = admin.get("/metrics").text
    for h in [*KNOWN, PRIVATE_KNOWN, UNKNOWN]:
        assert h not in text
    assert "series-2041" not in text  # list names neither: a metrics token may not see them


def test_metrics_token_may_scrape_but_not_match(served: ServedNode) -> None:
    node = served.node
    with node.client(served.partner) as partner:
        # A token with the metrics scope scrapes; the same token cannot match.
        ok = partner.get("/metrics", headers={"Authorization": f"Bearer {served.metrics_token}"})
        assert ok.status_code == 200
        assert "hashfed_http_requests_total" in ok.text
        denied = partner.get(
            f"/api/v1/match/sha256/{KNOWN[0]}",
            headers={"Authorization": f"Bearer {served.metrics_token}"},
        )
        assert denied.status_code == 403
        # A token without the scope, and a partner's certificate, are refused.
        other = partner.get("/metrics", headers={"Authorization": f"Bearer {served.match_token}"})
        assert other.status_code == 403
        assert partner.get("/metrics").status_code == 403


def test_metrics_off_means_no_route(tmp_path: Path) -> None:
    s = served_node(tmp_path, env={"HASHFED_METRICS": "false"})
    try:
        with s.node.client() as admin:
            assert admin.get("/metrics").status_code == 404
            assert admin.get(f"/api/v1/match/sha256/{KNOWN[0]}").json()["hits"] == 1
    finally:
        s.node.stop()
