"""Industry feeds over HTTPS against a real `hashfed serve` process on 127.0.0.1.

Partners connect with a pinned client certificate or, with
``tls_client_auth = "optional"``, with only a token (Bearer or HTTP Basic).
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _nodes import Identity, NodeProcess, free_port, make_identity

from crypto.checkpoint import list_origin, verify_checkpoint
from crypto.keys import NoteVerifier
from crypto.merkle import CompactRange, leaf_hash
from node.log.entry import encode_leaf
from node.store import Store

pytestmark = pytest.mark.network

OPTIONAL_TLS = {"HASHFED_TLS_CLIENT_AUTH": "optional"}


def rand_hex(n: int) -> str:
    return os.urandom(n).hex()


def sha_items(n: int) -> list[dict[str, str]]:
    return [{"type": "sha256", "value": rand_hex(32), "category": "A1"} for _ in range(n)]


def admin_do(node: NodeProcess, method: str, path: str, body: object = None) -> httpx.Response:
    with node.client() as c:
        r = c.request(method, path, json=body)
    assert r.status_code < 300, r.text
    return r


def make_list(node: NodeProcess, name: str, label: str, items: list[dict[str, str]]) -> None:
    admin_do(node, "POST", "/api/v1/lists", {"name": name, "label": label})
    add(node, name, items)


def add(node: NodeProcess, name: str, items: list[dict[str, str]], publish: bool = True) -> None:
    admin_do(node, "POST", f"/api/v1/lists/{name}/hashes", {"hashes": items})
    if publish:
        admin_do(node, "POST", f"/api/v1/lists/{name}/publish")


def remove(node: NodeProcess, name: str, items: list[dict[str, str]]) -> None:
    keys = [{"type": i["type"], "value": i["value"]} for i in items]
    admin_do(node, "POST", f"/api/v1/lists/{name}/remove", {"hashes": keys})
    admin_do(node, "POST", f"/api/v1/lists/{name}/publish")


def token_client(node: NodeProcess, token: str, *, basic: bool = False) -> httpx.Client:
    """No client certificate at all: the token is the only credential."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(node.cert))
    auth = (
        {"Authorization": "Basic " + base64.b64encode(f"acme:{token}".encode()).decode()}
        if basic
        else {"Authorization": f"Bearer {token}"}
    )
    return httpx.Client(base_url=node.url, verify=ctx, headers=auth, timeout=30)


def lines_of(resp: httpx.Response) -> list[dict[str, object]]:
    return [json.loads(x) for x in resp.text.splitlines()]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data = tmp_path_factory.mktemp("feeds") / "au-argos"
    n = NodeProcess("au-argos", data, free_port(), env=OPTIONAL_TLS).init()
    n.start()
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
    base = [*sha_items(40), {"type": "pdq", "value": rand_hex(32), "category": "B2"}]
    other = sha_items(10)
    secret = sha_items(5)
    make_list(node, "au-argos/base", "baseline", base)
    make_list(node, "au-argos/other", "baseline", other)
    make_list(node, "au-argos/secret", "restricted", secret)
    return {"base": base, "other": other, "secret": secret}


def verifier(node: NodeProcess) -> list[NoteVerifier]:
    return [NoteVerifier.from_verifier_key(k) for k in node.verifier_keys()]


def test_manifest_lists_what_the_partner_is_cleared_for(
    node: NodeProcess, partner: Identity, content: dict[str, list[dict[str, str]]]
) -> None:
    with node.client(partner) as c:
        r = c.get("/feeds/v1/baseline")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["list"] for x in body["lists"]] == ["au-argos/base", "au-argos/other"]
    base = body["lists"][0]
    assert (base["size"], base["hashes"]) == (41, 41)
    cp = verify_checkpoint(
        base["checkpoint"], origin=list_origin("au-argos", "base"), verifiers=verifier(node)
    )
    assert cp.size == 41
    assert body["cursor"].startswith("hf1.")


def test_label_not_cleared_is_the_same_404_as_an_unknown_one(
    node: NodeProcess, partner: Identity, content: dict[str, list[dict[str, str]]]
) -> None:
    with node.client(partner) as c:
        hidden = c.get("/feeds/v1/restricted")
        unknown = c.get("/feeds/v1/no-such-label")
        hidden_entries = c.get("/feeds/v1/restricted/entries")
    assert hidden.status_code == unknown.status_code == hidden_entries.status_code == 404
    assert hidden.json()["error"] == unknown.json()["error"] == "unknown_feed"
    assert content["secret"][0]["value"] not in hidden_entries.text


