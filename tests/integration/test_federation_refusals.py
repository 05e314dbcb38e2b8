"""What a receiver must refuse, against a peer that misbehaves on purpose.

Three real processes on 127.0.0.1 over mutual TLS: an honest owner ``a``,
the receiver ``b`` (``hashfed serve``), and ``m``, a server process serving
crafted answers (_misbehaving_peer.py). The crafted checkpoints are signed
with ``a``'s real signing key, so only the misbehaviour under test is wrong.

Each test checks that the offer is refused with the right error, that
nothing of it is left in ``b``'s database, and that ``b`` still pulls ``a``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _nodes import Identity, NodeProcess, free_port, make_identity

from crypto.checkpoint import Checkpoint, CheckpointSigner, list_origin
from crypto.cosignature import CosignatureSigner
from crypto.key_files import load_private_key
from crypto.keys import NoteSigner
from crypto.merkle import TreeLevels, leaf_hash
from federation.protocol import encode_entry
from node.log.entry import encode_leaf
from node.store import Store

pytestmark = pytest.mark.network

HERE = Path(__file__).parent
Entry = tuple[int, str, str, str, str, int]


def entries(n: int, salt: str = "", start: int = 0) -> list[Entry]:
    return [
        (i, "add", "sha256", hashlib.sha256(f"{salt}{i}".encode()).hexdigest(), "A1", 1_000 + i)
        for i in range(start, start + n)
    ]


def tree(es: list[Entry]) -> TreeLevels:
    return TreeLevels(leaf_hash(encode_leaf(*e)) for e in es)


def lines(es: list[Entry]) -> list[str]:
    return [encode_entry(e).decode().rstrip("\n") for e in es]


@dataclass
class Crafted:
    """A list as the misbehaving peer offers it."""

    owner: str
    name: str
    note: str
    size: int
    lines: list[str]
    label: str = "baseline"
    proofs: dict[str, list[str]] | None = None

    def catalog_item(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "name": self.name,
            "label": self.label,
            "description": "",
            "size": self.size,
            "checkpoint": self.note,
        }


def signed(signer: CheckpointSigner, origin: str, es: list[Entry], ts: int | None = None) -> str:
    t = tree(es)
    cp = Checkpoint(origin, len(es), t.root())
    return signer.sign(cp, int(time.time()) - 5 if ts is None else ts)


class Misbehaving:
    def __init__(self, folder: Path, receiver_cert: Path) -> None:
        self.ident = make_identity(folder, "m")
        self.signer = CheckpointSigner.generate("m")
        self.port = free_port()
        self.file = folder / "scenario.json"
        self.base = {
            "port": self.port,
            "cert": str(self.ident.cert),
            "key": str(self.ident.key),
            "pinned": [str(receiver_cert)],
            "node_info": {
                "node_id": "m",
                "role": "agency",
                "signing_keys": [v.verifier_key for v in self.signer.verifiers()],
            },
        }
        self.serve([])
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def serve(self, lists: list[Crafted], mode: str = "normal") -> None:
        sc = {
            **self.base,
            "mode": mode,
            "catalog": {"node_id": "m", "lists": [c.catalog_item() for c in lists]},
            "lists": {
                f"{c.owner}/{c.name}": {"lines": c.lines, "proofs": c.proofs or {}} for c in lists
            },
        }
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(sc))
        tmp.replace(self.file)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_misbehaving_peer.py"), str(self.file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()


@dataclass
class World:
    a: NodeProcess
    b: NodeProcess
    m: Misbehaving
    a_signer: CheckpointSigner

    def sync(self, peer: str) -> dict[str, Any]:
        with self.b.client() as c:
            r = c.post(f"/api/v1/peers/{peer}/sync")
            assert r.status_code == 200, r.text
            report: dict[str, Any] = r.json()
            return report

    def outcome(self, report: dict[str, Any], full: str) -> tuple[str, str | None]:
        found = [r for r in report["lists"] if f"{r['owner']}/{r['name']}" == full]
        assert found, report
        return found[0]["outcome"], found[0]["error_code"]

    def b_list(self, full: str) -> dict[str, Any] | None:
        with self.b.client() as c:
            rows = c.get("/api/v1/lists").json()
        return next((r for r in rows if r["name"] == full), None)

    def b_store(self) -> Store:
        return Store.open(f"sqlite:///{self.b.data / 'hashfed.db'}", migrate=False)

    def assert_a_still_pulled(self) -> None:
        report = self.sync("a")
        assert report["ok"], report
        got = self.b_list("a/base")
        assert got is not None
        assert got["size"] == 30


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("refusals")
    a = NodeProcess("a", base / "a", free_port()).init()
    b = NodeProcess(
        "b",
        base / "b",
        free_port(),
        env={
            "HASHFED_LIMITS__PULL_TIMEOUT_SECONDS": "4",
            "HASHFED_LIMITS__MAX_RESPONSE_BYTES": str(2 * 1024 * 1024),
            "HASHFED_MAX_CHECKPOINT_AGE_SECONDS": "3600",
        },
    ).init()
    m = Misbehaving(base / "m", b.cert)
    a.cli("peer", "add", "b", b.url, "--cert", str(b.cert), "--labels", "baseline", "--no-pull")
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
        "2",
    )
    b.cli(
        "peer",
        "add",
        "m",
        m.url,
        "--cert",
        str(m.ident.cert),
        *[arg for v in m.signer.verifiers() for arg in ("--signing-key", v.verifier_key)],
        "--subscribe",
        "*",
        "--interval",
        "300",
    )
    a_signer = CheckpointSigner(
        NoteSigner("a", load_private_key(a.data / "keys" / "signing.key")),
        CosignatureSigner("a", load_private_key(a.data / "keys" / "cosigning.key")),
    )
    m.start()
    a.start()
    b.start()
    try:
        with a.client() as c:
            for name, label in (("base", "baseline"), ("secret", "restricted")):
                assert (
                    c.post("/api/v1/lists", json={"name": f"a/{name}", "label": label}).status_code
                    == 201
                )
                hashes = [
                    {"type": "sha256", "value": e[3], "category": "A1"}
                    for e in entries(30, salt=name)
                ]
                assert (
                    c.post(f"/api/v1/lists/a/{name}/hashes", json={"hashes": hashes}).status_code
                    == 200
                )
                assert c.post(f"/api/v1/lists/a/{name}/publish").status_code == 200
        w = World(a, b, m, a_signer)
        w.assert_a_still_pulled()
        yield w
    finally:
        b.stop()
        a.stop()
        m.stop()


# --- 1. an entry altered, dropped, duplicated or reordered ----------------------------------------


def _tamper(kind: str, es: list[Entry]) -> list[Entry]:
    bad = list(es)
    if kind == "altered":
        bad[4] = (4, "add", "sha256", "0" * 64, "A1", es[4][5])
    elif kind == "dropped":
        bad = [*es[:4], *[(i - 1, *e[1:]) for i, e in enumerate(es[5:], start=5)]]
        bad.append((len(es) - 1, *es[0][1:]))
    elif kind == "duplicated":
        bad[5] = (5, *es[4][1:])
    elif kind == "reordered":
        bad[2], bad[3] = (2, *es[3][1:]), (3, *es[2][1:])
    return bad


@pytest.mark.parametrize("kind", ["altered", "dropped", "duplicated", "reordered"])
def test_tampered_entries_are_refused(world: World, kind: str) -> None:
    name = f"t1-{kind}"
    es = entries(12, salt=name)
    crafted = Crafted(
        "a", name, signed(world.a_signer, list_origin("a", name), es), 12, lines(_tamper(kind, es))
    )
    world.m.serve([crafted])
    report = world.sync("m")
    assert world.outcome(report, f"a/{name}") == ("refused", "root_mismatch")
    assert not report["ok"]
    assert world.b_list(f"a/{name}") is None
    world.assert_a_still_pulled()


def test_a_seq_gap_is_a_protocol_error_and_nothing_is_applied(world: World) -> None:
    es = entries(12, salt="gap")
    gap = [*es[:5], *es[6:], es[-1]]
    world.m.serve(
        [
            Crafted(
                "a",
                "t1-gap",
                signed(world.a_signer, list_origin("a", "t1-gap"), es),
                12,
                lines(gap),
            )
        ]
    )
    report = world.sync("m")
    assert world.outcome(report, "a/t1-gap") == ("refused", "peer_protocol")
    assert world.b_list("a/t1-gap") is None
    world.assert_a_still_pulled()


# --- 2. a key that is not the owner's, or the owner's checkpoint for another list -----------------


def test_checkpoint_signed_by_another_key_is_refused(world: World) -> None:
    es = entries(6, salt="t2")
    note = signed(world.m.signer, list_origin("a", "t2"), es)  # m signs a's list
    world.m.serve([Crafted("a", "t2", note, 6, lines(es))])
    report = world.sync("m")
    assert world.outcome(report, "a/t2") == ("refused", "no_trusted_signature")
    assert world.b_list("a/t2") is None
    world.assert_a_still_pulled()


def test_owners_checkpoint_for_another_list_is_refused(world: World) -> None:
    es = entries(6, salt="t2b")
    note = signed(world.a_signer, list_origin("a", "base"), es)  # a's, but for a/base
    world.m.serve([Crafted("a", "t2b", note, 6, lines(es))])
    report = world.sync("m")
    assert world.outcome(report, "a/t2b") == ("refused", "unknown_origin")
    assert world.b_list("a/t2b") is None
    world.assert_a_still_pulled()


# --- 3. rollback ----------------------------------------------------------------------------------


def test_rollback_is_refused_and_kept_as_evidence(world: World) -> None:
    es = entries(20, salt="t3")
    origin = list_origin("a", "t3")
    world.m.serve([Crafted("a", "t3", signed(world.a_signer, origin, es), 20, lines(es))])
    assert world.outcome(world.sync("m"), "a/t3") == ("applied", None)
    smaller = signed(world.a_signer, origin, es[:10])  # validly signed, never accepted here
    world.m.serve([Crafted("a", "t3", smaller, 10, lines(es))])
    report = world.sync("m")
    assert world.outcome(report, "a/t3") == ("refused", "rollback")
    got = world.b_list("a/t3")
    assert got is not None
    assert got["size"] == 20
    assert got["frozen_reason"] is None
    store = world.b_store()
    try:
        row = store.get_list(owner="a", name="t3")
        assert row is not None
        assert smaller in [c.note for c in store.checkpoints(list_id=row.id, status="evidence")]
    finally:
        store.close()
    world.assert_a_still_pulled()


# --- 4. fork --------------------------------------------------------------------------------------


def _assert_frozen_with_evidence(world: World, full: str, offered: str) -> None:
    got = world.b_list(full)
    assert got is not None
    assert got["frozen_reason"]
    assert "fork" in got["frozen_reason"]
    owner, name = full.split("/")
    store = world.b_store()
    try:
        row = store.get_list(owner=owner, name=name)
        assert row is not None
        kept = {(c.status, c.note) for c in store.checkpoints(list_id=row.id)}
        assert ("evidence", offered) in kept
        assert any(status == "accepted" for status, _ in kept)
        assert any(
            a.action == "federation.fork" and a.target == full
            for a in store.audit_records(limit=100_000)
        )
    finally:
        store.close()
    with world.b.client() as c:
        status = c.get("/api/v1/status").json()
    m = next(p for p in status["peers"] if p["peer"] == "m")
    assert any(a["list"] == full and a["alert"] == "frozen" for a in m["alerts"])


def test_fork_same_size_other_root_freezes_the_list(world: World) -> None:
    es = entries(10, salt="t4")
    origin = list_origin("a", "t4")
    world.m.serve([Crafted("a", "t4", signed(world.a_signer, origin, es), 10, lines(es))])
    assert world.outcome(world.sync("m"), "a/t4") == ("applied", None)
    other = entries(10, salt="t4-fork")
    forked = signed(world.a_signer, origin, other)
    world.m.serve([Crafted("a", "t4", forked, 10, lines(other))])
    report = world.sync("m")
    assert world.outcome(report, "a/t4") == ("refused", "fork")
    _assert_frozen_with_evidence(world, "a/t4", forked)
    # Frozen lists take nothing more, from anyone.
    assert world.outcome(world.sync("m"), "a/t4") == ("frozen", None)
    world.assert_a_still_pulled()


def test_fork_in_a_longer_history_is_caught_by_the_consistency_proof(world: World) -> None:
    es = entries(10, salt="t4b")
    origin = list_origin("a", "t4b")
    world.m.serve([Crafted("a", "t4b", signed(world.a_signer, origin, es), 10, lines(es))])
    assert world.outcome(world.sync("m"), "a/t4b") == ("applied", None)
    history = [*entries(10, salt="t4b-rewritten"), *entries(10, salt="t4b", start=10)]
    t = tree(history)
    forked = signed(world.a_signer, origin, history)
    proof = {"10-20": [h.hex() for h in t.consistency_proof(10, 20)]}
    world.m.serve([Crafted("a", "t4b", forked, 20, lines(history), proofs=proof)])
    report = world.sync("m")
    assert world.outcome(report, "a/t4b") == ("refused", "fork")
    _assert_frozen_with_evidence(world, "a/t4b", forked)
    got = world.b_list("a/t4b")
    assert got is not None
    assert got["size"] == 10
    world.assert_a_still_pulled()


# --- 5. freeze: a checkpoint older than the maximum age -------------------------------------------


def test_stale_checkpoint_is_not_applied_and_flagged(world: World) -> None:
    es = entries(8, salt="t5")
    old = signed(world.a_signer, list_origin("a", "t5"), es, ts=int(time.time()) - 7200)
    world.m.serve([Crafted("a", "t5", old, 8, lines(es))])
    report = world.sync("m")
    assert world.outcome(report, "a/t5") == ("stale", "stale")
    assert world.b_list("a/t5") is None
    with world.b.client() as c:
        m = next(p for p in c.get("/api/v1/status").json()["peers"] if p["peer"] == "m")
    assert any(x["list"] == "a/t5" and x["outcome"] == "stale" for x in m["lists"])
    world.assert_a_still_pulled()


def test_future_dated_checkpoint_is_refused_and_kept_as_evidence(world: World) -> None:
    # A checkpoint dated years ahead would outrank every honest heartbeat of
    # the owner ("unchanged"), so the list could never go stale.
    es = entries(8, salt="t5f")
    origin = list_origin("a", "t5f")
    world.m.serve([Crafted("a", "t5f", signed(world.a_signer, origin, es), 8, lines(es))])
    assert world.outcome(world.sync("m"), "a/t5f") == ("applied", None)
    future = signed(world.a_signer, origin, es, ts=int(time.time()) + 10 * 365 * 86_400)
    world.m.serve([Crafted("a", "t5f", future, 8, lines(es))])
    report = world.sync("m")
    assert world.outcome(report, "a/t5f") == ("refused", "future_checkpoint")
    store = world.b_store()
    try:
        row = store.get_list(owner="a", name="t5f")
        assert row is not None
        assert future in [c.note for c in store.checkpoints(list_id=row.id, status="evidence")]
        assert future not in [c.note for c in store.checkpoints(list_id=row.id, status="accepted")]
    finally:
        store.close()
    # The owner's honest heartbeat is still taken as the newest word.
    fresh = signed(world.a_signer, origin, es)
    world.m.serve([Crafted("a", "t5f", fresh, 8, lines(es))])
    assert world.outcome(world.sync("m"), "a/t5f")[0] in ("refreshed", "unchanged")
    world.assert_a_still_pulled()


# --- 6. a relay claiming to own a list whose owner is another node --------------------------------


def test_relay_claiming_ownership_of_anothers_list_is_refused(world: World) -> None:
    es = entries(6, salt="t6")
    owners_note = signed(world.a_signer, list_origin("a", "t6"), es)
    world.m.serve(
        [
            Crafted("m", "t6", owners_note, 6, lines(es)),  # m lists a's list as its own
            Crafted(
                "a",
                "t6-resigned",
                signed(world.m.signer, list_origin("a", "t6-resigned"), es),
                6,
                lines(es),
            ),  # m signs a's list as if it were a
        ]
    )
    report = world.sync("m")
    assert world.outcome(report, "m/t6") == ("refused", "no_trusted_signature")
    assert world.outcome(report, "a/t6-resigned") == ("refused", "no_trusted_signature")
    assert world.b_list("m/t6") is None
    assert world.b_list("a/t6-resigned") is None
    world.assert_a_still_pulled()


# --- 7. oversized page, endless stream, slow response ---------------------------------------------


@pytest.mark.parametrize(
    ("mode", "code"),
    [("oversize", "peer_limit"), ("endless", "peer_limit"), ("slow", "peer_timeout")],
)
def test_bounds_cut_the_pull_and_back_the_peer_off(world: World, mode: str, code: str) -> None:
    name = f"t7-{mode}"
    es = entries(40, salt=name)
    world.m.serve(
        [Crafted("a", name, signed(world.a_signer, list_origin("a", name), es), 40, lines(es))],
        mode=mode,
    )
    t0 = time.monotonic()
    report = world.sync("m")
    took = time.monotonic() - t0
    assert not report["ok"], report
    assert report["error_code"] == code, report
    assert world.outcome(report, f"a/{name}") == ("refused", code)
    assert took < 15
    assert world.b_list(f"a/{name}") is None
    with world.b.client() as c:
        m = next(p for p in c.get("/api/v1/peers").json() if p["peer"] == "m")
    assert m["failures"] >= 1
    assert m["last_error_code"] == code
    # Backed off: the next attempt is at least twice the interval away (± jitter).
    assert m["next_attempt_ms"] - m["last_attempt_ms"] >= 2 * 300_000 * 0.9
    world.assert_a_still_pulled()


# --- 8. a peer asking for what it is not cleared for ----------------------------------------------


def test_peer_not_cleared_gets_404_and_the_denial_is_audited(world: World) -> None:
    as_b = Identity("b", world.b.cert, world.b.data / "tls" / "node.key")
    with world.a.client(as_b) as c:
        names = [f"{x['owner']}/{x['name']}" for x in c.get("/federation/v1/lists").json()["lists"]]
        assert names == ["a/base"]
        for path in (
            "/federation/v1/lists/a/secret/entries?start=0&limit=10",
            "/federation/v1/lists/a/secret/proof/consistency?from=1&to=2",
            "/federation/v1/lists/a/secret/proof/inclusion?index=0&size=2",
            "/federation/v1/lists/a/nothing/entries?start=0&limit=10",
        ):
            r = c.get(path)
            assert r.status_code == 404, (path, r.text)
            assert r.json()["error"] == "unknown_list"
        # Same answer for a list that exists and one that does not: nothing learnt.
        assert c.get("/federation/v1/lists/a/secret/entries").json()["detail"].replace(
            "secret", "X"
        ) == c.get("/federation/v1/lists/a/nothing/entries").json()["detail"].replace(
            "nothing", "X"
        )
        assert c.get("/federation/v1/lists/a/base/entries?start=0&limit=100000").status_code == 422
    store = Store.open(f"sqlite:///{world.a.data / 'hashfed.db'}", migrate=False)
    try:
        # Written through the audit buffer, off the request path (a few times a second).
        deadline = time.monotonic() + 5
        while True:
            records = store.audit_records(limit=100_000)
            denied = [r for r in records if r.action == "federation.denied"]
            if any(r.actor == "b" and r.target == "a/secret" for r in denied):
                break
            assert time.monotonic() < deadline, "the denial was not audited"
            time.sleep(0.1)
    finally:
        store.close()
    world.assert_a_still_pulled()


def test_partner_role_cannot_use_the_federation_api(world: World, tmp_path: Path) -> None:
    partner = make_identity(tmp_path, "acme")
    world.a.cli(
        "principal",
        "add",
        "acme",
        "--role",
        "partner",
        "--labels",
        "baseline",
        "--cert",
        str(partner.cert),
    )
    time.sleep(2.5)  # the running node trusts newly pinned certificates within 2 s
    with world.a.client(partner) as c:
        assert c.get("/federation/v1/lists").status_code == 403


def test_a_server_presenting_another_nodes_certificate_is_refused(
    world: World, tmp_path: Path
) -> None:
    # "impostor" is expected to present its own certificate, but the URL answers with
    # a's (trusted, pinned) certificate: the handshake succeeds, the identity check not.
    expected = make_identity(tmp_path, "impostor")
    world.b.cli(
        "peer",
        "add",
        "impostor",
        world.a.url,
        "--cert",
        str(expected.cert),
        "--subscribe",
        "a/*",
        "--interval",
        "300",
    )
    deadline = time.monotonic() + 10
    while True:  # the running node reloads node.toml within seconds
        with world.b.client() as c:
            r = c.post("/api/v1/peers/impostor/sync")
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert r.status_code == 200, r.text
    report = r.json()
    assert not report["ok"]
    assert report["error_code"] == "peer_protocol"
    assert "pinned" in report["error"]
    world.b.cli("peer", "rm", "impostor")
    world.assert_a_still_pulled()
