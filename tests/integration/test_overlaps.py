"""Overlaps and allow-lists across three real nodes over mutual TLS.

``a`` owns ``a/base`` (baseline), ``a/secret`` (restricted) and the
allow-list ``a/benign``; ``b`` owns ``b/cases`` (baseline), which holds
hashes equal to ``a``'s, a PDQ code near one of ``a``'s, and hashes on the
allow-list. ``c`` pulls every list from both and relays: ``a`` gets
``b/cases`` through ``c``, ``b`` gets ``a``'s baseline lists through ``c``
(never ``a/secret``). Every node finds the overlaps between the lists it
holds; a partner of ``c`` cleared for baseline sees only the baseline pair;
allow-listed hashes never match or overlap anywhere; a restarted node
resumes detection where it stopped and checks nothing twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _cluster import PG_URL, pg_schema, wait_until
from _nodes import Identity, NodeProcess, free_port, make_identity

# Three real nodes per backend, ~30 s a module.
pytestmark = [pytest.mark.network, pytest.mark.timeout(900)]


def rand_hex(n: int = 32) -> str:
    return os.urandom(n).hex()


def flip(code: str, bits: int) -> str:
    arr = np.frombuffer(bytes.fromhex(code), np.uint8).copy()
    for b in np.random.default_rng(bits).choice(256, bits, replace=False):
        arr[b // 8] ^= 1 << (b % 8)
    return arr.tobytes().hex()


@dataclass
class Net:
    a: NodeProcess
    b: NodeProcess
    c: NodeProcess
    partner: Identity
    shared: list[str]  # sha256 in a/base and b/cases
    secret: str  # sha256 in a/secret and b/cases
    pdq: str  # in a/base; b/cases holds it 10 bits off
    benign: str  # sha256 on a/benign, in a/base and b/cases
    benign_pdq: str  # on a/benign; a/base holds it exactly, b/cases 3 bits off

    def overlaps(self, node: NodeProcess, who: Identity | None = None, **params: str) -> Any:
        with node.client(who) as cl:
            r = cl.get("/api/v1/overlaps", params=params)
            assert r.status_code == 200, r.text
            return r.json()

    def pairs(self, node: NodeProcess, who: Identity | None = None) -> dict[tuple[str, str], int]:
        doc = self.overlaps(node, who)
        return {(p["list_a"], p["list_b"]): p["count"] for p in doc["pairs"]}

    def status(self, node: NodeProcess) -> Any:
        with node.client() as cl:
            return cl.get("/api/v1/status").json()

    def hits(self, node: NodeProcess, hashes: list[dict[str, str]]) -> list[list[str]]:
        with node.client() as cl:
            r = cl.post("/api/v1/match", json={"hashes": hashes})
            assert r.status_code == 200, r.text
            got: list[list[str]] = [[] for _ in hashes]
            for res in r.json()["results"]:  # queries without hits are left out
                got[res["index"]] = [h["list"] for h in res["hits"]]
            return got


def _add(node: NodeProcess, name: str, hashes: list[tuple[str, str]]) -> None:
    with node.client() as cl:
        body = {"hashes": [{"type": t, "value": v, "category": "A1"} for t, v in hashes]}
        r = cl.post(f"/api/v1/lists/{name}/hashes", json=body)
        assert r.status_code == 200, r.text
        assert cl.post(f"/api/v1/lists/{name}/publish").status_code == 200


def _create(node: NodeProcess, name: str, label: str) -> None:
    with node.client() as cl:
        r = cl.post("/api/v1/lists", json={"name": name, "label": label})
        assert r.status_code == 201, r.text


@pytest.fixture(scope="module", params=["sqlite"] + (["postgresql"] if PG_URL else []))
def net(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    base = tmp_path_factory.mktemp("overlaps")
    with ExitStack() as stack:
        env: Callable[[], dict[str, str]] = lambda: (  # noqa: E731
            {"HASHFED_DATABASE_URL": stack.enter_context(pg_schema())}
            if request.param == "postgresql"
            else {}
        )
        a = NodeProcess("a", base / "a", free_port(), env=env()).init()
        b = NodeProcess("b", base / "b", free_port(), env=env()).init()
        c = NodeProcess("c", base / "c", free_port(), env=env()).init()
        # Both of each owner's keys: its log key and its cosigner key.
        key = {n.node_id: n.key_args() for n in (a, b, c)}

        def pull(node: NodeProcess, peer: NodeProcess, labels: str, pattern: str) -> None:
            node.cli(
                "peer", "add", peer.node_id, peer.url, "--cert", str(peer.cert),
                "--labels", labels, *key[peer.node_id],
                "--subscribe", pattern, "--interval", "1",
            )  # fmt: skip

        pull(c, a, "baseline,restricted", "a/*")
        pull(c, b, "baseline", "b/*")
        pull(a, c, "baseline,restricted", "b/*")
        pull(b, c, "baseline", "a/*")
        a.cli("peer", "trust", "b", *key["b"])
        b.cli("peer", "trust", "a", *key["a"])
        partner = make_identity(base / "ids", "partner1")
        c.cli(
            "principal", "add", "partner1", "--role", "partner", "--labels", "baseline",
            "--cert", str(partner.cert),
        )  # fmt: skip
        a.cli("list", "create", "a/benign", "--label", "baseline", "--kind", "allow",
              "--allow-distance", "8")  # fmt: skip
        for n in (a, b, c):
            n.start(timeout=120)  # a loaded machine starts slowly
            stack.callback(n.stop)
        pdq, benign_pdq = rand_hex(), rand_hex()
        net = Net(a, b, c, partner, [rand_hex() for _ in range(3)], rand_hex(), pdq,
                  rand_hex(), benign_pdq)  # fmt: skip
        _create(a, "a/base", "baseline")
        _create(a, "a/secret", "restricted")
        _create(b, "b/cases", "baseline")
        _add(a, "a/benign", [("sha256", net.benign), ("pdq", benign_pdq)])
        _add(a, "a/base", [("sha256", v) for v in [*net.shared, net.benign, rand_hex()]]
             + [("pdq", pdq), ("pdq", benign_pdq)])  # fmt: skip
        _add(a, "a/secret", [("sha256", net.secret), ("sha256", rand_hex())])
        near = [("pdq", flip(pdq, 10)), ("pdq", flip(benign_pdq, 3)), ("pdq", rand_hex())]
        _add(b, "b/cases", [("sha256", v) for v in [*net.shared, net.secret, net.benign]] + near)
        yield net


BASE_PAIR = ("a/base", "b/cases")
SECRET_PAIR = ("a/secret", "b/cases")


def _sorted_pairs(pairs: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    return {tuple(sorted(k)): v for k, v in pairs.items()}  # type: ignore[misc]


def test_each_node_finds_the_overlaps_between_the_lists_it_holds(net: Net) -> None:
    # a/base and b/cases: 3 equal sha256 + one PDQ 10 bits off; the benign
    # sha256 and the PDQ near the allow-list's code are suppressed.
    want = [
        (net.a, {BASE_PAIR: 4, SECRET_PAIR: 1}),
        (net.b, {BASE_PAIR: 4}),  # b never receives a/secret
        (net.c, {BASE_PAIR: 4, SECRET_PAIR: 1}),
    ]
    for node, pairs in want:
        wait_until(
            lambda node=node, pairs=pairs: _sorted_pairs(net.pairs(node)) == pairs,  # type: ignore[misc]
            60,
            every=0.2,
            what=f"overlaps at {node.node_id}",
        )
    doc = net.overlaps(net.c, list="a/base")
    (pair,) = doc["pairs"]
    kinds = sorted((o["hash_type"], o["distance"]) for o in pair["overlaps"])
    assert kinds == [("pdq", 10), ("sha256", 0), ("sha256", 0), ("sha256", 0)]
    assert net.status(net.c)["overlaps"]["backlog_entries"] == 0


def test_a_partner_sees_only_overlaps_between_lists_it_may_see(net: Net) -> None:
    wait_until(lambda: SECRET_PAIR in _sorted_pairs(net.pairs(net.c)), 60, every=0.2)
    assert _sorted_pairs(net.pairs(net.c, net.partner)) == {BASE_PAIR: 4}
    with net.c.client(net.partner) as cl:
        r = cl.get("/api/v1/overlaps", params={"list": "a/secret"})
    assert r.status_code == 404  # as an unknown list: nothing learnt


def test_a_bad_since_is_a_clear_422(net: Net) -> None:
    with net.a.client() as cl:
        r = cl.get("/api/v1/overlaps", params={"since": "yesterday"})
    assert r.status_code == 422
    assert "since" in r.json()["detail"]


def test_allow_listed_hashes_never_match(net: Net) -> None:
    wait_until(lambda: BASE_PAIR in _sorted_pairs(net.pairs(net.b)), 60, every=0.2)
    queries = [
        {"type": "sha256", "value": net.benign},
        {"type": "pdq", "value": flip(net.benign_pdq, 3)},
        {"type": "sha256", "value": net.shared[0]},
    ]
    for node in (net.a, net.b, net.c):
        got = net.hits(node, queries)
        assert got[0] == [], node.node_id
        assert got[1] == [], node.node_id
        assert "b/cases" in got[2]
        assert "a/base" in got[2]


def test_the_allow_list_kind_travels_with_the_list(net: Net) -> None:
    for node in (net.b, net.c):
        wait_until(lambda node=node: _kind(node, "a/benign") == ("allow", 8), 60, every=0.2)  # type: ignore[misc]


def _kind(node: NodeProcess, name: str) -> tuple[str, int] | None:
    with node.client() as cl:
        rows = {r["name"]: r for r in cl.get("/api/v1/lists").json()}
    row = rows.get(name)
    return (row["kind"], row["allow_distance"]) if row else None


def test_the_cli_lists_overlaps_by_pair(net: Net) -> None:
    wait_until(lambda: SECRET_PAIR in _sorted_pairs(net.pairs(net.a)), 60, every=0.2)
    import json

    doc = json.loads(net.a.cli("overlaps", "--json", "--since", "1h").stdout)
    assert _sorted_pairs({(p["list_a"], p["list_b"]): p["count"] for p in doc["pairs"]}) == {
        BASE_PAIR: 4,
        SECRET_PAIR: 1,
    }
    assert doc["total"] == 5
    text = net.a.cli("overlaps", "--list", "a/secret").stdout
    assert "a/secret" in text
    assert "a/base" not in text
    bad = net.a.cli("overlaps", "--since", "yesterday", check=False)
    assert bad.returncode != 0
    assert "since" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_restarted_node_resumes_detection_where_it_stopped(net: Net, tmp_path: Path) -> None:
    wait_until(lambda: _sorted_pairs(net.pairs(net.b)) == {BASE_PAIR: 4}, 60, every=0.2)
    net.b.stop()
    # Committed while no serve process runs: found after the restart.
    file = tmp_path / "more.csv"
    late = rand_hex()
    _extra = [("sha256", late)]
    file.write_text(f"type,value,category\nsha256,{late},A1\n")
    net.b.cli("list", "import", "b/cases", str(file))
    net.b.start(timeout=120)
    _add(net.a, "a/base", _extra)  # the other side arrives through c
    wait_until(lambda: _sorted_pairs(net.pairs(net.b)) == {BASE_PAIR: 5}, 60, every=0.2)
    st = net.status(net.b)["overlaps"]
    # Only what arrived since: the import and a's new entry, never a rescan.
    assert st["entries_checked"] <= 2, st
    assert st["backlog_entries"] == 0
