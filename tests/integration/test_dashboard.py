"""The dashboard over real mutual TLS, on SQLite and PostgreSQL: who may open what,
CSRF on every POST, the audit export, and the health probe port of the same node."""

from __future__ import annotations

import csv
import io
import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from _dashboard_node import KNOWN, UNKNOWN, ServedNode, database, served_node
from _nodes import free_port
from conftest import BACKENDS

pytestmark = pytest.mark.network


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedNode]:
    tmp = tmp_path_factory.mktemp("dashboard")
    with database(request.param, tmp) as db_url:
        s = served_node(tmp, db_url=db_url, env={"HASHFED_HEALTH_PORT": str(free_port())})
        yield s
        s.node.stop()


def _health_url(served: ServedNode, path: str) -> str:
    return f"http://127.0.0.1:{served.node.env['HASHFED_HEALTH_PORT']}{path}"


def test_dashboard_pages_for_the_admin(served: ServedNode) -> None:
    with served.node.client() as admin:
        for path in (
            "/ui",
            "/ui/lists",
            "/ui/peers",
            "/ui/activity",
            "/ui/audit",
            "/ui/principals",
            "/ui/match",
        ):
            r = admin.get(path)
            assert r.status_code == 200, path
            assert r.headers["content-security-policy"].startswith("default-src 'none'")
            assert "<h1>" in r.text
        assert admin.get("/ui/static/uPlot.iife.min.js").status_code == 200
        assert admin.get("/ui/static/VENDORED.md").status_code == 404
        assert admin.get("/ui/static/..%2F..%2Fcsrf.py").status_code == 404


def test_token_cannot_open_the_dashboard(served: ServedNode) -> None:
    with served.node.client(served.partner) as partner:
        for token in (served.match_token, served.metrics_token):
            r = partner.get("/ui/lists", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 403


def test_cross_site_match_post_refused(served: ServedNode) -> None:
    """A page elsewhere makes the admin's browser post to the match box: no token, refused."""
    with served.node.client() as admin:
        form = {"hashes": KNOWN[0], "type": "sha256"}
        assert admin.post("/ui/match", data=form).status_code == 403
        assert admin.post("/ui/match", data={**form, "csrf": "0" * 64}).status_code == 403
        page = admin.get("/ui/match").text
        token = page.split('name="csrf" value="')[1].split('"')[0]
        evil = admin.post(
            "/ui/match", data={**form, "csrf": token}, headers={"Origin": "https://evil.example"}
        )
        assert evil.status_code == 403
        ok = admin.post("/ui/match", data={**form, "csrf": token}, headers={"HX-Request": "true"})
        assert ok.status_code == 200
        assert "1 hash queried, 1 hit." in ok.text
        assert KNOWN[0] not in ok.text
        # A peer's token is not the admin's: tokens are bound to the principal.
    with served.node.client(served.peer) as peer:
        assert peer.post("/ui/match", data={**form, "csrf": token}).status_code == 403


def test_match_box_bad_line_names_the_line_not_the_value(served: ServedNode) -> None:
    with served.node.client() as admin:
        token = admin.get("/ui/match").text.split('name="csrf" value="')[1].split('"')[0]
        bad = "zz" + UNKNOWN[2:]
        r = admin.post("/ui/match", data={"hashes": f"{KNOWN[0]}\n{bad}", "csrf": token})
        assert r.status_code == 200
        assert 'id="match-error"' in r.text
        assert "hashes[1]" in r.text
        assert bad not in r.text


def test_audit_filter_and_export(served: ServedNode) -> None:
    with served.node.client() as admin:
        page = admin.get("/ui/audit", params={"action": "principal.*"}).text
        assert "principal.add" in page
        assert "list.create" not in page
        r = admin.get("/ui/audit/export", params={"fmt": "csv", "action": "list.*"})
        assert r.status_code == 200
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert {x["action"] for x in rows} >= {"list.create", "list.publish"}
        assert all(x["action"].startswith("list.") for x in rows)
        nd = admin.get("/ui/audit/export", params={"fmt": "ndjson", "actor": "test"})
        records = [json.loads(line) for line in nd.text.splitlines()]
        assert records
        assert all(x["actor"] == "test" for x in records)
        assert admin.get("/ui/audit", params={"since": "yesterday"}).status_code == 422
    with served.node.client(served.peer) as peer:
        assert peer.get("/ui/audit/export").status_code == 403


def test_health_port_answers_without_details(served: ServedNode) -> None:
    with httpx.Client(timeout=10) as plain:  # no certificate, no TLS: a load balancer's probe
        live = plain.get(_health_url(served, "/livez"))
        ready = plain.get(_health_url(served, "/readyz"))
        assert (live.status_code, live.text) == (200, "ok\n")
        assert (ready.status_code, ready.text) == (200, "ready\n")
        assert plain.get(_health_url(served, "/metrics")).status_code == 404
        assert plain.get(_health_url(served, "/ui")).status_code == 404
    assert "au-argos" not in live.text + ready.text + str(ready.headers)


def test_health_port_binds_loopback_only(served: ServedNode) -> None:
    port = int(served.node.env["HASHFED_HEALTH_PORT"])
    addresses = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    others = [a for a in addresses if not a.startswith("127.") and ":" not in a]
    for address in others:
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection((address, port), timeout=2),
        ):
            pass
