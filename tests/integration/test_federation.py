"""Three real nodes over mutual TLS: subscribe, relay, labels, notify, removals, backoff.

``a`` owns a baseline and a restricted list; ``b`` pulls both from ``a`` and
relays; ``p`` (an industry partner's node) is cleared for baseline only,
pulls from ``b`` and verifies ``a``'s signature on what ``b`` relays. Peers
are configured with the real ``hashfed peer add`` command; every process is
a real ``hashfed serve``.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from _nodes import Identity, NodeProcess, free_port, run_cli

pytestmark = pytest.mark.network


def rand_hex(n: int = 32) -> str:
    return os.urandom(n).hex()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> float:
    """Poll until ``check`` holds; return the seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Fed:
    a: NodeProcess
    b: NodeProcess
    p: NodeProcess
    base: list[str]
    secret: list[str]

    def add(self, name: str, values: list[str], publish: bool = True) -> None:
        with self.a.client() as c:
            hashes = [{"type": "sha256", "value": v, "category": "A1"} for v in values]
            assert (
                c.post(f"/api/v1/lists/a/{name}/hashes", json={"hashes": hashes}).status_code == 200
            )
            if publish:
                assert c.post(f"/api/v1/lists/a/{name}/publish").status_code == 200

    def size(self, node: NodeProcess, full: str) -> int:
        with node.client() as c:
            rows = c.get("/api/v1/lists").json()
        return next((r["checkpoint_size"] or 0 for r in rows if r["name"] == full), -1)

    def lists(self, node: NodeProcess) -> dict[str, dict[str, Any]]:
        with node.client() as c:
            return {r["name"]: r for r in c.get("/api/v1/lists").json()}

    def matches(self, node: NodeProcess, value: str) -> list[str]:
        with node.client() as c:
            r = c.post("/api/v1/match", json={"hashes": [{"type": "sha256", "value": value}]})
            assert r.status_code == 200, r.text
            return [h["list"] for res in r.json()["results"] for h in res["hits"]]

    def peer(self, node: NodeProcess, peer: str) -> dict[str, Any]:
        with node.client() as c:
            return next(x for x in c.get("/api/v1/peers").json() if x["peer"] == peer)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    base = tmp_path_factory.mktemp("fed")
    a = NodeProcess("a", base / "a", free_port()).init()
    b = NodeProcess("b", base / "b", free_port()).init()
    p = NodeProcess("p", base / "p", free_port()).init()
    a.cli(
        "peer",
        "add",
        "b",
        b.url,
        "--cert",
        str(b.cert),
        "--labels",
        "baseline,restricted",
        "--no-pull",
    )
    b.cli(
        "peer",
        "add",
        "a",
        a.url,
        "--cert",
        str(a.cert),
        *a.key_args(),
        "--subscribe",
        "a/*",
        "--interval",
        "1",
    )
    b.cli("peer", "add", "p", p.url, "--cert", str(p.cert), "--labels", "baseline", "--no-pull")
    # p pulls a/base and a/extra from b only every minute: faster means notify worked.
    p.cli(
        "peer",
        "add",
        "b",
        b.url,
        "--cert",
        str(b.cert),
        "--subscribe",
        "a/base",
        "--subscribe",
        "a/secret",
        "--interval",
        "60",
    )
    p.cli("peer", "trust", "a", *a.key_args())
    for n in (a, b, p):
        n.start()
    f = Fed(a, b, p, [rand_hex() for _ in range(200)], [rand_hex() for _ in range(50)])
    try:
        with a.client() as c:
            for name, label in (("base", "baseline"), ("secret", "restricted")):
                assert (
                    c.post("/api/v1/lists", json={"name": f"a/{name}", "label": label}).status_code
                    == 201
                )
        f.add("base", f.base)
        f.add("secret", f.secret)
        wait_for("p to receive a/base", lambda: f.size(p, "a/base") == 200)
        yield f
    finally:
        for n in (p, b, a):
            n.stop()


