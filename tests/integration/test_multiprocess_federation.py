"""One node as three serve processes on one PostgreSQL schema: notify, failover, HAProxy.

``a`` owns lists (one SQLite process). ``b`` is three ``hashfed serve``
processes sharing one data folder and one PostgreSQL schema; ``b`` pulls from
``a`` every 30 s, so a pull within seconds is the notify's doing. ``c`` is
the same shape pulling every 4 s, for the failover test: its scheduler holder
is SIGKILLed and another process must take over and pull within one interval.
HAProxy (the real binary, ``mode tcp``) fronts ``b``'s three processes.

Whether a pulled list is *matchable* in every process is the change feed's
business, not tested here: these tests look at what the database holds.
"""

from __future__ import annotations

import os
import re
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from _cluster import (
    PG_URL,
    SCHEDULER_STARTED,
    Cluster,
    ClusterProcess,
    HAProxy,
    pg_schema,
    wait_until,
)
from _nodes import Identity, NodeProcess, free_port

from crypto.tls import client_context

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(not PG_URL, reason="needs HASHFED_TEST_DATABASE_URL (PostgreSQL)"),
]

B_INTERVAL = 30.0
C_INTERVAL = 4.0


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> float:
    """Poll until ``check`` holds; return the seconds it took."""
    return wait_until(check, timeout, every=0.05, what=what)


def rand_hex(n: int = 32) -> str:
    return os.urandom(n).hex()


@dataclass
class Fed:
    a: NodeProcess
    b: Cluster
    c: Cluster

    def publish(self, name: str, count: int = 20) -> None:
        """Create ``a/name`` (baseline) with ``count`` hashes and publish it."""
        with self.a.client() as c:
            assert (
                c.post("/api/v1/lists", json={"name": name, "label": "baseline"}).status_code == 201
            )
            hashes = [
                {"type": "sha256", "value": rand_hex(), "category": "A1"} for _ in range(count)
            ]
            r = c.post(f"/api/v1/lists/{name}/hashes", json={"hashes": hashes})
            assert r.status_code == 200, r.text
            assert c.post(f"/api/v1/lists/{name}/publish").status_code == 200

    @staticmethod
    def size(proc: NodeProcess, full: str) -> int:
        """The checkpoint size of ``full`` in the database, as ``proc`` reads it (-1: absent)."""
        with proc.client() as c:
            rows = c.get("/api/v1/lists").json()
        return next((r["checkpoint_size"] or 0 for r in rows if r["name"] == full), -1)

    @staticmethod
    def peer_a(proc: NodeProcess) -> dict[str, object]:
        with proc.client() as c:
            return next(x for x in c.get("/api/v1/peers").json() if x["peer"] == "a")


def _add_receiver(a: NodeProcess, rx: Cluster, url: str, interval: float, key_a: list[str]) -> None:
    """``a`` serves ``rx`` (notifying it at ``url``); ``rx`` pulls ``a/*`` every ``interval``."""
    a.cli(
        "peer", "add", rx.node_id, url, "--cert", str(rx.cert), "--labels", "baseline", "--no-pull"
    )
    rx.cli(
        "peer",
        "add",
        "a",
        a.url,
        "--cert",
        str(a.cert),
        *[arg for k in key_a for arg in ("--signing-key", k)],
        "--subscribe",
        "a/*",
        "--interval",
        str(interval),
    )


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    base = tmp_path_factory.mktemp("mpfed")
    with pg_schema() as b_url, pg_schema() as c_url:
        a = NodeProcess("a", base / "a", free_port()).init()
        b = Cluster.create("b", base / "b", b_url)
        c = Cluster.create("c", base / "c", c_url)
        key_a = a.verifier_keys()
        # a notifies process #1 of each: not the first started, so not the scheduler's holder.
        _add_receiver(a, b, b.processes[1].url, B_INTERVAL, key_a)
        _add_receiver(a, c, c.processes[1].url, C_INTERVAL, key_a)
        try:
            a.start()
            b.start()
            yield Fed(a, b, c)
        finally:
            c.stop()
            b.stop()
            a.stop()


def test_a_notify_to_a_process_without_the_scheduler_gets_the_pull_done(fed: Fed) -> None:
    b = fed.b
    assert b.holders() == [0]
    other = b.processes[1]
    wait_for("b's first pull of a", lambda: fed.peer_a(other)["last_success_ms"] is not None)
    next_pull_ms = int(fed.peer_a(other)["next_attempt_ms"])  # type: ignore[call-overload]

    fed.publish("a/one")  # a notifies b's process #1
    took = wait_for("b to pull a/one", lambda: fed.size(b.processes[2], "a/one") == 20)
    done_ms = time.time_ns() // 1_000_000
    assert took < 5.0, f"a notify to a non-holder took {took:.2f}s"
    # Before the scheduled pull was due: the notify did it, not the interval.
    assert done_ms < next_pull_ms, (done_ms, next_pull_ms)

    # Asked directly, a process without the scheduler still takes the request.
    with other.client(fed.a.admin) as c:
        r = c.post("/federation/v1/notify", json={"owner": "a", "name": "one", "size": 20})
    assert r.status_code == 202
    assert r.json() == {"scheduled": True}
    assert b.holders() == [0]


