"""The dashboard's overlaps and sightings pages over real mutual TLS, on SQLite and PostgreSQL.

The node holds two lists of another owner (as a pull would leave them), one
cleared for baseline and one restricted, sharing hashes with its own list;
reporters called one of its entries a false positive. The admin sees both
overlap pairs and the sightings, a baseline peer only the baseline pair and
no sightings, a partner nothing; removing the flagged entries needs the
CSRF token and then takes the entry out of the list.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _dashboard_node import FLAGGED, KNOWN, SERIES, ServedNode, add_cases, database, served_node
from conftest import BACKENDS

pytestmark = pytest.mark.network


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedNode]:
    tmp = tmp_path_factory.mktemp("dashboard-cases")
    with database(request.param, tmp) as db_url:
        s = served_node(tmp, db_url=db_url, setup=add_cases)
        yield s
        s.node.stop()


def _csrf(page: str) -> str:
    return page.split('name="csrf" value="')[1].split('"')[0]


def test_overlaps_page_shows_pairs_the_caller_may_see(served: ServedNode) -> None:
    with served.node.client() as admin:
        r = admin.get("/ui/overlaps")
        assert r.status_code == 200
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
        page = r.text
        assert 'href="/ui/overlaps"' in page
        assert "nl-dhd/cases" in page
        assert "nl-dhd/restricted" in page
        assert "3 in all" in page
        assert not any(h in page for h in KNOWN)
    with served.node.client(served.peer) as peer:
        r = peer.get("/ui/overlaps")
        assert r.status_code == 200
        assert "nl-dhd/cases" in r.text
        assert "nl-dhd/restricted" not in r.text  # cleared for baseline only
        assert "2 in all" in r.text
    with served.node.client(served.partner) as partner:
        assert partner.get("/ui/overlaps").status_code == 403


def test_sightings_page_for_the_admin_only(served: ServedNode) -> None:
    with served.node.client() as admin:
        r = admin.get("/ui/sightings")
        assert r.status_code == 200
        page = r.text
        assert SERIES in page
        assert "rep-1, rep-2, rep-3" in page
        assert "false_positive 3" in page
        assert "Flagged false_positive" in page
        assert FLAGGED not in page
    with served.node.client(served.peer) as peer:
        assert peer.get("/ui/sightings").status_code == 403
        assert 'href="/ui/sightings"' not in peer.get("/ui").text
    with served.node.client(served.partner) as partner:
        assert partner.get("/ui/sightings").status_code == 403


def test_peers_page_shows_recent_alerts_per_peer(served: ServedNode) -> None:
    with served.node.client() as admin:
        page = admin.get("/ui/peers").text
    row = next(r for r in page.split("<tr>") if '<td class="name">nl-dhd</td>' in r)
    assert "fork_refused" in row
    assert "peer_failing" in row


def test_remove_flagged_of_a_list_not_ours_refused(served: ServedNode) -> None:
    with served.node.client() as admin:
        token = _csrf(admin.get("/ui/sightings").text)
        for name, status in (("nl-dhd/cases", 422), ("au-argos/nope", 404), ("", 422)):
            r = admin.post("/ui/sightings/remove-flagged", data={"list": name, "csrf": token})
            assert r.status_code == status, (name, r.text)
    assert _hits(served, KNOWN[0]) == 2  # ours and nl-dhd/cases, untouched


def _hits(served: ServedNode, value: str) -> int:
    with served.node.client() as admin:
        r = admin.post("/api/v1/match", json={"hashes": [{"type": "sha256", "value": value}]})
        assert r.status_code == 200, r.text
        return sum(len(x["hits"]) for x in r.json()["results"])


def test_remove_flagged_needs_the_csrf_token_then_removes(served: ServedNode) -> None:
    form = {"list": SERIES}
    with served.node.client() as admin:
        assert admin.post("/ui/sightings/remove-flagged", data=form).status_code == 403
        bad = {**form, "csrf": "0" * 64}
        assert admin.post("/ui/sightings/remove-flagged", data=bad).status_code == 403
        assert _hits(served, FLAGGED) == 1  # refused posts changed nothing
        token = _csrf(admin.get("/ui/sightings").text)
        evil = admin.post(
            "/ui/sightings/remove-flagged",
            data={**form, "csrf": token},
            headers={"Origin": "https://evil.example"},
        )
        assert evil.status_code == 403
        ok = admin.post("/ui/sightings/remove-flagged", data={**form, "csrf": token})
        assert ok.status_code == 200, ok.text
        assert f"Removed 1 flagged entries from {SERIES}" in ok.text
        review = admin.get("/api/v1/sightings/review", params={"list": SERIES}).json()
        assert [f["in_list"] for f in review] == [False]
        audit = admin.get("/ui/audit", params={"action": "list.*"}).text
        assert "list.remove" in audit
    assert _hits(served, FLAGGED) == 0
    assert _hits(served, KNOWN[3]) == 1
    with served.node.client(served.peer) as peer:  # a peer cannot, token or not
        r = peer.post("/ui/sightings/remove-flagged", data={**form, "csrf": token})
        assert r.status_code == 403
