"""TAXII 2.1 against a real `hashfed serve` over TLS, driven by the OASIS ``taxii2-client``.

Every object received is checked with the OASIS ``stix2-validator`` in
strict mode (warnings are errors) with one documented exception: ``{103}``
"not a valid UUIDv4", the deliberate deterministic UUIDv5 ids of
node/feeds/stix_objects.py. The 10,000-object collection is sampled in the
default run and validated whole with -m slow.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from _nodes import Identity, NodeProcess, free_port, make_identity
from stix2validator import ValidationOptions, validate_instance
from taxii2client.v21 import Collection, Server, as_pages

from node.feeds.stix import indicator_id
from node.feeds.stix_objects import EXTENSION_ID, TLP_MARKINGS, identity_id
from node.store import Store

pytestmark = pytest.mark.network

BULK = 10_000
TAXII = "application/taxii+json;version=2.1"


def rand_hex(n: int) -> str:
    return os.urandom(n).hex()


def admin(node: NodeProcess, method: str, path: str, body: object = None) -> Any:
    with node.client() as c:
        r = c.request(method, path, json=body)
    assert r.status_code < 300, r.text
    return r.json()


def add(node: NodeProcess, name: str, items: list[dict[str, str]]) -> None:
    admin(node, "POST", f"/api/v1/lists/{name}/hashes", {"hashes": items})
    admin(node, "POST", f"/api/v1/lists/{name}/publish")


def remove(node: NodeProcess, name: str, items: list[dict[str, str]]) -> None:
    keys = [{"type": i["type"], "value": i["value"]} for i in items]
    admin(node, "POST", f"/api/v1/lists/{name}/remove", {"hashes": keys})
    admin(node, "POST", f"/api/v1/lists/{name}/publish")


STRICT = ValidationOptions(strict=True, disabled=["103"])


def assert_valid(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        result = validate_instance(obj, STRICT)
        assert result.errors == [], [str(e) for e in result.errors]
        assert obj["spec_version"] == "2.1"


@pytest.fixture(scope="module", autouse=True)
def _requests_uses_our_anchor() -> Iterator[None]:
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a Session's
    # ``verify`` (psf/requests#3829); taxii2-client sets only the Session's.
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("REQUESTS_CA_BUNDLE", raising=False)
        mp.delenv("CURL_CA_BUNDLE", raising=False)
        yield


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data = tmp_path_factory.mktemp("taxii") / "au-argos"
    n = NodeProcess("au-argos", data, free_port(), env={"HASHFED_TLS_CLIENT_AUTH": "optional"})
    n.init().start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def partner(node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> Identity:
    ident = make_identity(tmp_path_factory.mktemp("ids"), "acme")
    node.cli(
        "principal",
        "add",
        "acme",
        "--role",
        "partner",
        "--labels",
        "baseline",
        "--cert",
        str(ident.cert),
    )
    time.sleep(2.5)  # the running node trusts newly pinned certificates within 2 s
    return ident


@pytest.fixture(scope="module")
def token(node: NodeProcess, partner: Identity) -> str:
    return node.cli("token", "create", "acme").stdout.strip().split()[-1]


@pytest.fixture(scope="module")
def content(node: NodeProcess) -> dict[str, list[dict[str, str]]]:
    """A 10,000-hash baseline list, a small mixed one, and a restricted one."""
    bulk = [{"type": "sha256", "value": rand_hex(32), "category": "A1"} for _ in range(BULK)]
    live = [
        {"type": "md5", "value": rand_hex(16), "category": "B1"},
        {"type": "sha1", "value": rand_hex(20), "category": ""},
        {"type": "pdq", "value": rand_hex(32), "category": "A2"},
        {"type": "photodna", "value": "x'y\\z" + rand_hex(8), "category": ""},
    ] + [{"type": "sha256", "value": rand_hex(32), "category": "A1"} for _ in range(6)]
    secret = [{"type": "sha256", "value": rand_hex(32), "category": "A1"} for _ in range(3)]
    for name, label, items in (
        ("bulk", "baseline", bulk),
        ("live", "baseline", live),
        ("secret", "restricted", secret),
    ):
        admin(node, "POST", "/api/v1/lists", {"name": f"au-argos/{name}", "label": label})
        add(node, f"au-argos/{name}", items)
    return {"bulk": bulk, "live": live, "secret": secret}


@pytest.fixture(scope="module")
def collection(node: NodeProcess, partner: Identity, content: object) -> Iterator[Collection]:
    server = Server(
        f"{node.url}/taxii2/", verify=str(node.cert), cert=(str(partner.cert), str(partner.key))
    )
    [root] = server.api_roots
    [col] = root.collections
    yield col
    close(server)


def close(server: Server) -> None:
    """Close a client's keep-alive connections (the node waits for them when it stops)."""
    for root in server.api_roots:
        root.close()
    server.close()