@pytest.fixture(scope="module")
def haproxy(fed: Fed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HAProxy]:
    proxy = HAProxy(tmp_path_factory.mktemp("haproxy"), [p.port for p in fed.b.processes])
    try:
        yield proxy.start()
    finally:
        proxy.stop()


def _through(proxy: HAProxy, node: Cluster, identity: Identity | None) -> httpx.Client:
    if identity is None:  # no client certificate; the server is not checked either
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = client_context(identity.cert, identity.key, pinned_cert_files=[node.cert])
    return httpx.Client(base_url=proxy.url, verify=ctx, timeout=10)


def test_haproxy_in_tcp_mode_passes_the_client_certificate_through(
    fed: Fed, haproxy: HAProxy
) -> None:
    # Round robin over three servers: three connections in a row reach each process once.
    for _ in range(3):
        with _through(haproxy, fed.b, fed.b.admin) as c:
            assert c.get("/api/v1/status").status_code == 200  # admin only
    for _ in range(3):
        with _through(haproxy, fed.b, fed.a.admin) as c:
            r = c.get("/federation/v1/lists")  # peers only: a, identified by its certificate
            assert r.status_code == 200
            assert r.json()["node_id"] == "b"
    for _ in range(3):  # a certificate b does not know
        with _through(haproxy, fed.b, fed.c.admin) as c, pytest.raises(httpx.TransportError):
            c.get("/federation/v1/lists")
    with _through(haproxy, fed.b, None) as c, pytest.raises(httpx.TransportError):
        c.get("/healthz")


def test_a_notify_through_haproxy_gets_the_pull_done(fed: Fed, haproxy: HAProxy) -> None:
    # a now notifies b through HAProxy, which hands it to any of the three.
    toml = fed.a.data / "node.toml"
    text = toml.read_text()
    old_url = fed.b.processes[1].url
    assert f'url = "{old_url}"' in text
    log = fed.a.log
    assert log is not None
    reloaded = log.read_text().count("peers reloaded from node.toml")
    toml.write_text(text.replace(f'url = "{old_url}"', f'url = "{haproxy.url}"'))
    wait_for(
        "a to reload its peers",
        lambda: log.read_text().count("peers reloaded from node.toml") > reloaded,
    )
    next_pull_ms = int(fed.peer_a(fed.b.processes[0])["next_attempt_ms"])  # type: ignore[call-overload]
    fed.publish("a/two")
    took = wait_for("b to pull a/two", lambda: fed.size(fed.b.processes[1], "a/two") == 20)
    assert took < 5.0, f"a notify through HAProxy took {took:.2f}s"
    assert time.time_ns() // 1_000_000 < next_pull_ms

    # Every process behind HAProxy answers a notify it gets, holder or not.
    for _ in range(3):
        with _through(haproxy, fed.b, fed.a.admin) as c:
            r = c.post("/federation/v1/notify", json={"owner": "a", "name": "two", "size": 20})
            assert r.status_code == 202
            assert r.json() == {"scheduled": True}


def test_sigkill_of_the_scheduler_holder_hands_the_pulls_over_within_one_interval(
    fed: Fed,
) -> None:
    c = fed.c
    c.start()
    assert c.holders() == [0]
    wait_for(
        "c's first pull of a", lambda: fed.peer_a(c.processes[1])["last_success_ms"] is not None
    )

    holder = c.processes[0]
    holder.kill()  # SIGKILL: no shutdown, no release; the lock dies with the process
    killed_ms = time.time_ns() // 1_000_000
    t0 = time.monotonic()
    took_lock = wait_for("another process to take the scheduler", lambda: len(c.holders()) == 1)
    new = c.processes[c.holders()[0]]
    assert new.index != 0

    def pulled_since_kill() -> bool:
        success = fed.peer_a(new)["last_success_ms"]
        return isinstance(success, int) and success > killed_ms

    wait_for("the new holder to pull a", pulled_since_kill, timeout=3 * C_INTERVAL)
    took_pull = time.monotonic() - t0
    assert took_pull < C_INTERVAL, f"lock after {took_lock:.2f}s, pull after {took_pull:.2f}s"

    # And it pulls what is new: a list published after the kill arrives too.
    fed.publish("a/three")
    wait_for("c to pull a/three", lambda: fed.size(new, "a/three") == 20, timeout=C_INTERVAL * 2)
    assert _log_count(new, SCHEDULER_STARTED) == 1

    # Overlap detection moved with the scheduler: the new holder detects, the other does not.
    def detecting(proc: ClusterProcess) -> bool:
        with proc.client() as cl:
            return bool(cl.get("/api/v1/status").json()["overlaps"]["detecting"])

    live = [p for p in c.processes if p.alive]
    assert {p.index: detecting(p) for p in live} == {p.index: p is new for p in live}


def _log_count(proc: ClusterProcess, line: str) -> int:
    assert proc.log is not None
    return len(re.findall(re.escape(line), proc.log.read_text()))
