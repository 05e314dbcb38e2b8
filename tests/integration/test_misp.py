"""The native MISP feed against a real `hashfed serve` over TLS, loaded with PyMISP.

Every file is loaded as MISP would (``MISPEvent.load``, after a check against the
MISP event JSON schema PyMISP ships), and the events round-trip through PyMISP unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pymisp
import pytest
from _nodes import NodeProcess, free_port
from pymisp import MISPEvent

from node.feeds.misp import attribute_uuid, event_uuid

pytestmark = pytest.mark.network

Items = list[dict[str, str]]


def rand_hex(n: int) -> str:
    return os.urandom(n).hex()


def admin(node: NodeProcess, path: str, body: object = None) -> None:
    with node.client() as c:
        r = c.post(path, json=body)
    assert r.status_code < 300, r.text


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data = tmp_path_factory.mktemp("misp") / "au-argos"
    n = NodeProcess("au-argos", data, free_port(), env={"HASHFED_TLS_CLIENT_AUTH": "optional"})
    n.init().start(timeout=120)  # a loaded machine starts slowly
    n.cli("principal", "add", "acme", "--role", "partner", "--labels", "baseline")
    yield n
    n.stop()


@pytest.fixture(scope="module")
def token(node: NodeProcess) -> str:
    return node.cli("token", "create", "acme").stdout.strip().split()[-1]


@pytest.fixture(scope="module")
def content(node: NodeProcess) -> dict[str, Items]:
    main = [{"type": "sha256", "value": rand_hex(32), "category": "A1"} for _ in range(300)] + [
        {"type": "md5", "value": rand_hex(16), "category": "B2"},
        {"type": "sha1", "value": rand_hex(20), "category": ""},
        {"type": "pdq", "value": rand_hex(32), "category": "A2"},
    ]
    other = [{"type": "sha256", "value": rand_hex(32), "category": "A1"} for _ in range(5)]
    secret = [{"type": "sha256", "value": rand_hex(32), "category": "A1"}]
    for name, label, items in (
        ("main", "baseline", main),
        ("other", "baseline", other),
        ("secret", "restricted", secret),
    ):
        admin(node, "/api/v1/lists", {"name": f"au-argos/{name}", "label": label})
        admin(node, f"/api/v1/lists/au-argos/{name}/hashes", {"hashes": items})
        admin(node, f"/api/v1/lists/au-argos/{name}/publish")
    gone = main[:2]
    keys = [{"type": i["type"], "value": i["value"]} for i in gone]
    admin(node, "/api/v1/lists/au-argos/main/remove", {"hashes": keys})
    admin(node, "/api/v1/lists/au-argos/main/publish")
    return {"main": main[2:], "gone": gone, "other": other, "secret": secret}


@pytest.fixture
def misp(node: NodeProcess, token: str) -> Iterator[httpx.Client]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(node.cert))
    with httpx.Client(
        base_url=f"{node.url}/misp/v1/baseline/",
        verify=ctx,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    ) as c:
        yield c


MISP_SCHEMA = json.loads(
    (Path(pymisp.__file__).parent / "data" / "schema.json").read_text(encoding="utf-8")
)


def load(misp: httpx.Client, event_id: str) -> MISPEvent:
    r = misp.get(f"{event_id}.json")
    assert r.status_code == 200, r.text
    jsonschema.validate(r.json(), MISP_SCHEMA)  # the MISP event schema PyMISP ships
    ev = MISPEvent()
    ev.load(r.content)
    return ev


def test_manifest_lists_one_event_per_list(misp: httpx.Client, content: dict[str, Items]) -> None:
    r = misp.get("manifest.json")
    assert r.status_code == 200, r.text
    manifest = r.json()
    assert set(manifest) == {event_uuid("au-argos/main"), event_uuid("au-argos/other")}
    for entry in manifest.values():
        assert entry["Orgc"]["name"] == "au-argos"
        assert {"name": "tlp:amber"} in entry["Tag"]
        assert isinstance(entry["timestamp"], int)


def test_every_event_loads_in_pymisp_with_its_hashes(
    misp: httpx.Client, content: dict[str, Items]
) -> None:
    manifest = misp.get("manifest.json").json()
    for uuid_text, entry in manifest.items():
        ev = load(misp, uuid_text)
        assert ev.uuid == uuid_text
        assert ev.info == entry["info"]
        assert int(ev.timestamp.timestamp()) == entry["timestamp"]
        assert ev.manifest[uuid_text]["Orgc"]["name"] == "au-argos"
    main = load(misp, event_uuid("au-argos/main"))
    live = {(a.type, a.value) for a in main.attributes if not getattr(a, "deleted", False)}
    expected = {({"pdq": "text"}.get(i["type"], i["type"]), i["value"]) for i in content["main"]}
    assert live == expected
    deleted = {a.value for a in main.attributes if getattr(a, "deleted", False)}
    assert deleted == {i["value"] for i in content["gone"]}
    by_value = {a.value: a for a in main.attributes}
    pdq = next(i for i in content["main"] if i["type"] == "pdq")
    assert by_value[pdq["value"]].comment == "pdq"
    assert 'hashfed:hash-type="pdq"' in {t.name for t in by_value[pdq["value"]].tags}
    md5 = next(i for i in content["main"] if i["type"] == "md5")
    assert {t.name for t in by_value[md5["value"]].tags} == {'hashfed:category="B2"'}
    assert by_value[md5["value"]].to_ids is True
    assert by_value[md5["value"]].uuid == attribute_uuid("au-argos/main", "md5", md5["value"])
    assert "tlp:amber" in {t.name for t in main.tags}


def test_events_round_trip_through_pymisp(misp: httpx.Client, content: dict[str, Items]) -> None:
    ev = load(misp, event_uuid("au-argos/main"))
    again = MISPEvent()
    again.load(ev.to_json())
    assert again.uuid == ev.uuid
    assert again.timestamp == ev.timestamp
    assert [(a.uuid, a.type, a.value, getattr(a, "deleted", False)) for a in again.attributes] == [
        (a.uuid, a.type, a.value, getattr(a, "deleted", False)) for a in ev.attributes
    ]


def test_hashes_csv_is_misps_feed_cache(misp: httpx.Client, content: dict[str, Items]) -> None:
    lines = misp.get("hashes.csv").text.splitlines()
    values = [i["value"] for i in content["main"] + content["other"]]
    want = {hashlib.md5(v.encode()).hexdigest() for v in values}  # noqa: S324
    assert {line.split(",")[0] for line in lines} == want
    assert {line.split(",")[1] for line in lines} == {
        event_uuid("au-argos/main"),
        event_uuid("au-argos/other"),
    }


def test_etags_give_304_strong_or_weak(misp: httpx.Client, content: dict[str, Items]) -> None:
    for path in ("manifest.json", f"{event_uuid('au-argos/other')}.json"):
        first = misp.get(path)
        etag = first.headers["etag"]
        for sent in (etag, "W/" + etag):
            assert misp.get(path, headers={"If-None-Match": sent}).status_code == 304


def test_event_timestamp_moves_with_content_not_with_heartbeats(
    node: NodeProcess, misp: httpx.Client, content: dict[str, Items]
) -> None:
    uid = event_uuid("au-argos/other")
    before = misp.get("manifest.json").json()[uid]["timestamp"]
    etag = misp.get(f"{uid}.json").headers["etag"]
    time.sleep(1.1)  # MISP compares whole seconds
    admin(node, "/api/v1/lists/au-argos/other/publish")  # re-signed, nothing changed
    assert misp.get("manifest.json").json()[uid]["timestamp"] == before
    assert misp.get(f"{uid}.json", headers={"If-None-Match": etag}).status_code == 304
    new = [{"type": "sha256", "value": rand_hex(32), "category": "A1"}]
    admin(node, "/api/v1/lists/au-argos/other/hashes", {"hashes": new})
    admin(node, "/api/v1/lists/au-argos/other/publish")
    assert misp.get("manifest.json").json()[uid]["timestamp"] > before
    ev = load(misp, uid)
    assert new[0]["value"] in {a.value for a in ev.attributes}


def test_restricted_lists_and_unknown_events_are_404(
    misp: httpx.Client, node: NodeProcess, token: str, content: dict[str, Items]
) -> None:
    assert misp.get(f"{event_uuid('au-argos/secret')}.json").status_code == 404
    assert misp.get("not-a-uuid.json").status_code == 404
    r = misp.get(f"{node.url}/misp/v1/restricted/manifest.json")
    assert r.status_code == 404
    assert json.loads(r.text)["error"]
