"""Content coding and HTTP caching against a real `hashfed serve` process over TLS.

Feeds, TAXII and exports are gzip- or zstd-coded when the client asks (and
identical once decoded); ``If-None-Match`` uses the weak comparison of
RFC 9110 §13.1.2; a 401 names its schemes in ``WWW-Authenticate``.
"""

from __future__ import annotations

import gzip
import json
import os
import ssl
from collections.abc import Callable, Iterator

import httpx
import pytest
import zstandard
from _nodes import NodeProcess, free_port

pytestmark = pytest.mark.network

TAXII = "application/taxii+json;version=2.1"


def rand_hex(n: int) -> str:
    return os.urandom(n).hex()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data = tmp_path_factory.mktemp("cache") / "au-argos"
    n = NodeProcess("au-argos", data, free_port(), env={"HASHFED_TLS_CLIENT_AUTH": "optional"})
    n.init().start(timeout=120)  # a loaded machine starts slowly
    with n.client() as c:
        r = c.post("/api/v1/lists", json={"name": "au-argos/base", "label": "baseline"})
        assert r.status_code == 201, r.text
        items = [{"type": "sha256", "value": rand_hex(32), "category": "A1"} for _ in range(3000)]
        assert c.post("/api/v1/lists/au-argos/base/hashes", json={"hashes": items}).is_success
        assert c.post("/api/v1/lists/au-argos/base/publish").is_success
    n.cli("principal", "add", "acme", "--role", "partner", "--labels", "baseline")
    yield n
    n.stop()


@pytest.fixture(scope="module")
def token(node: NodeProcess) -> str:
    return node.cli("token", "create", "acme").stdout.strip().split()[-1]


def raw_client(node: NodeProcess, token: str | None) -> httpx.Client:
    """A client that sends only the headers given and decodes nothing by itself."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(node.cert))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=node.url, verify=ctx, headers=headers, timeout=60)


def fetch_raw(c: httpx.Client, path: str, encoding: str, **headers: str) -> httpx.Response:
    with c.stream("GET", path, headers={"Accept-Encoding": encoding, **headers}) as r:
        r._content = b"".join(r.iter_raw())  # the bytes as sent, not decoded
    return r


def _without_cursor(path: str) -> Callable[[bytes], object]:
    """The answer without its cursor, which is sealed afresh for each answer."""
    if "ndjson" in path:
        return lambda b: b.rsplit(b"\n", 2)[0]
    if path.endswith("/baseline"):
        return lambda b: {k: v for k, v in json.loads(b).items() if k != "cursor"}
    return lambda b: b


@pytest.mark.parametrize(
    "path",
    [
        "/feeds/v1/baseline/entries?format=text&type=sha256",
        "/feeds/v1/baseline/entries?format=ndjson",
        "/feeds/v1/baseline",
    ],
)
def test_feeds_are_gzip_and_zstd_coded_when_asked(node: NodeProcess, token: str, path: str) -> None:
    with raw_client(node, token) as c:
        plain = fetch_raw(c, path, "identity")
        gz = fetch_raw(c, path, "gzip")
        zs = fetch_raw(c, path, "gzip;q=0.5, zstd")
    assert plain.status_code == gz.status_code == zs.status_code == 200
    assert "content-encoding" not in plain.headers
    assert gz.headers["content-encoding"] == "gzip"
    assert zs.headers["content-encoding"] == "zstd"
    for r in (plain, gz, zs):
        assert "accept-encoding" in r.headers["vary"].lower()
    same = _without_cursor(path)
    assert same(gzip.decompress(gz.content)) == same(plain.content)
    unz = zstandard.ZstdDecompressor().decompressobj().decompress(zs.content)
    assert same(unz) == same(plain.content)
    if "entries" in path:
        assert len(gz.content) < len(plain.content) * 0.7


def test_refused_codings_are_not_used(node: NodeProcess, token: str) -> None:
    with raw_client(node, token) as c:
        r = fetch_raw(c, "/feeds/v1/baseline", "gzip;q=0, zstd;q=0")
        star = fetch_raw(c, "/feeds/v1/baseline", "*")
    assert "content-encoding" not in r.headers
    assert star.headers["content-encoding"] in ("zstd", "gzip")


def test_taxii_and_export_are_coded(node: NodeProcess, token: str) -> None:
    with raw_client(node, token) as c:
        cols = c.get("/taxii2/hashfed/collections/", headers={"Accept": TAXII}).json()
        cid = cols["collections"][0]["id"]
        r = fetch_raw(c, f"/taxii2/hashfed/collections/{cid}/objects/", "gzip", Accept=TAXII)
    assert r.headers["content-encoding"] == "gzip"
    assert b'"objects"' in gzip.decompress(r.content)
    with (
        node.client() as admin,
        admin.stream(
            "GET", "/api/v1/lists/au-argos/base/export", headers={"Accept-Encoding": "gzip"}
        ) as e,
    ):
        body = b"".join(e.iter_raw())
    assert e.headers["content-encoding"] == "gzip"
    assert gzip.decompress(body).startswith(b"type,value,category\n")


def test_weak_etag_in_if_none_match_is_304(node: NodeProcess, token: str) -> None:
    with raw_client(node, token) as c:
        first = c.get("/feeds/v1/baseline", headers={"Accept-Encoding": "identity"})
        etag = first.headers["etag"]
        assert etag.startswith('"')
        for sent in (etag, "W/" + etag, f'"other", W/{etag}', "*"):
            r = c.get(
                "/feeds/v1/baseline",
                headers={"If-None-Match": sent, "Accept-Encoding": "identity"},
            )
            assert r.status_code == 304, sent
            assert r.headers["etag"] == etag
        other = c.get("/feeds/v1/baseline", headers={"If-None-Match": '"other", W/"x"'})
        assert other.status_code == 200


def test_etag_of_a_coded_answer_is_its_own_and_still_matches(node: NodeProcess, token: str) -> None:
    with raw_client(node, token) as c:
        plain = c.get("/feeds/v1/baseline", headers={"Accept-Encoding": "identity"})
        gz = fetch_raw(c, "/feeds/v1/baseline", "gzip")
        assert gz.headers["etag"] != plain.headers["etag"]
        assert gz.headers["etag"].endswith('-gzip"')
        again = c.get(
            "/feeds/v1/baseline",
            headers={"If-None-Match": gz.headers["etag"], "Accept-Encoding": "gzip"},
        )
    assert again.status_code == 304
    assert again.headers["etag"] == gz.headers["etag"]


def test_401_names_its_schemes(node: NodeProcess) -> None:
    with raw_client(node, None) as c:
        r = c.get("/feeds/v1/baseline")
        bad = c.get("/feeds/v1/baseline", headers={"Authorization": "Bearer hf_nope_nope"})
        api = c.get("/api/v1/lists")
    for resp in (r, bad, api):
        assert resp.status_code == 401
        challenge = resp.headers["www-authenticate"]
        assert "Bearer" in challenge
        assert "Basic" in challenge