def test_unchanged_feed_costs_a_304(
    node: NodeProcess, partner: Identity, content: dict[str, list[dict[str, str]]]
) -> None:
    with node.client(partner) as c:
        etag = c.get("/feeds/v1/baseline").headers["etag"]
        assert c.get("/feeds/v1/baseline", headers={"If-None-Match": etag}).status_code == 304
        extra = sha_items(1)
        add(node, "au-argos/other", extra)
        content["other"] += extra
        changed = c.get("/feeds/v1/baseline", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag


def test_token_alone_works_as_bearer_and_as_basic_password(
    node: NodeProcess, token: str, content: dict[str, list[dict[str, str]]]
) -> None:
    for basic in (False, True):
        with token_client(node, token, basic=basic) as c:
            assert c.get("/feeds/v1/baseline").status_code == 200
    with token_client(node, "hf_00000000_" + "x" * 43) as c:
        assert c.get("/feeds/v1/baseline").status_code == 401


def test_full_ndjson_verifies_against_the_owner_signature(
    node: NodeProcess, partner: Identity, content: dict[str, list[dict[str, str]]]
) -> None:
    with node.client(partner) as c:
        r = c.get("/feeds/v1/baseline/entries")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = lines_of(r)
    assert lines[-1] == {"cursor": r.headers["x-hashfed-cursor"]}
    lists: dict[str, tuple[dict[str, object], CompactRange]] = {}
    for line in lines[:-1]:
        if "checkpoint" in line:
            lists[str(line["list"])] = (line, CompactRange())
        else:
            cr = lists[str(line["list"])][1]
            assert line["seq"] == cr.size
            cr.append(
                leaf_hash(
                    encode_leaf(
                        line["seq"],
                        line["op"],
                        line["type"],
                        line["value"],  # type: ignore[arg-type]
                        line["category"],
                        line["timestamp_ms"],  # type: ignore[arg-type]
                    )
                )
            )
    assert set(lists) == {"au-argos/base", "au-argos/other"}
    for name, (header, cr) in lists.items():
        owner, lname = name.split("/")
        cp = verify_checkpoint(
            str(header["checkpoint"]), origin=list_origin(owner, lname), verifiers=verifier(node)
        )
        assert (cr.size, cr.root()) == (cp.size, cp.root_hash)


def test_incremental_gets_only_adds_and_removes_after_the_cursor(
    node: NodeProcess, partner: Identity, content: dict[str, list[dict[str, str]]]
) -> None:
    with node.client(partner) as c:
        cursor = c.get("/feeds/v1/baseline").json()["cursor"]
        new = sha_items(3)
        add(node, "au-argos/other", new)
        remove(node, "au-argos/other", content["other"][:2])
        r = c.get("/feeds/v1/baseline/entries", params={"since": cursor})
    assert r.status_code == 200, r.text
    lines = lines_of(r)
    entries = [x for x in lines if "seq" in x]
    assert [(x["op"], x["value"]) for x in entries] == [("add", i["value"]) for i in new] + [
        ("remove", i["value"]) for i in content["other"][:2]
    ]
    headers = {x["list"]: x for x in lines if "checkpoint" in x}
    assert headers["au-argos/base"]["start"] == headers["au-argos/base"]["size"] == 41
    assert headers["au-argos/other"]["start"] == 11  # 10 + one added by the 304 test
    content["other"] = content["other"][2:] + new


def test_entries_appended_but_not_published_are_not_served(
    node: NodeProcess, partner: Identity, content: dict[str, list[dict[str, str]]]
) -> None:
    hidden = sha_items(2)
    add(node, "au-argos/base", hidden, publish=False)
    with node.client(partner) as c:
        for fmt in ("ndjson", "csv"):
            r = c.get("/feeds/v1/baseline/entries", params={"format": fmt})
            assert r.status_code == 200
            assert not any(h["value"] in r.text for h in hidden)
        r = c.get("/feeds/v1/baseline/entries", params={"format": "text", "type": "sha256"})
    assert not any(h["value"] in r.text for h in hidden)
    admin_do(node, "POST", "/api/v1/lists/au-argos/base/publish")
    content["base"] += hidden


def test_csv_and_text_are_the_current_set(
    node: NodeProcess, partner: Identity, content: dict[str, list[dict[str, str]]]
) -> None:
    with node.client(partner) as c:
        csv_body = c.get("/feeds/v1/baseline/entries", params={"format": "csv"}).text
        text = c.get("/feeds/v1/baseline/entries", params={"format": "text", "type": "sha256"})
        missing_type = c.get("/feeds/v1/baseline/entries", params={"format": "text"})
        bad_format = c.get("/feeds/v1/baseline/entries", params={"format": "xml"})
    want = {i["value"] for i in content["base"] + content["other"] if i["type"] == "sha256"}
    assert text.text.split() == sorted(want)
    rows = csv_body.splitlines()
    assert rows[0] == "op,list,type,value,category"
    assert len(rows) == 1 + len(want) + 1
    assert missing_type.status_code == bad_format.status_code == 422


def test_tampered_and_foreign_cursors_are_400(
    node: NodeProcess,
    partner: Identity,
    content: dict[str, list[dict[str, str]]],
    tmp_path: Path,
) -> None:
    other = NodeProcess("be-fccu", tmp_path / "be-fccu", free_port()).init()
    other.start()
    try:
        admin_do(other, "POST", "/api/v1/lists", {"name": "be-fccu/x", "label": "baseline"})
        add(other, "be-fccu/x", sha_items(1))
        with other.client() as c:
            foreign = c.get("/feeds/v1/baseline").json()["cursor"]
    finally:
        other.stop()
    with node.client(partner) as c:
        cursor = c.get("/feeds/v1/baseline").json()["cursor"]
        prefix, payload, tag = cursor.split(".")
        flipped = tag[:-2] + ("A" if tag[-2] != "A" else "B") + tag[-1]
        for bad in (f"{prefix}.{payload}.{flipped}", foreign, "garbage"):
            r = c.get("/feeds/v1/baseline/entries", params={"since": bad})
            assert r.status_code == 400, r.text
            assert r.json()["error"] == "invalid_cursor"


def test_cursor_for_a_list_frozen_since_asks_for_a_resync(
    node: NodeProcess, partner: Identity, content: dict[str, list[dict[str, str]]]
) -> None:
    make_list(node, "au-argos/doomed", "baseline", sha_items(2))
    with node.client(partner) as c:
        cursor = c.get("/feeds/v1/baseline").json()["cursor"]
        # what federation does to a list whose owner signed two histories
        store = Store.open(f"sqlite:///{node.data / 'hashfed.db'}", migrate=False)
        try:
            row = store.get_list(owner="au-argos", name="doomed")
            assert row is not None
            store.update_list(list_id=row.id, frozen_reason="fork at size 2")
        finally:
            store.close()
        r = c.get("/feeds/v1/baseline/entries", params={"since": cursor})
        assert r.status_code == 410, r.text
        assert r.json()["error"] == "resync_required"
        full = c.get("/feeds/v1/baseline/entries")
    assert full.status_code == 200
    assert "au-argos/doomed" not in full.text


def test_feed_pulls_are_audited_without_hash_values(
    node: NodeProcess, partner: Identity, content: dict[str, list[dict[str, str]]]
) -> None:
    with node.client(partner) as c:
        assert c.get("/feeds/v1/baseline/entries").status_code == 200
        assert c.get("/feeds/v1/restricted").status_code == 404
    time.sleep(0.6)  # the audit buffer writes a few times a second
    store = Store.open(f"sqlite:///{node.data / 'hashfed.db'}", migrate=False)
    try:
        records = store.audit_records(limit=100_000)
    finally:
        store.close()
    pulls = [r for r in records if r.action == "feed.entries" and r.actor == "acme"]
    assert pulls
    assert all(r.target == "baseline" and r.count > 0 for r in pulls)
    assert any(r.action == "feed.denied" and r.target == "restricted" for r in records)
    values = {i["value"] for v in content.values() for i in v}
    dump = "\n".join(f"{r.target} {r.detail}" for r in records)
    assert not any(v in dump for v in values)