def test_b_pulls_every_list_it_subscribes_to(fed: Fed) -> None:
    wait_for("b to receive a/secret", lambda: fed.size(fed.b, "a/secret") == 50)
    got = fed.lists(fed.b)
    assert got["a/base"]["source_peer"] == "a"
    assert not got["a/base"]["local"]
    assert fed.matches(fed.b, fed.secret[0]) == ["a/secret"]


def test_partner_gets_the_baseline_list_relayed_and_verifies_the_owners_signature(
    fed: Fed,
) -> None:
    got = fed.lists(fed.p)
    assert got["a/base"]["source_peer"] == "b"
    assert got["a/base"]["checkpoint_size"] == 200
    out = fed.p.cli("list", "verify", "a/base").stdout
    assert "ok" in out
    assert fed.matches(fed.p, fed.base[17]) == ["a/base"]


def test_labels_keep_the_restricted_list_from_the_partner(fed: Fed) -> None:
    # p even subscribes to a/secret: b never offers it, so p never learns of it.
    assert "a/secret" not in fed.lists(fed.p)
    assert fed.matches(fed.p, fed.secret[0]) == []
    as_p = Identity("p", fed.p.cert, fed.p.data / "tls" / "node.key")
    with fed.b.client(as_p) as c:
        offered = [
            f"{x['owner']}/{x['name']}" for x in c.get("/federation/v1/lists").json()["lists"]
        ]
        assert offered == ["a/base"]
        assert c.get("/federation/v1/lists/a/secret/entries?start=0&limit=1").status_code == 404


def test_notify_carries_a_new_hash_two_hops_within_seconds(fed: Fed) -> None:
    value = rand_hex()
    t0 = time.monotonic()
    fed.add("base", [value])
    wait_for(
        "the new hash to be matchable at p",
        lambda: fed.matches(fed.p, value) == ["a/base"],
        timeout=15,
    )
    took = time.monotonic() - t0
    # p pulls b only every 60 s: this fast, b's notify (after a's) did it.
    assert took < 10, took


def test_removal_at_the_owner_reaches_the_partner(fed: Fed) -> None:
    victim = fed.base[3]
    assert fed.matches(fed.p, victim) == ["a/base"]
    with fed.a.client() as c:
        r = c.post(
            "/api/v1/lists/a/base/remove", json={"hashes": [{"type": "sha256", "value": victim}]}
        )
        assert r.status_code == 200, r.text
        assert c.post("/api/v1/lists/a/base/publish").status_code == 200
    wait_for("the removal to reach p", lambda: fed.matches(fed.p, victim) == [], timeout=15)
    assert fed.matches(fed.b, victim) == []
    a_size = fed.size(fed.a, "a/base")
    wait_for("p to hold the same tree", lambda: fed.size(fed.p, "a/base") == a_size)
    a_list, p_list = fed.lists(fed.a)["a/base"], fed.lists(fed.p)["a/base"]
    assert a_list["checkpoint_root"] == p_list["checkpoint_root"]
    assert a_list["hashes"] == p_list["hashes"]


def test_unsubscribed_lists_are_not_pulled(fed: Fed) -> None:
    with fed.a.client() as c:
        assert (
            c.post("/api/v1/lists", json={"name": "a/extra", "label": "baseline"}).status_code
            == 201
        )
    fed.add("extra", [rand_hex() for _ in range(5)])
    wait_for("b to receive a/extra", lambda: fed.size(fed.b, "a/extra") == 5)
    time.sleep(1.0)  # b has notified p by now; p pulled and skipped it
    assert "a/extra" not in fed.lists(fed.p)


def test_peer_health_is_shown_in_status_and_by_peer_ls(fed: Fed) -> None:
    health = fed.peer(fed.b, "a")
    assert health["healthy"]
    assert health["failures"] == 0
    assert health["lag_entries"] == 0
    assert health["last_success_ms"]
    assert health["next_attempt_ms"]
    with fed.b.client() as c:
        status = c.get("/api/v1/status").json()
    assert {x["peer"] for x in status["peers"]} == {"a", "p"}
    out = run_cli("peer", "ls", data=fed.b.data, env={"COLUMNS": "250"}).stdout
    assert "a/*" in out
    assert fed.a.url in out


