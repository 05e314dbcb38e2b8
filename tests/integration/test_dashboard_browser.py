"""The dashboard in a real browser: Debian's chromium, driven by Playwright.

The browser presents the admin's client certificate (the context's
``client_certificates``), as an operator's browser would. Skipped, with the
reason, where /usr/bin/chromium is missing (.ci/run installs it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _dashboard_node import KNOWN, PRIVATE_KNOWN, UNKNOWN, ServedNode, add_cases, served_node

pytestmark = pytest.mark.network

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"
PAGES = {
    "overview": ("/ui", "Overview"),
    "lists": ("/ui/lists", "Lists"),
    "peers": ("/ui/peers", "Peers"),
    "overlaps": ("/ui/overlaps", "Overlaps"),
    "sightings": ("/ui/sightings", "Sightings"),
    "activity": ("/ui/activity", "Activity"),
    "audit": ("/ui/audit", "Audit log"),
    "principals": ("/ui/principals", "Principals"),
    "match": ("/ui/match", "Match box"),
}

sync_api = pytest.importorskip("playwright.sync_api")
if not CHROMIUM.exists():
    pytest.skip("needs Debian's chromium (/usr/bin/chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
    s = served_node(tmp_path_factory.mktemp("browser"), setup=add_cases)
    yield s
    s.node.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


def _context(browser: Any, served: ServedNode, cert: Path, key: Path) -> Any:
    return browser.new_context(
        ignore_https_errors=True,  # the node's certificate is self-signed; TLS is still mutual
        client_certificates=[
            {"origin": served.node.url, "certPath": str(cert), "keyPath": str(key)}
        ],
        viewport={"width": 1280, "height": 800},
    )


def _status(response: Any) -> int:
    assert response is not None
    return int(response.status)


def _shot(page: Any, name: str, tmp: Path) -> None:
    # Committed screenshots are refreshed on request; a plain run keeps them in tmp.
    folder = SCREENSHOTS if os.environ.get("HASHFED_UPDATE_SCREENSHOTS") else tmp
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"dashboard-{name}.png"), full_page=True)


def test_admin_pages_render_in_chromium(browser: Any, served: ServedNode, tmp_path: Path) -> None:
    admin = served.node.admin
    ctx = _context(browser, served, admin.cert, admin.key)
    external: list[str] = []
    ctx.on(
        "request", lambda r: None if r.url.startswith(served.node.url) else external.append(r.url)
    )
    errors: list[str] = []
    page = ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    for name, (path, title) in PAGES.items():
        response = page.goto(served.node.url + path)
        assert _status(response) == 200, name
        assert page.locator("h1").inner_text() == title
        if name == "activity":
            page.wait_for_selector("body[data-charts-ready='1']", timeout=15_000)
            assert page.locator("#chart-match canvas").count() == 1
        if name == "lists":
            rows = page.locator("#lists tbody tr")
            text = rows.all_inner_texts()
            assert any("au-argos/series-2041" in t and "fresh" in t for t in text)
            assert any("au-argos/internal" in t and "private" in t for t in text)
        if name == "overlaps":
            pairs = page.locator("#overlap-pairs tbody tr").all_inner_texts()
            assert any("au-argos/series-2041" in t and "nl-dhd/cases" in t for t in pairs)
            assert not any(h in page.content() for h in KNOWN)
        if name == "sightings":
            assert page.locator("form.remove-flagged button").count() == 1
        if name == "principals":
            assert "acme" in page.locator("#principals").inner_text()
            assert "metrics" in page.locator("#tokens").inner_text()
        _shot(page, name, tmp_path)
    assert errors == []
    assert external == []  # nothing loads from anywhere but the node
    ctx.close()


def test_match_box_finds_a_known_hash(browser: Any, served: ServedNode, tmp_path: Path) -> None:
    admin = served.node.admin
    ctx = _context(browser, served, admin.cert, admin.key)
    sent: list[str] = []
    ctx.on("request", lambda r: sent.append(r.url))
    page = ctx.new_page()
    page.goto(served.node.url + "/ui/match")
    page.fill("#hashes", f"{KNOWN[3]}\n{UNKNOWN}\nsha256:{PRIVATE_KNOWN}\n")
    page.click("#match-submit")
    page.wait_for_selector("#match-summary")
    assert page.locator("#match-summary").inner_text() == "3 hashes queried, 2 hits."
    hits = page.locator("#match-hits tbody tr").all_inner_texts()
    assert any(t.startswith("1\tau-argos/series-2041") for t in hits), hits
    assert any(t.startswith("3\tau-argos/internal") for t in hits), hits
    # The answer names positions, never the values.
    assert KNOWN[3] not in page.locator("#results").inner_text()
    # The hashes went to this node only (htmx posts to /ui/match, no full reload).
    assert all(u.startswith(served.node.url) for u in sent)
    assert sent.count(served.node.url + "/ui/match") == 2  # the page, then the post
    _shot(page, "match-result", tmp_path)
    ctx.close()


def test_peer_sees_only_its_lists(browser: Any, served: ServedNode) -> None:
    ctx = _context(browser, served, served.peer.cert, served.peer.key)
    page = ctx.new_page()
    r = page.goto(served.node.url + "/ui/lists")
    assert _status(r) == 200
    text = page.locator("#lists").inner_text()
    assert "au-argos/series-2041" in text
    assert "au-argos/internal" not in text  # private never reaches anyone but the admins
    nav = page.locator("header nav").inner_text()
    assert "Audit log" not in nav
    assert "Peers" not in nav
    r = page.goto(served.node.url + "/ui/audit")
    assert _status(r) == 403
    page.goto(served.node.url + "/ui/match")
    page.fill("#hashes", f"sha256:{PRIVATE_KNOWN}")
    page.click("#match-submit")
    page.wait_for_selector("#match-summary")
    assert page.locator("#match-summary").inner_text() == "1 hash queried, 0 hits."
    ctx.close()


def test_partner_certificate_is_refused(browser: Any, served: ServedNode) -> None:
    ctx = _context(browser, served, served.partner.cert, served.partner.key)
    page = ctx.new_page()
    for path in ("/ui", "/ui/lists", "/ui/match", "/ui/static/htmx.min.js"):
        r = page.goto(served.node.url + path)
        assert _status(r) == 403, path
        assert "forbidden" in page.content()
    ctx.close()