def page_all(col: Collection, **filters: Any) -> list[dict[str, Any]]:
    """Every indicator (``type=None``: every object) of the collection."""
    filters.setdefault("type", "indicator")
    filters = {k: v for k, v in filters.items() if v is not None}
    objects: list[dict[str, Any]] = []
    for envelope in as_pages(col.get_objects, per_request=1000, **filters):
        objects += envelope.get("objects", [])
    return objects


def manifest_all(col: Collection, **filters: Any) -> list[dict[str, Any]]:
    filters.setdefault("type", "indicator")
    filters = {k: v for k, v in filters.items() if v is not None}
    entries: list[dict[str, Any]] = []
    for envelope in as_pages(col.get_manifest, per_request=1000, **filters):
        entries += envelope.get("objects", [])
    return entries


def test_discovery_root_and_collections_over_client_certificate(
    node: NodeProcess, partner: Identity, collection: Collection
) -> None:
    server = Server(
        f"{node.url}/taxii2/", verify=str(node.cert), cert=(str(partner.cert), str(partner.key))
    )
    assert server.title == "hashfed node au-argos"
    [root] = server.api_roots
    assert root.versions == [TAXII]
    # one collection: the partner is cleared for baseline only, not restricted
    assert [c.alias for c in root.collections] == ["baseline"]
    assert collection.can_read
    assert not collection.can_write
    assert collection.media_types == ["application/stix+json;version=2.1"]
    close(server)


def test_basic_auth_with_the_partner_token_as_password(
    node: NodeProcess, token: str, collection: Collection
) -> None:
    server = Server(f"{node.url}/taxii2/", user="acme", password=token, verify=str(node.cert))
    [root] = server.api_roots
    [col] = root.collections
    assert col.id == collection.id
    envelope = col.get_objects(limit=5)
    assert len(envelope["objects"]) == 5
    close(server)
    wrong = Server(
        f"{node.url}/taxii2/", user="acme", password=token[:-2] + "xx", verify=str(node.cert)
    )
    with pytest.raises(requests.HTTPError) as info:
        _ = wrong.api_roots
    assert info.value.response.status_code == 401
    wrong.close()


def test_paging_through_ten_thousand_objects(
    collection: Collection, content: dict[str, list[dict[str, str]]]
) -> None:
    started = time.monotonic()
    objects = page_all(collection)
    elapsed = time.monotonic() - started
    ids = [o["id"] for o in objects]
    assert len(ids) == len(set(ids)) == BULK + len(content["live"])
    want = {indicator_id("au-argos/bulk", "sha256", i["value"]) for i in content["bulk"]}
    assert want <= set(ids)
    assert_valid(objects[::97] + objects[-len(content["live"]) :])
    assert elapsed < 60, f"paging took {elapsed:.1f}s"


def test_manifest_pages_the_same_objects_with_distinct_date_added(
    collection: Collection, content: dict[str, list[dict[str, str]]]
) -> None:
    entries = manifest_all(collection)
    assert [e["id"] for e in entries] == [o["id"] for o in page_all(collection)]
    dates = [e["date_added"] for e in entries]
    assert len(dates) == BULK + len(content["live"]) == len(set(dates))
    assert dates == sorted(dates)
    assert all(len(d) == len("2024-01-01T00:00:00.000000Z") for d in dates)