def test_backoff_while_a_peer_is_down_and_recovery_when_it_returns(fed: Fed) -> None:
    fed.a.stop()
    seen: list[tuple[int, int, int]] = []  # (failures, last_attempt_ms, next_attempt_ms)

    def three_failures() -> bool:
        h = fed.peer(fed.b, "a")
        # A failure is written with the pull, its next attempt right after by
        # the scheduler: count a failure once both are in.
        if h["failures"] and (h["next_attempt_ms"] or 0) <= h["last_attempt_ms"]:
            return False
        if h["failures"] and (not seen or seen[-1][0] != h["failures"]):
            seen.append((h["failures"], h["last_attempt_ms"], h["next_attempt_ms"]))
        return bool(h["failures"] >= 3)

    wait_for("b to fail pulling a three times", three_failures, timeout=30)
    assert fed.peer(fed.b, "a")["last_error_code"] == "peer_unreachable"
    gaps = [nxt - last for _f, last, nxt in seen]
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), seen
    # b keeps serving what it has while a is away.
    assert fed.matches(fed.b, fed.base[20]) == ["a/base"]
    fed.a.start()
    # No notify: the backed-off schedule itself finds a again (16 intervals at most).
    wait_for("b to pull a again", lambda: fed.peer(fed.b, "a")["failures"] == 0, timeout=30)
    value = rand_hex()
    fed.add("base", [value])
    wait_for("a new hash to reach p", lambda: fed.matches(fed.p, value) == ["a/base"], timeout=15)


def test_sync_command_pulls_without_a_server(fed: Fed) -> None:
    fed.p.stop()
    value = rand_hex()
    fed.add("base", [value])
    want = fed.size(fed.a, "a/base")
    wait_for("b to catch up", lambda: fed.size(fed.b, "a/base") == want)
    out = fed.p.cli("sync", "b").stdout
    assert "ok" in out
    assert "applied" in out
    fed.p.start()
    assert fed.size(fed.p, "a/base") == want
    assert fed.matches(fed.p, value) == ["a/base"]


def test_peers_are_removed_and_added_on_running_nodes(fed: Fed) -> None:
    as_p = Identity("p", fed.p.cert, fed.p.data / "tls" / "node.key")
    fed.b.cli("peer", "rm", "p")
    with fed.b.client(as_p) as c:  # cut off at once
        assert c.get("/federation/v1/lists").status_code == 403
    fed.p.cli("peer", "rm", "b")
    wait_for("p to drop b", lambda: not fed.lists(fed.p) or _peer_ids(fed.p) == [], timeout=10)
    fed.b.cli(
        "peer",
        "add",
        "p",
        fed.p.url,
        "--cert",
        str(fed.p.cert),
        "--labels",
        "baseline",
        "--no-pull",
    )
    fed.p.cli(
        "peer",
        "add",
        "b",
        fed.b.url,
        "--cert",
        str(fed.b.cert),
        "--subscribe",
        "a/base",
        "--interval",
        "60",
    )
    wait_for("p to pull b again", lambda: _peer_ids(fed.p) == ["b"], timeout=10)
    time.sleep(2.5)  # the running nodes trust the re-pinned certificates within 2 s
    value = rand_hex()
    fed.add("base", [value])
    wait_for("a new hash to reach p", lambda: fed.matches(fed.p, value) == ["a/base"], timeout=15)


def _peer_ids(node: NodeProcess) -> list[str]:
    with node.client() as c:
        return [x["peer"] for x in c.get("/api/v1/peers").json()]


def test_the_demo_runs_three_nodes_end_to_end() -> None:
    proc = run_cli("demo", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the federation works" in proc.stdout
    assert "stopped 3 node process(es)" in proc.stdout
