"""Sightings relayed hop by hop to the owner, and signed webhook alerts, on three real nodes.

``a`` owns ``a/base``; ``b`` pulls it from ``a``; ``c`` pulls it from ``b``.
A sighting reported at ``c`` (signed by c's key) goes to ``b``, which verifies
it and relays it to ``a``, which verifies c's signature again and records it.
``a`` has two webhooks: a receiver that is up, and one that is down until
after ``a`` restarted. Runs on SQLite and, when configured, on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _cluster import PG_URL, pg_schema, wait_until
from _nodes import Identity, NodeProcess, free_port
from _receiver import Receiver

from config import PeerSettings, TrustedOwner
from crypto.keys import NoteSigner, generate_signing_key
from crypto.pki import cert_fingerprint, load_certificate
from crypto.sighting import Sighting, new_nonce, sign_sighting
from federation.peers import add_trusted_owner, register_peer
from node.alerts import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from node.datadir import init_data_dir
from node.identity.trust import PINNED_DIR
from node.store import Store

# Three nodes and a restart: minutes on a loaded machine.
# Three real nodes and a webhook receiver per backend, ~30 s a module.
pytestmark = [pytest.mark.network, pytest.mark.timeout(1200)]

BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@dataclass
class Fed:
    a: NodeProcess
    b: NodeProcess
    c: NodeProcess
    up: Receiver
    down: Receiver
    secrets: dict[str, str]
    values: list[str]

    def as_c(self) -> Identity:
        return Identity("c", self.c.cert, self.c.data / "tls" / "node.key")

    def c_signer(self) -> NoteSigner:
        from crypto.key_files import load_private_key

        return NoteSigner("c", load_private_key(self.c.data / "keys" / "signing.key"))

    def stats(self) -> dict[str, Any]:
        with self.a.client() as cl:
            r = cl.get("/api/v1/sightings", params={"list": "a/base"})
            assert r.status_code == 200, r.text
            return dict(r.json())

    def deliveries(self) -> list[dict[str, Any]]:
        # The table `hashfed webhook deliveries --json` prints, read without a process per poll.
        with _store(self.a) as store:
            return store.deliveries()


@contextmanager
def _store(node: NodeProcess) -> Iterator[Store]:
    url = node.env.get("HASHFED_DATABASE_URL") or f"sqlite:///{node.data / 'hashfed.db'}"
    store = Store.open(url)
    try:
        yield store
    finally:
        store.close()


def _webhook(node: NodeProcess, url: str, events: str) -> str:
    out = node.cli("webhook", "add", url, "--events", events).stdout
    return next(line.split()[1] for line in out.splitlines() if line.startswith("secret "))


@pytest.fixture(scope="module", params=BACKENDS)
def fed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    base = tmp_path_factory.mktemp(f"sight-{request.param}")
    with ExitStack() as stack:
        urls = (
            [stack.enter_context(pg_schema()) for _ in range(3)]
            if request.param == "postgresql"
            else [None, None, None]
        )
        fast = {
            "HASHFED_ALERTS__RETRY_BASE_SECONDS": "0.2",
            "HASHFED_ALERTS__RETRY_MAX_SECONDS": "1",
            "HASHFED_ALERTS__MAX_ATTEMPTS": "100000",
        }
        nodes = []
        for name, url in zip("abc", urls, strict=True):
            env = dict(fast) | ({"HASHFED_DATABASE_URL": url} if url else {})
            if name == "a":
                env["HASHFED_SIGHTINGS__FALSE_POSITIVE_THRESHOLD"] = "1"
            node = NodeProcess(name, base / name, free_port(), env=env)
            init_data_dir(node.data, node_id=name, port=node.port)
            nodes.append(node)
        a, b, c = nodes
        # Both of each owner's keys: its log key and its cosigner key.
        key = {n.node_id: n.verifier_keys() for n in nodes}

        # Set-up in this process, as `hashfed peer add` does it: a CLI start per
        # step costs many seconds on a loaded machine.
        def peer(at: NodeProcess, other: NodeProcess, **kw: Any) -> None:
            settings = PeerSettings(
                node_id=other.node_id,
                url=other.url,
                fingerprint=cert_fingerprint(load_certificate(other.cert)),
                **kw,
            )
            with _store(at) as store:
                register_peer(store, at.data, settings, actor="test")
            (at.data / PINNED_DIR).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(other.cert, at.data / PINNED_DIR / f"{other.node_id}.crt")

        peer(a, b, labels=["baseline"], subscribe=[])
        peer(b, a, signing_keys=key["a"], subscribe=["a/*"], interval_seconds=1)
        peer(b, c, signing_keys=key["c"], labels=["baseline"], subscribe=[])
        peer(c, b, subscribe=["a/base"], interval_seconds=1)
        add_trusted_owner(c.data, TrustedOwner(node_id="a", signing_keys=key["a"]))
        add_trusted_owner(a.data, TrustedOwner(node_id="c", signing_keys=key["c"]))
        a.cli("principal", "sightings", "b", "on")
        up, down = Receiver(free_port()).start(), Receiver(free_port())
        secrets = {"up": _webhook(a, up.url, "sighting,overlap"), "down": "d" * 32}
        with _store(a) as store:
            store.add_webhook(
                url=down.url, events="sighting", include_hashes=False, secret="d" * 32
            )
        with _store(b) as store:
            store.set_sighting_optin(principal="c", enabled=True)
        stack.callback(lambda: [n.stop() for n in reversed(nodes)])
        for n in nodes:
            n.start(timeout=180)
        stack.callback(up.stop)
        stack.callback(down.stop)
        seized = base / "seized"
        seized.mkdir()
        (seized / "f.bin").write_bytes(b"hashfed sighting scan test file")
        values = [os.urandom(32).hex() for _ in range(5)]
        values.append(hashlib.sha256((seized / "f.bin").read_bytes()).hexdigest())
        with a.client() as cl:
            assert (
                cl.post("/api/v1/lists", json={"name": "a/base", "label": "baseline"}).status_code
                == 201
            )
            hashes = [{"type": "sha256", "value": v, "category": "A1"} for v in values]
            assert (
                cl.post("/api/v1/lists/a/base/hashes", json={"hashes": hashes}).status_code == 200
            )
            assert cl.post("/api/v1/lists/a/base/publish").status_code == 200
        f = Fed(a, b, c, up, down, secrets, values)

        def c_has_it() -> bool:
            with c.client() as cl:
                rows = cl.get("/api/v1/lists").json()
            return any(r["name"] == "a/base" and r["checkpoint_size"] == 6 for r in rows)

        wait_until(c_has_it, 90, every=0.2, what="a/base at c")
        yield f


def test_sighting_reported_at_c_reaches_a_through_b(fed: Fed) -> None:
    out = fed.c.cli("sighting", "report", "a/base", "2", "--disposition", "confirmed").stdout
    assert "via b" in out
    wait_until(lambda: fed.stats()["lists"] != [], 15, every=0.1, what="the sighting at a")
    lst = fed.stats()["lists"][0]
    assert lst["list"] == "a/base"
    assert lst["reporters"] == ["c"]
    entry = lst["entries"][0]
    assert (entry["seq"], entry["by_disposition"], entry["reporters"]) == (
        2,
        {"confirmed": 1},
        {"c": 1},
    )
    assert "intact" in fed.a.cli("audit", "verify").stdout


def test_signed_alert_reaches_the_receiver_and_verifies(fed: Fed) -> None:
    wait_until(lambda: len(fed.up.got) >= 1, 15, every=0.1, what="a delivery")
    d = fed.up.got[0]
    assert verify_signature(
        fed.secrets["up"],
        timestamp=d.headers[TIMESTAMP_HEADER],
        signature=d.headers[SIGNATURE_HEADER],
        body=d.body,
    )
    assert not verify_signature(
        fed.secrets["down"],
        timestamp=d.headers[TIMESTAMP_HEADER],
        signature=d.headers[SIGNATURE_HEADER],
        body=d.body,
    )
    body = json.loads(d.body)
    assert body["type"] == "sighting"
    assert body["data"]["list"] == "a/base"
    assert body["data"]["reporter"] == "c"
    assert not any(v in d.body.decode() for v in fed.values)  # names and counts, no hashes


def test_receiver_that_was_down_gets_the_delivery_after_a_restart(fed: Fed) -> None:
    def tried() -> bool:
        return any(
            r["url"] == fed.down.url and r["attempts"] >= 1 and r["status"] == "pending"
            for r in fed.deliveries()
        )

    wait_until(tried, 20, every=0.3, what="a failed attempt to the down receiver")
    fed.a.stop()
    fed.down.start()
    fed.a.start(timeout=180)
    wait_until(lambda: len(fed.down.got) >= 1, 60, every=0.1, what="the delayed delivery")
    d = fed.down.got[0]
    assert verify_signature(
        fed.secrets["down"],
        timestamp=d.headers[TIMESTAMP_HEADER],
        signature=d.headers[SIGNATURE_HEADER],
        body=d.body,
    )
    rows = [r for r in fed.deliveries() if r["url"] == fed.down.url]
    assert rows[0]["status"] == "delivered"
    assert rows[0]["attempts"] >= 2


def test_replay_sends_a_delivery_again(fed: Fed) -> None:
    wait_until(lambda: len(fed.up.got) >= 1, 15, every=0.1, what="a delivery")
    first = next(r for r in fed.deliveries() if r["url"] == fed.up.url)
    before = len(fed.up.got)
    fed.a.cli("webhook", "replay", str(first["id"]))
    wait_until(lambda: len(fed.up.got) > before, 10, every=0.1, what="the replayed delivery")
    assert json.loads(fed.up.got[-1].body)["id"] == json.loads(fed.up.got[0].body)["id"]


def _note(fed: Fed, signer: NoteSigner, seq: int = 1) -> str:
    s = Sighting(
        list_name="a/base",
        seq=seq,
        when=int(time.time()),
        reporter="c",
        disposition="seen",
        nonce=new_nonce(),
    )
    return sign_sighting(s, signer)


def test_forged_sighting_refused(fed: Fed) -> None:
    forger = NoteSigner("c", generate_signing_key())  # c's name, not c's key
    with fed.b.client(fed.as_c()) as cl:
        r = cl.post("/federation/v1/sightings", json={"note": _note(fed, forger)})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "no_trusted_signature"
    # altered after signing: the seq changed, c's signature no longer verifies
    good = _note(fed, fed.c_signer())
    with fed.b.client(fed.as_c()) as cl:
        r = cl.post("/federation/v1/sightings", json={"note": good.replace("seq 1\n", "seq 3\n")})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "bad_signature"


def test_replayed_sighting_refused(fed: Fed) -> None:
    note = _note(fed, fed.c_signer())
    with fed.b.client(fed.as_c()) as cl:
        assert cl.post("/federation/v1/sightings", json={"note": note}).status_code == 201
        r = cl.post("/federation/v1/sightings", json={"note": note})
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "replayed_sighting"
    # b relayed the first copy; a refuses the same note handed to it again
    wait_until(
        lambda: (
            sum(e["total"] for lst in fed.stats()["lists"] for e in lst["entries"] if e["seq"] == 1)
            == 1
        ),
        15,
        what="the relayed copy at a",
    )
    as_b = Identity("b", fed.b.cert, fed.b.data / "tls" / "node.key")
    with fed.a.client(as_b) as cl:
        assert cl.post("/federation/v1/sightings", json={"note": note}).status_code == 409


def test_sighting_from_a_principal_not_opted_in_refused(fed: Fed) -> None:
    # a is b's peer (a principal there) but b never opted a in.
    with fed.b.client(fed.a.admin) as cl:
        r = cl.post("/federation/v1/sightings", json={"note": _note(fed, fed.c_signer())})
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "forbidden"


def test_false_positive_flags_the_entry_and_the_owner_removes_it(fed: Fed) -> None:
    # a's threshold is one reporter (HASHFED_SIGHTINGS__FALSE_POSITIVE_THRESHOLD=1).
    with _store(fed.c) as store:
        assert store.sighting_counts(owner="a") == []  # c keeps nothing it relayed as its own
    fed.c.cli(
        "sighting",
        "report",
        "a/base",
        "4",
        "--disposition",
        "false_positive",
        "--reason",
        "stock_image",
    )
    with fed.a.client() as cl:

        def flagged() -> list[dict[str, Any]]:
            r = cl.get("/api/v1/sightings/review", params={"list": "a/base"})
            assert r.status_code == 200, r.text
            return list(r.json())

        wait_until(lambda: flagged() != [], 15, every=0.1, what="the flag at a")
        assert flagged() == [
            {"seq": 4, "false_positive_reporters": 1, "in_list": True, "category": "A1"}
        ]
        out = fed.a.cli("list", "review", "a/base", "--remove-flagged").stdout
        assert "removed 1 flagged entries" in out
        assert flagged()[0]["in_list"] is False
        r = cl.post("/api/v1/match", json={"hashes": [{"type": "sha256", "value": fed.values[4]}]})
        assert [h for res in r.json()["results"] for h in res["hits"]] == []


def test_scan_reports_what_it_found(fed: Fed, tmp_path: Path) -> None:
    # c scans a folder holding a file whose sha256 is a/base entry 5; the report reaches a.
    folder = fed.a.data.parent / "seized"
    out = fed.c.cli(
        "scan", str(folder), "--report-sightings", "--state", str(tmp_path / "st")
    ).stdout
    assert "sightings: 1 reported" in out

    def seen_5() -> bool:
        entries = fed.stats()["lists"][0]["entries"]
        return any(e["seq"] == 5 and e["by_disposition"] == {"seen": 1} for e in entries)

    wait_until(seen_5, 20, every=0.2, what="the scan's sighting at a")
    assert "f.bin" not in json.dumps(fed.stats())