def test_date_added_headers(node: NodeProcess, partner: Identity, collection: Collection) -> None:
    url = f"/taxii2/hashfed/collections/{collection.id}/objects/"
    with node.client(partner) as c:
        r = c.get(url, params={"limit": 3}, headers={"Accept": TAXII})
        entries = c.get(
            url.replace("objects/", "manifest/"), params={"limit": 3}, headers={"Accept": TAXII}
        ).json()["objects"]
    assert r.headers["content-type"] == TAXII
    assert r.headers["X-TAXII-Date-Added-First"] == entries[0]["date_added"]
    assert r.headers["X-TAXII-Date-Added-Last"] == entries[2]["date_added"]
    body = r.json()
    assert body["more"] is True
    assert body["next"]


def test_incremental_added_after_then_revocations(
    node: NodeProcess, collection: Collection, content: dict[str, list[dict[str, str]]]
) -> None:
    watermark = manifest_all(collection)[-1]["date_added"]
    assert page_all(collection, added_after=watermark) == []

    new = [{"type": "sha256", "value": rand_hex(32), "category": "A1"} for _ in range(5)]
    add(node, "au-argos/live", new)
    fresh = page_all(collection, added_after=watermark)
    assert [o["pattern"] for o in fresh] == [
        f"[file:hashes.'SHA-256' = '{i['value']}']" for i in new
    ]
    assert_valid(fresh)
    watermark = manifest_all(collection, added_after=watermark)[-1]["date_added"]

    gone = content["live"][:3]
    remove(node, "au-argos/live", gone)
    revoked = page_all(collection, added_after=watermark)
    assert [o["id"] for o in revoked] == [
        indicator_id("au-argos/live", i["type"], i["value"]) for i in gone
    ]
    assert all(o["revoked"] is True and o["modified"] > o["created"] for o in revoked)
    assert_valid(revoked)
    # a later full pass shows only the last version of each object
    every = page_all(collection)
    assert sum(1 for o in every if o.get("revoked")) == 3
    assert len(every) == BULK + len(content["live"]) + len(new)
    versions = collection.object_versions(revoked[0]["id"])
    assert len(versions["versions"]) == 2


def test_every_object_of_a_small_collection_is_valid_stix(
    node: NodeProcess, collection: Collection, content: dict[str, list[dict[str, str]]]
) -> None:
    # the bulk list came first; everything after its last object is the small list
    after_bulk = manifest_all(collection)[BULK - 1]["date_added"]
    objects = page_all(collection, added_after=after_bulk, version="all")
    assert len(objects) >= len(content["live"])
    assert_valid(objects)


def test_unacceptable_accept_is_406_and_writes_are_refused(
    node: NodeProcess, partner: Identity, collection: Collection
) -> None:
    with node.client(partner) as c:
        assert c.get("/taxii2/", headers={"Accept": "application/json"}).status_code == 406
        assert (
            c.get("/taxii2/", headers={"Accept": "application/taxii+json;version=2.0"}).status_code
            == 406
        )
        ok = c.get("/taxii2/", headers={"Accept": "application/taxii+json"})
        assert ok.status_code == 200
        assert ok.headers["content-type"] == TAXII
        url = f"/taxii2/hashfed/collections/{collection.id}/objects/"
        post = c.post(url, json={"objects": []}, headers={"Accept": TAXII, "Content-Type": TAXII})
        assert post.status_code == 403
        unknown = c.get(
            "/taxii2/hashfed/collections/00000000-0000-0000-0000-000000000000/",
            headers={"Accept": TAXII},
        )
        assert unknown.status_code == 404
        bad_next = c.get(url, params={"next": "hf1.e30.AAAA"}, headers={"Accept": TAXII})
        assert bad_next.status_code == 400


def test_taxii_pulls_are_audited_without_hash_values(
    node: NodeProcess, collection: Collection, content: dict[str, list[dict[str, str]]]
) -> None:
    collection.get_objects(limit=10)
    time.sleep(0.6)  # the audit buffer writes a few times a second
    store = Store.open(f"sqlite:///{node.data / 'hashfed.db'}", migrate=False)
    try:
        records = store.audit_records(limit=1_000_000)
    finally:
        store.close()
    pulls = [r for r in records if r.action == "taxii.objects" and r.actor == "acme"]
    assert pulls
    assert all(r.target == "baseline" for r in pulls)
    assert any(r.count == 10 for r in pulls)
    values = {i["value"] for v in content.values() for i in v}
    dump = "\n".join(f"{r.target} {r.detail}" for r in records)
    assert not any(v in dump for v in values)


