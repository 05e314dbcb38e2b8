"""The API over mutual TLS, against a real `hashfed serve` process on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _nodes import Identity, NodeProcess, free_port, make_identity

from crypto.merkle import leaf_hash, verify_inclusion
from crypto.pki import create_ca, issue_certificate, save_certificate
from crypto.pki import save_private_key as save_tls_key
from node.log.entry import encode_leaf
from node.log.hashes import hamming

pytestmark = pytest.mark.network

# TLS 1.3 reports a refused client certificate after the client's handshake
# completes: the first request fails instead (research/verified-facts.md).
REFUSED = (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError)


def rand_hex(n: int) -> str:
    return os.urandom(n).hex()


def flip_bits(code_hex: str, bits: int, seed: int) -> str:
    import random

    rnd = random.Random(seed)
    value = int(code_hex, 16)
    for b in rnd.sample(range(256), bits):
        value ^= 1 << b
    return f"{value:064x}"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data = tmp_path_factory.mktemp("api") / "au-argos"
    n = NodeProcess("au-argos", data, free_port()).init()
    n.start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def people(node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Identity]:
    folder = tmp_path_factory.mktemp("ids")
    ids = {
        "partner": make_identity(folder, "acme"),
        "peer": make_identity(folder, "be-fccu"),
        "gone": make_identity(folder, "gone"),
    }
    node.cli(
        "principal",
        "add",
        "acme",
        "--role",
        "partner",
        "--labels",
        "baseline",
        "--cert",
        str(ids["partner"].cert),
    )
    node.cli(
        "principal",
        "add",
        "be-fccu",
        "--role",
        "peer",
        "--labels",
        "baseline,restricted",
        "--cert",
        str(ids["peer"].cert),
    )
    node.cli(
        "principal",
        "add",
        "gone",
        "--role",
        "partner",
        "--labels",
        "baseline",
        "--cert",
        str(ids["gone"].cert),
    )
    time.sleep(2.5)  # the running node trusts newly pinned certificates within 2 s
    return ids


@pytest.fixture(scope="module")
def lists(node: NodeProcess) -> dict[str, list[str]]:
    """A baseline and a restricted list with known sha256 and PDQ content."""
    base = {"sha256": [rand_hex(32) for _ in range(50)], "pdq": [rand_hex(32) for _ in range(200)]}
    restricted = {
        "sha256": [rand_hex(32) for _ in range(20)],
        "pdq": [rand_hex(32) for _ in range(20)],
    }
    with node.client() as c:
        for name, label, content in (
            ("base", "baseline", base),
            ("secret", "restricted", restricted),
        ):
            r = c.post("/api/v1/lists", json={"name": f"au-argos/{name}", "label": label})
            assert r.status_code == 201, r.text
            hashes = [
                {"type": t, "value": v, "category": "A1"} for t, vs in content.items() for v in vs
            ]
            r = c.post(f"/api/v1/lists/au-argos/{name}/hashes", json={"hashes": hashes})
            assert r.status_code == 200, r.text
            assert r.json()["appended"] == len(hashes)
            assert c.post(f"/api/v1/lists/au-argos/{name}/publish").status_code == 200
    return {
        "base_sha": base["sha256"],
        "base_pdq": base["pdq"],
        "secret_sha": restricted["sha256"],
        "secret_pdq": restricted["pdq"],
    }


# --- the handshake -------------------------------------------------------------------------


def test_client_without_certificate_is_refused(node: NodeProcess) -> None:
    ctx = ssl.create_default_context(cafile=str(node.cert))
    with pytest.raises(REFUSED), httpx.Client(verify=ctx, base_url=node.url) as c:
        c.get("/healthz")


def test_certificate_from_untrusted_ca_is_refused(node: NodeProcess, tmp_path: Path) -> None:
    ca_key, ca_cert = create_ca("rogue CA")
    key, cert = issue_certificate(ca_key, ca_cert, "acme")  # same name as a real partner
    save_tls_key(key, tmp_path / "k.pem")
    save_certificate(cert, tmp_path / "c.pem")
    with (
        pytest.raises(REFUSED),
        node.client(Identity("acme", tmp_path / "c.pem", tmp_path / "k.pem")) as c,
    ):
        c.get("/healthz")


def test_expired_certificate_is_refused(node: NodeProcess, tmp_path: Path) -> None:
    # The node trusts certificates from its own CA; this one is from it, but expired.
    node.cli("ca", "init", check=False)
    from crypto.pki import load_certificate, load_private_key

    ca_key = load_private_key(node.data / "ca" / "ca.key")
    ca_cert = load_certificate(node.data / "ca" / "ca.crt")
    now = dt.datetime.now(dt.UTC)
    key, cert = issue_certificate(
        ca_key,
        ca_cert,
        "late",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    save_tls_key(key, tmp_path / "k.pem")
    save_certificate(cert, tmp_path / "c.pem")
    # Restart so the node loads the CA it now has.
    node.stop()
    node.start()
    with (
        pytest.raises(REFUSED),
        node.client(Identity("late", tmp_path / "c.pem", tmp_path / "k.pem")) as c,
    ):
        c.get("/healthz")


# --- authorisation -----------------------------------------------------------------------------


def test_pinned_but_unregistered_certificate_gets_403(
    node: NodeProcess, people: dict[str, Identity]
) -> None:
    # Trusted at the TLS layer (pinned), but no principal: refused by the app.
    with node.client(people["gone"]) as c:
        assert c.get("/healthz").status_code == 200
    node.cli("principal", "rm", "gone")
    with node.client(people["gone"]) as c:
        r = c.post("/api/v1/match", json={"hashes": [{"type": "md5", "value": "0" * 32}]})
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden"
    node.cli(
        "principal",
        "add",
        "gone",
        "--role",
        "partner",
        "--labels",
        "baseline",
        "--cert",
        str(people["gone"].cert),
    )


def test_removed_principal_is_cut_off_at_once(
    node: NodeProcess, people: dict[str, Identity]
) -> None:
    # Same keep-alive connection: the next request after removal is refused.
    gone = people["gone"]
    with node.client(gone) as c:
        assert (
            c.post(
                "/api/v1/match", json={"hashes": [{"type": "md5", "value": "0" * 32}]}
            ).status_code
            == 200
        )
        node.cli("principal", "rm", "gone")
        r = c.post("/api/v1/match", json={"hashes": [{"type": "md5", "value": "0" * 32}]})
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden"


@pytest.fixture(scope="module")
def pinned(people: dict[str, Identity]) -> dict[str, Identity]:
    return people


def test_partner_cannot_see_restricted_list_by_match(
    node: NodeProcess, pinned: dict[str, Identity], lists: dict[str, list[str]]
) -> None:
    queries = [
        {"type": "sha256", "value": v} for v in lists["secret_sha"][:5] + lists["base_sha"][:5]
    ]
    with node.client(pinned["partner"]) as c:
        body = c.post("/api/v1/match", json={"hashes": queries}).json()
    assert body["hits"] == 5
    assert [r["index"] for r in body["results"]] == [5, 6, 7, 8, 9]
    assert all(h["list"] == "au-argos/base" for res in body["results"] for h in res["hits"])
    # The peer cleared for restricted sees both.
    with node.client(pinned["peer"]) as c:
        assert c.post("/api/v1/match", json={"hashes": queries}).json()["hits"] == 10


def test_partner_cannot_reach_status_or_export(
    node: NodeProcess, pinned: dict[str, Identity], lists: dict[str, list[str]]
) -> None:
    with node.client(pinned["partner"]) as c:
        assert c.get("/api/v1/status").status_code == 403
        assert c.get("/api/v1/lists/au-argos/secret/export").status_code == 403
        assert c.get("/api/v1/lists").status_code == 403


def test_admin_routes_refuse_a_peer(
    node: NodeProcess, pinned: dict[str, Identity], lists: dict[str, list[str]]
) -> None:
    with node.client(pinned["peer"]) as c:
        r = c.post("/api/v1/lists", json={"name": "au-argos/x", "label": "baseline"})
        assert r.status_code == 403
        assert r.json()["error"] == "forbidden"
        assert c.post("/api/v1/lists/au-argos/base/publish").status_code == 403


# --- matching ---------------------------------------------------------------------------------


def test_exact_and_pdq_hits_match_brute_force(
    node: NodeProcess, lists: dict[str, list[str]]
) -> None:
    stored = lists["base_pdq"] + lists["secret_pdq"]
    queries = [rand_hex(32) for _ in range(20)]
    queries += [
        flip_bits(stored[i], bits, seed=i)
        for i, bits in enumerate([0, 5, 10, 20, 30, 31, 32, 40] * 3)
    ]
    with node.client() as c:
        body = c.post(
            "/api/v1/match", json={"hashes": [{"type": "pdq", "value": q} for q in queries]}
        ).json()
    by_index = {r["index"]: r for r in body["results"]}
    for i, q in enumerate(queries):
        res = by_index.get(i, {"hits": []})
        want = sorted(
            hamming(bytes.fromhex(q), bytes.fromhex(s))
            for s in stored
            if hamming(bytes.fromhex(q), bytes.fromhex(s)) <= 31
        )
        assert sorted(h["distance"] for h in res["hits"]) == want
    with node.client() as c:
        one = c.get(f"/api/v1/match/sha256/{lists['base_sha'][3].upper()}").json()
    assert [(h["list"], h["category"], h["distance"]) for h in one["results"][0]["hits"]] == [
        ("au-argos/base", "A1", 0)
    ]
    assert one["results"][0]["hits"][0]["checkpoint"]["size"] == 250


def test_hash_is_matchable_right_after_add_and_not_after_remove(
    node: NodeProcess, lists: dict[str, list[str]]
) -> None:
    value = rand_hex(20)
    with node.client() as c:
        assert c.get(f"/api/v1/match/sha1/{value}").json()["hits"] == 0
        assert (
            c.post(
                "/api/v1/lists/au-argos/base/hashes",
                json={"hashes": [{"type": "sha1", "value": value, "category": "B"}]},
            ).status_code
            == 200
        )
        hit = c.get(f"/api/v1/match/sha1/{value}").json()["results"][0]["hits"][0]
        assert hit["checkpoint"] is None  # added, not yet published
        assert (
            c.post(
                "/api/v1/lists/au-argos/base/remove",
                json={"hashes": [{"type": "sha1", "value": value}]},
            ).status_code
            == 200
        )
        assert c.get(f"/api/v1/match/sha1/{value}").json()["hits"] == 0


def test_inclusion_proof_verifies_against_the_signed_root(
    node: NodeProcess, lists: dict[str, list[str]]
) -> None:
    value = lists["base_sha"][7]
    with node.client() as c:
        hit = c.post(
            "/api/v1/match?proof=true", json={"hashes": [{"type": "sha256", "value": value}]}
        ).json()["results"][0]["hits"][0]
    proof, cp = hit["proof"], hit["checkpoint"]
    leaf = encode_leaf(proof["leaf_index"], "add", "sha256", value, "A1", proof["timestamp_ms"])
    verify_inclusion(
        proof["leaf_index"],
        proof["tree_size"],
        leaf_hash(leaf),
        [bytes.fromhex(h) for h in proof["hashes"]],
        bytes.fromhex(cp["root_hash"]),
    )


def test_near_pdq_hit_is_verifiable_by_its_stored_code_and_proof(
    node: NodeProcess, lists: dict[str, list[str]]
) -> None:
    stored = lists["base_pdq"][11]
    query = flip_bits(stored, 9, seed=11)
    with node.client() as c:
        res = c.post(
            "/api/v1/match?proof=true", json={"hashes": [{"type": "pdq", "value": query}]}
        ).json()["results"][0]
    hit = next(h for h in res["hits"] if h["list"] == "au-argos/base")
    assert (hit["distance"], hit["value"]) == (9, stored)
    # The client recomputes the distance and checks membership itself.
    assert hamming(bytes.fromhex(query), bytes.fromhex(hit["value"])) == hit["distance"]
    proof, cp = hit["proof"], hit["checkpoint"]
    leaf = encode_leaf(
        proof["leaf_index"], "add", "pdq", hit["value"], hit["category"], proof["timestamp_ms"]
    )
    verify_inclusion(
        proof["leaf_index"],
        proof["tree_size"],
        leaf_hash(leaf),
        [bytes.fromhex(h) for h in proof["hashes"]],
        bytes.fromhex(cp["root_hash"]),
    )
    with node.client() as c:  # an exact hit does not echo the query
        exact = c.get(f"/api/v1/match/pdq/{stored}").json()["results"][0]["hits"][0]
    assert exact["value"] is None


def test_partner_gets_no_stored_code_of_a_restricted_list_by_near_match(
    node: NodeProcess, pinned: dict[str, Identity], lists: dict[str, list[str]]
) -> None:
    secret = lists["secret_pdq"][3]
    query = flip_bits(secret, 6, seed=3)
    with node.client(pinned["partner"]) as c:
        body = c.post(
            "/api/v1/match?proof=true",
            json={"hashes": [{"type": "pdq", "value": query}], "max_distance": 31},
        )
    assert body.status_code == 200
    assert secret not in body.text
    assert all(h["list"] == "au-argos/base" for r in body.json()["results"] for h in r["hits"])


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"hashes": [{"type": "pdq", "value": "ab" * 31 + "a"}]}, "hashes[0].value"),
        ({"hashes": [{"type": "md5", "value": "z" * 32}]}, "hashes[0].value"),
        (
            {"hashes": [{"type": "sha256", "value": "0" * 64}, {"type": "nope", "value": "00"}]},
            "hashes[1].type",
        ),
        ({"hashes": []}, "hashes"),
        ({"hashes": [{"type": "md5", "value": "0" * 32}] * 10_001}, "hashes"),
        ({"hashes": [{"type": "md5"}]}, "hashes[0].value"),
    ],
)
def test_bad_match_input_is_a_clear_4xx(
    node: NodeProcess, payload: dict[str, object], field: str
) -> None:
    with node.client() as c:
        r = c.post("/api/v1/match", json=payload)
    assert 400 <= r.status_code < 500
    body = r.json()
    assert set(body) == {"error", "detail"}
    assert field in body["detail"]
    assert "ab" * 31 not in body["detail"]
    assert "z" * 32 not in body["detail"]


def test_unknown_list_is_404(node: NodeProcess) -> None:
    with node.client() as c:
        r = c.get("/api/v1/lists/au-argos/none")
    assert r.status_code == 404
    assert r.json()["error"] == "unknown_list"


def test_every_match_batch_is_audited_without_values(
    node: NodeProcess, lists: dict[str, list[str]]
) -> None:
    value = lists["base_sha"][0]
    with node.client() as c:
        c.post("/api/v1/match", json={"hashes": [{"type": "sha256", "value": value}] * 3})
    import sqlite3

    deadline = time.monotonic() + 5  # match audits are written in batches, 5 per second
    while True:
        db = sqlite3.connect(node.data / "hashfed.db")
        rows = db.execute("SELECT actor, action, count FROM audit WHERE action='match'").fetchall()
        dump = "\n".join(" ".join(map(str, r)) for r in db.execute("SELECT * FROM audit"))
        db.close()
        if ("self", "match", 3) in rows or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert ("self", "match", 3) in rows
    assert value not in dump


def test_healthz_needs_no_role_and_tells_nothing(
    node: NodeProcess, pinned: dict[str, Identity]
) -> None:
    with node.client(pinned["partner"]) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
