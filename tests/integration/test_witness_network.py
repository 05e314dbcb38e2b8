"""Every node a witness, over real nodes: cosignatures collected, relayed, a split view refused.

``a`` owns ``a/base``; ``b`` pulls it and witnesses it (``a`` submits each
checkpoint to ``b``'s ``add-checkpoint``; ``b`` cosigns what it pulls and
serves its cosignature with the list); ``c`` pulls ``a/base`` from ``a`` and
requires ``b``'s cosignature (``--witness``, ``--witness-quorum 1``).

Then ``a``'s keys are stolen: ``a2`` is a copy of ``a``'s data folder (same
node id, keys and certificate) that extends the list with other entries
than ``a`` does, a split view. ``b`` has cosigned ``a``'s tree and will not
cosign the other; ``d``, which has no witness policy, takes the forged tree
(the attack is real); ``c`` refuses it and keeps the signed note as evidence,
and takes ``a``'s honest tree once it pulls from ``a`` again.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from _nodes import HASHFED, NodeProcess, copy_data, free_port, run_cli

from crypto.cosignature import CosignatureVerifier
from crypto.errors import NoTrustedSignatureError
from crypto.keys import NoteVerifier
from crypto.note import open_note
from node.store import Store

pytestmark = pytest.mark.network

TOKENS_WELCOME = {"HASHFED_TLS_CLIENT_AUTH": "optional"}


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def rand_hashes(n: int) -> list[str]:
    return [os.urandom(32).hex() for _ in range(n)]


@contextmanager
def open_store(node: NodeProcess) -> Iterator[Store]:
    store = Store.open(f"sqlite:///{node.data / 'hashfed.db'}")
    try:
        yield store
    finally:
        store.close()


def cosigner_of(node: NodeProcess) -> CosignatureVerifier:
    key = (node.data / "keys" / "cosigning.pub").read_text().strip()
    verifier = NoteVerifier.from_verifier_key(key)
    assert isinstance(verifier, CosignatureVerifier)
    return verifier


def cosigned_by(note: str, witness: CosignatureVerifier) -> bool:
    try:
        open_note(note, [witness])
    except NoTrustedSignatureError:
        return False
    return True


def add_and_publish(owner: NodeProcess, values: list[str]) -> None:
    hashes = [{"type": "sha256", "value": v, "category": "A1"} for v in values]
    with owner.client() as c:
        r = c.post("/api/v1/lists/a/base/hashes", json={"hashes": hashes})
        assert r.status_code == 200, r.text
        r = c.post("/api/v1/lists/a/base/publish")
        assert r.status_code == 200, r.text


def size_at(node: NodeProcess) -> int:
    with node.client() as c:
        rows = c.get("/api/v1/lists").json()
    return next((r["checkpoint_size"] or 0 for r in rows if r["name"] == "a/base"), -1)


def matches(node: NodeProcess, value: str) -> bool:
    with node.client() as c:
        r = c.get(f"/api/v1/match/sha256/{value}")
        assert r.status_code == 200, r.text
        return any(h["list"] == "a/base" for res in r.json()["results"] for h in res["hits"])


def catalog_note(server: NodeProcess, asker: NodeProcess) -> str:
    """The checkpoint note ``server`` hands ``asker`` for a/base, over mutual TLS."""
    with server.client(asker.admin) as c:
        lists = c.get("/federation/v1/lists").json()["lists"]
    return str(next(x for x in lists if (x["owner"], x["name"]) == ("a", "base"))["checkpoint"])


def feed_pull(net: Net, server: NodeProcess, out: Path) -> subprocess.CompletedProcess[str]:
    """The partner's ``hashfed pull`` of the baseline feed, requiring b's cosignature."""
    trust = [arg for key in net.a.verifier_keys() for arg in ("--trust", f"a={key}")]
    return subprocess.run(
        [
            HASHFED,
            "pull",
            server.url,
            "--label",
            "baseline",
            "--out",
            str(out),
            "--pin",
            str(server.cert),
            *trust,
            "--witness",
            f"a={cosigner_of(net.b).verifier_key}",
            "--witness-quorum",
            "1",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HASHFED_FEED_TOKEN": net.token},
        timeout=120,
    )


def point_at(node: NodeProcess, owner_node: NodeProcess, *extra: str) -> None:
    """(Re)configure ``node``'s peer ``a`` to be ``owner_node`` (which holds a's certificate)."""
    node.cli("peer", "rm", "a", check=False)
    node.cli(
        "peer",
        "add",
        "a",
        owner_node.url,
        "--cert",
        str(owner_node.cert),
        *owner_node.key_args(),
        "--subscribe",
        "a/*",
        "--interval",
        "1",
        *extra,
    )


def follows(node: NodeProcess, owner_node: NodeProcess) -> None:
    """Wait until the running ``node`` pulls ``a`` from ``owner_node`` only.

    ``peer add`` rewrites node.toml; the serving process picks it up at its
    next config check, and a pull begun before it still goes to the old URL.
    """

    def switched() -> bool:
        with node.client() as cl:
            peers = {p["peer"]: p for p in cl.get("/api/v1/peers").json()}
        peer = peers.get("a")  # absent while the check saw `peer rm` but not `peer add`
        return peer is not None and peer["url"] == owner_node.url and not peer["running"]

    wait_for(f"{node.node_id} to pull a from {owner_node.url}", switched)


@dataclass
class Net:
    a: NodeProcess
    b: NodeProcess
    c: NodeProcess
    base: Path
    first: list[str]
    policy: list[str]
    token: str


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    base = tmp_path_factory.mktemp("witnessnet")
    # Token clients (the partner's feed pull) connect without a certificate.
    a = NodeProcess("a", base / "a", free_port(), env=dict(TOKENS_WELCOME)).init()
    b = NodeProcess("b", base / "b", free_port()).init()
    c = NodeProcess("c", base / "c", free_port()).init()
    # b witnesses a's lists: a submits its checkpoints to it.
    a.cli(
        "peer", "add", "b", b.url, "--cert", str(b.cert), "--labels", "baseline", "--no-pull",
        "--cosigns",
    )  # fmt: skip
    a.cli("peer", "add", "c", c.url, "--cert", str(c.cert), "--labels", "baseline", "--no-pull")
    b.cli(
        "peer", "add", "a", a.url, "--cert", str(a.cert), *a.key_args(), "--subscribe", "a/*",
        "--interval", "1",
    )  # fmt: skip
    b.cli("peer", "add", "c", c.url, "--cert", str(c.cert), "--labels", "baseline", "--no-pull")
    policy = ["--witness", cosigner_of(b).verifier_key, "--witness-quorum", "1"]
    # An industry partner pulls a's baseline feed; the token survives the theft below.
    a.cli("principal", "add", "acme", "--role", "partner", "--labels", "baseline")
    token = a.cli("token", "create", "acme").stdout.strip().split()[-1]
    point_at(c, a, *policy)
    for n in (a, b, c):
        n.start()
    net = Net(a, b, c, base, rand_hashes(20), policy, token)
    try:
        with a.client() as cl:
            r = cl.post("/api/v1/lists", json={"name": "a/base", "label": "baseline"})
            assert r.status_code == 201, r.text
        add_and_publish(a, net.first)
        wait_for("c to take a/base", lambda: size_at(c) == 20)
        yield net
    finally:
        for n in (c, b, a):
            n.stop()


def test_owner_serves_its_witness_cosignature_with_the_checkpoint(net: Net) -> None:
    note = catalog_note(net.a, net.c)
    assert cosigned_by(note, cosigner_of(net.b))
    # c took it under a policy that needs b's cosignature: the note it keeps carries it.
    with open_store(net.c) as store:
        row = store.get_list(owner="a", name="base")
        assert row is not None
        latest = store.latest_checkpoint(list_id=row.id)
        assert latest is not None
        assert cosigned_by(latest.note, cosigner_of(net.b))


def test_a_relay_serves_its_own_cosignature_and_the_owners(net: Net) -> None:
    note = catalog_note(net.b, net.c)
    assert cosigned_by(note, cosigner_of(net.b))
    owner_keys = [NoteVerifier.from_verifier_key(k) for k in net.a.verifier_keys()]
    opened = open_note(note, owner_keys)
    assert len(opened.verified_by) == 2  # a's log key and a's cosigner key


def test_witness_policy_takes_honest_growth(net: Net) -> None:
    more = rand_hashes(5)
    add_and_publish(net.a, more)
    wait_for("c to take the new entries", lambda: size_at(net.c) == 25)
    assert matches(net.c, more[0])


def test_split_view_with_a_stolen_key_is_refused_where_a_witness_is_required(net: Net) -> None:
    a, b, c = net.a, net.b, net.c
    start = size_at(c)
    assert start == size_at(a)
    # Steal a's keys and certificate with its whole data folder.
    a.stop()
    copy_data(a.data, net.base / "a2")
    a.start()
    a2_port = free_port()
    a2 = NodeProcess(
        "a", net.base / "a2", a2_port, env={**TOKENS_WELCOME, "HASHFED_PORT": str(a2_port)}
    )
    d = NodeProcess("d", net.base / "d", free_port()).init()
    a2.cli("peer", "add", "d", d.url, "--cert", str(d.cert), "--labels", "baseline", "--no-pull")
    a2.log = net.base / "a2.log"
    a2.start()
    try:
        # c now sees the list only as a2 shows it; b and d below.
        point_at(c, a2, *net.policy)
        follows(c, a2)
        honest, forged = rand_hashes(5), rand_hashes(5)
        add_and_publish(a, honest)  # what b (the witness) sees
        wait_for("b to take a's tree", lambda: size_at(b) == start + 5)
        wait_for(
            "a to hold b's cosignature",
            lambda: cosigned_by(catalog_note(a, c), cosigner_of(b)),
        )
        add_and_publish(a2, forged)  # the same size, another tree, signed with a's keys
        forged_note = catalog_note(a2, c)
        assert not cosigned_by(forged_note, cosigner_of(b))  # b would not cosign it

        # Without a witness policy the forged tree is taken: the attack works.
        point_at(d, a2)
        d.start()
        wait_for("d to take the forged tree", lambda: size_at(d) == start + 5)
        assert matches(d, forged[0])

        # c requires b's cosignature: it refuses the forged tree and keeps the note.
        def refused() -> bool:
            with open_store(c) as store:
                row = store.get_list(owner="a", name="base")
                assert row is not None
                kept = [cp.note for cp in store.checkpoints(list_id=row.id, status="evidence")]
            return forged_note in kept

        wait_for("c to keep the forged note as evidence", refused)
        assert size_at(c) == start
        assert not matches(c, forged[0])
        with c.client() as cl:
            lists = {x["name"]: x for x in cl.get("/api/v1/lists").json()}
            peer = next(p for p in cl.get("/api/v1/peers").json() if p["peer"] == "a")
        assert lists["a/base"]["frozen_reason"] is None  # not a fork c could see: no freeze
        assert "missing_witness_cosignatures" in str(peer)

        # So does a partner's feed pull that requires b's cosignature.
        forged_pull = feed_pull(net, a2, net.base / "partner-a2")
        assert forged_pull.returncode != 0
        assert "cosigned by 0 of the trusted witnesses" in forged_pull.stderr
        assert not (net.base / "partner-a2" / "sha256.txt").exists()
        honest_pull = feed_pull(net, a, net.base / "partner-a")
        assert honest_pull.returncode == 0, honest_pull.stdout + honest_pull.stderr
        got = (net.base / "partner-a" / "sha256.txt").read_text()
        assert honest[0] in got
        assert forged[0] not in got

        # Back on the real owner, c takes the tree its witness saw.
        point_at(c, a, *net.policy)
        follows(c, a)
        wait_for("c to take a's honest tree", lambda: size_at(c) == start + 5)
        assert matches(c, honest[0])
        assert not matches(c, forged[0])
    finally:
        a2.stop()
        d.stop()


def test_log_export_carries_the_witness_cosignature_and_verifies_offline(net: Net) -> None:
    out = net.base / "a-base.log.ndjson"
    net.a.cli("list", "export", "a/base", "--log", "--out", str(out))
    header = json.loads(out.read_text().splitlines()[0])
    assert cosigned_by(header["checkpoint"], cosigner_of(net.b))
    keys = [arg for key in net.a.verifier_keys() for arg in ("--key", key)]
    got = run_cli("verify-export", str(out), *keys).stdout  # offline: no data folder
    assert got.startswith("ok  a/base")