@pytest.mark.slow
def test_every_one_of_ten_thousand_objects_is_valid_stix(collection: Collection) -> None:
    objects = page_all(collection)
    assert len(objects) >= BULK
    assert_valid(objects)


def test_date_added_is_close_to_arrival(collection: Collection) -> None:
    envelope = collection.get_manifest(limit=1)
    first = dt.datetime.fromisoformat(envelope["objects"][0]["date_added"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - first).total_seconds()) < 600


def test_collection_alias_in_the_url(
    node: NodeProcess, partner: Identity, collection: Collection
) -> None:
    # taxii2-client insists on the id in its URLs; SIEM connectors and curl take the alias.
    base = "/taxii2/hashfed/collections/"
    with node.client(partner) as c:
        info = c.get(f"{base}baseline/", headers={"Accept": TAXII}).json()
        by_alias = c.get(
            f"{base}baseline/objects/", params={"limit": 20}, headers={"Accept": TAXII}
        )
        by_id = c.get(
            f"{base}{collection.id}/objects/", params={"limit": 20}, headers={"Accept": TAXII}
        )
        manifest = c.get(
            f"{base}baseline/manifest/", params={"limit": 2}, headers={"Accept": TAXII}
        )
    assert info["id"] == collection.id
    assert info["alias"] == "baseline"
    assert by_alias.json()["objects"] == by_id.json()["objects"]
    assert manifest.status_code == 200


def test_indicators_name_their_owner_marking_and_extension(collection: Collection) -> None:
    objects = page_all(collection, type=None)
    served = {o["id"]: o for o in objects}
    kinds = [o["type"] for o in objects if o["type"] != "indicator"]
    assert sorted(kinds) == ["extension-definition", "identity", "marking-definition"]
    owner = served[identity_id("au-argos")]
    assert owner["identity_class"] == "organization"
    marking = served[TLP_MARKINGS["amber"]]
    assert marking["name"] == "TLP:AMBER"
    extension = served[EXTENSION_ID]
    assert extension["created_by_ref"] in served
    for o in objects:
        if o["type"] == "indicator":
            assert o["created_by_ref"] == owner["id"]
            assert o["object_marking_refs"] == [marking["id"]]
            assert set(o["extensions"]) == {EXTENSION_ID}
            assert o["confidence"] == 100
    assert_valid([o for o in objects if o["type"] != "indicator"] + objects[-5:])
    only = page_all(collection, type="identity,marking-definition")
    assert sorted(o["type"] for o in only) == ["identity", "marking-definition"]


def test_errors_are_taxii_error_resources(
    node: NodeProcess, partner: Identity, collection: Collection
) -> None:
    with node.client(partner) as c:
        unknown = c.get(
            "/taxii2/hashfed/collections/no-such-collection/objects/", headers={"Accept": TAXII}
        )
        refused = c.get("/taxii2/", headers={"Accept": "application/json"})
        bad = c.get(
            f"/taxii2/hashfed/collections/{collection.id}/objects/",
            params={"added_after": "yesterday"},
            headers={"Accept": TAXII},
        )
    for r, status in ((unknown, 404), (refused, 406), (bad, 400)):
        assert r.status_code == status
        assert r.headers["content-type"] == TAXII
        body = r.json()
        assert body["http_status"] == str(status)
        assert body["title"]
        assert body["error_code"]
        assert "description" in body
    anonymous = Server(f"{node.url}/taxii2/", verify=str(node.cert))
    with pytest.raises(requests.HTTPError) as info:
        _ = anonymous.api_roots
    resp = info.value.response
    assert resp.status_code == 401
    assert "Basic" in resp.headers["WWW-Authenticate"]
    assert resp.json()["http_status"] == "401"
    anonymous.close()
