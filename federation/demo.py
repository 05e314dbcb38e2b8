"""``hashfed demo``: a local federation of three real node processes on 127.0.0.1.

Two agencies and an industry partner, each its own ``hashfed serve`` process
with its own data folder, signing key, SQLite database and a certificate
issued by a demo federation CA:

* ``agency-a`` owns a ``baseline`` list and a ``restricted`` list;
* ``agency-b`` pulls both from A (cleared for both labels) and relays;
* ``partner-p`` is cleared for ``baseline`` only and pulls from B, so it gets
  A's baseline list relayed, verified with *A's* key, and never learns of the
  restricted one.

Then a match at the partner, and a removal at A that reaches the partner;
last, the partner reports a sighting that reaches A through B, and A's
webhook delivers a signed alert to a local receiver.
Every process started here is stopped before returning, also on Ctrl-C.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from config import PeerSettings, TrustedOwner, load_settings
from crypto.errors import HashfedError, PeerError
from crypto.pki import (
    create_ca,
    issue_certificate,
    load_certificate,
    load_private_key,
    save_certificate,
    save_private_key,
)
from federation.client import AdminClient
from federation.demo_cases import DemoReceiver, prepare_cases, sighting_and_alert
from federation.peers import add_trusted_owner, register_peer
from node.datadir import init_data_dir
from node.node import Node

__all__ = ["run_demo"]

A, B, P = "agency-a", "agency-b", "partner-p"
BASELINE, RESTRICTED = f"{A}/baseline", f"{A}/restricted"
_START_TIMEOUT = 180.0  # a loaded machine (CI, shared hosts) starts slowly
_STEP_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Node:
    node_id: str
    data: Path
    port: int
    ca_file: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client(self) -> AdminClient:
        """The node's own certificate: its operator, an administrator."""
        return AdminClient(
            self.url,
            cert_file=self.data / "tls" / "node.crt",
            key_file=self.data / "tls" / "node.key",
            ca_files=[self.ca_file],
        )

    def verifier_key(self) -> str:
        return (self.data / "keys" / "signing.pub").read_text().strip()

    def verifier_keys(self) -> list[str]:
        """The log key and the cosigner key: peers need both to accept a dated checkpoint."""
        cosigner = (self.data / "keys" / "cosigning.pub").read_text().strip()
        return [self.verifier_key(), cosigner]


def _rand_hex(rnd: random.Random, nbytes: int) -> str:
    return rnd.randbytes(nbytes).hex()


def _flip(code: str, bits: int, rnd: random.Random) -> str:
    value = int(code, 16)
    for b in rnd.sample(range(256), bits):
        value ^= 1 << b
    return f"{value:064x}"


class _Steps:
    """Prints numbered steps with their duration and the time since the start."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.t0 = time.monotonic()
        self.n = 0

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.n += 1
        self.console.print(f"[bold cyan]{self.n:>2}.[/] {title} …")
        t = time.monotonic()
        yield
        took = time.monotonic() - t
        total = time.monotonic() - self.t0
        self.console.print(f"    [green]done[/] in {took:.2f}s [dim](t = {total:.1f}s)[/]")

    def say(self, text: str) -> None:
        self.console.print(f"    {text}")


def _wait(what: str, check: Callable[[], bool], timeout: float = _STEP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except PeerError:
            pass  # not up yet
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _setup(work: Path) -> dict[str, _Node]:
    """Three data folders with CA-issued certificates, peers and principals."""
    ca_key, ca_cert = create_ca("hashfed demo federation CA")
    save_private_key(ca_key, work / "ca" / "ca.key")
    save_certificate(ca_cert, work / "ca" / "ca.crt")
    ca_file = (work / "ca" / "ca.crt").resolve()
    nodes = {}
    for node_id, role in ((A, "agency"), (B, "agency"), (P, "partner")):
        data = work / node_id
        port = _free_port()
        init_data_dir(data, node_id=node_id, role=role, port=port)
        key, cert = issue_certificate(
            load_private_key(work / "ca" / "ca.key"), load_certificate(ca_file), node_id
        )
        save_private_key(key, data / "tls" / "node.key")
        save_certificate(cert, data / "tls" / "node.crt")
        toml = data / "node.toml"
        text = re.sub(
            r"^tls_ca_files = \[\]$",
            f'tls_ca_files = ["{ca_file}"]',
            toml.read_text(),
            flags=re.M,
        )
        toml.write_text(text)
        nodes[node_id] = _Node(node_id, data, port, ca_file)

    def peer(of: str, **kw: Any) -> PeerSettings:
        return PeerSettings(node_id=of, url=nodes[of].url, **kw)

    config = {
        # A pulls nothing; B may receive both labels (A notifies it).
        A: [peer(B, labels=["baseline", "restricted"], subscribe=[])],
        # B pulls A's lists and may pass baseline on to P.
        B: [
            peer(
                A, signing_keys=nodes[A].verifier_keys(), subscribe=[f"{A}/*"], interval_seconds=10
            ),
            peer(P, labels=["baseline"], subscribe=[], signing_keys=[nodes[P].verifier_key()]),
        ],
        # P pulls from B whatever of A's it is offered; labels decide what that is.
        P: [peer(B, subscribe=[f"{A}/*"], interval_seconds=10)],
    }
    for node_id, peers in config.items():
        settings = load_settings(nodes[node_id].data)
        node = Node.open(settings)
        try:
            for p in peers:
                register_peer(node.store, nodes[node_id].data, p, actor="demo")
        finally:
            node.close()
    # P is not A's peer, but verifies A's signature on what B relays.
    add_trusted_owner(nodes[P].data, TrustedOwner(node_id=A, signing_keys=nodes[A].verifier_keys()))
    return nodes


def _serve_command(data: Path) -> list[str]:
    return [sys.executable, "-c", "from api.cli import main; main()", "serve", "--data", str(data)]


def _start(node: _Node) -> None:
    log = (node.data / "serve.log").open("ab")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    node.proc = subprocess.Popen(
        _serve_command(node.data), stdout=log, stderr=subprocess.STDOUT, env=env
    )
    log.close()


def _stop(node: _Node) -> None:
    proc = node.proc
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _list_size(client: AdminClient, name: str) -> tuple[int, str | None]:
    for row in client.request("GET", "/api/v1/lists"):
        if row["name"] == name:
            return int(row["checkpoint_size"] or 0), row["source_peer"]
    return -1, None


def _describe_hit(hit: dict[str, Any]) -> str:
    cp = hit["checkpoint"]
    return (
        f"{hit['list']} (owner {hit['owner']}, category {hit['category']}, "
        f"distance {hit['distance']}, signed checkpoint size {cp['size'] if cp else '-'})"
    )


def _wait_size(client: AdminClient, name: str, size: int, what: str) -> None:
    _wait(what, lambda: _list_size(client, name)[0] == size)


def _hits(client: AdminClient, hashes: list[dict[str, str]]) -> list[list[dict[str, Any]]]:
    answer = client.request("POST", "/api/v1/match", {"hashes": hashes})
    by_index = {r["index"]: r["hits"] for r in answer["results"]}
    return [by_index.get(i, []) for i in range(len(hashes))]


def run_demo(*, folder: Path | None, keep: bool, console: Console) -> bool:
    """Run the walkthrough; True if every step did what it should."""
    work = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="hashfed-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    steps = _Steps(console)
    nodes: dict[str, _Node] = {}
    rnd = random.Random()
    receiver: DemoReceiver | None = None
    console.print(f"[bold]hashfed demo[/]: a federation of three nodes in {work}")
    try:
        with steps.step("create a federation CA and three nodes (keys, certificates, peers)"):
            nodes = _setup(work)
            receiver = prepare_cases(
                owner=nodes[A].data, relay=nodes[B].data, partner=nodes[P].data
            )
            for n in nodes.values():
                steps.say(f"{n.node_id:10} {n.url}  signing key {n.verifier_key()[:28]}…")
        with steps.step("start three `hashfed serve` processes (mutual TLS)"):
            for n in nodes.values():
                _start(n)
            for n in nodes.values():
                _wait_started(n)
        a, b, p = nodes[A], nodes[B], nodes[P]
        base_sha = [_rand_hex(rnd, 32) for _ in range(2000)]
        base_pdq = [_rand_hex(rnd, 32) for _ in range(500)]
        secret_sha = [_rand_hex(rnd, 32) for _ in range(1000)]
        with steps.step(f"{A} publishes {BASELINE} and {RESTRICTED}"), a.client() as ca:
            for name, label, hashes in (
                (
                    BASELINE,
                    "baseline",
                    [("sha256", v) for v in base_sha] + [("pdq", v) for v in base_pdq],
                ),
                (RESTRICTED, "restricted", [("sha256", v) for v in secret_sha]),
            ):
                ca.request("POST", "/api/v1/lists", {"name": name, "label": label})
                body = {"hashes": [{"type": t, "value": v, "category": "A1"} for t, v in hashes]}
                ca.request("POST", f"/api/v1/lists/{name}/hashes", body)
                cp = ca.request("POST", f"/api/v1/lists/{name}/publish")
                steps.say(f"{name}: {cp['size']} entries, label {label}, signed checkpoint")
        sizes = {BASELINE: len(base_sha) + len(base_pdq), RESTRICTED: len(secret_sha)}
        with steps.step(f"{B} pulls both lists from {A} (notified, verified)"), b.client() as cb:
            for name, size in sizes.items():
                _wait_size(cb, name, size, f"{B} to hold {name}")
            steps.say("root recomputed from the entries matches A's signed checkpoint")
        with (
            steps.step(f"{P} pulls {BASELINE} relayed by {B}, verified with A's key"),
            p.client() as cp_,
        ):
            _wait(
                f"{P} to hold {BASELINE}", lambda: _list_size(cp_, BASELINE)[0] == sizes[BASELINE]
            )
            size, via = _list_size(cp_, BASELINE)
            steps.say(f"{BASELINE}: {size} entries, received via {via}")
            if _list_size(cp_, RESTRICTED)[0] != -1:
                raise AssertionError(f"{P} must not receive {RESTRICTED}")
            steps.say(f"{RESTRICTED}: not offered to {P} (label restricted)")
        probe = [
            {"type": "sha256", "value": base_sha[7]},
            {"type": "pdq", "value": _flip(base_pdq[3], 9, rnd)},
            {"type": "sha256", "value": secret_sha[0]},
            {"type": "sha256", "value": _rand_hex(rnd, 32)},
        ]
        with (
            steps.step(
                f"match at {P}: a baseline sha256, a near PDQ, a restricted hash, an unknown one"
            ),
            p.client() as cp_,
        ):
            got = _hits(cp_, probe)
            labels = ["baseline sha256", "PDQ 9 bits off", "restricted sha256", "unknown sha256"]
            for label, hits in zip(labels, got, strict=True):
                what = ", ".join(_describe_hit(h) for h in hits)
                steps.say(f"{label:18} → {what or 'no hit'}")
            if not got[0] or not got[1] or got[2] or got[3]:
                raise AssertionError("unexpected match result at the partner")
            with b.client() as cb:
                at_b = _hits(cb, probe[2:3])[0]
            steps.say(
                f"(at {B}, cleared for restricted, that hash is in "
                f"{', '.join(h['list'] for h in at_b) or 'nothing'})"
            )
            if not at_b:
                raise AssertionError(f"{B} should match the restricted hash")
        with steps.step(f"{A} removes that baseline hash and publishes"), a.client() as ca:
            ca.request(
                "POST",
                f"/api/v1/lists/{BASELINE}/remove",
                {"hashes": [{"type": "sha256", "value": base_sha[7]}]},
            )
            ca.request("POST", f"/api/v1/lists/{BASELINE}/publish")
        with steps.step(f"the removal reaches {P} through {B}"), p.client() as cp_:
            _wait(f"the removal to reach {P}", lambda: not _hits(cp_, probe[:1])[0])
            steps.say(f"{P} no longer matches the removed hash")
        with steps.step("peer health as the nodes see it"):
            for n in (b, p):
                with n.client() as c:
                    for h in c.request("GET", "/api/v1/peers"):
                        gets = ",".join(h["labels"]) or "nothing"
                        if not h["subscribe"]:
                            steps.say(f"{n.node_id} → {h['peer']}: receives {gets}, pulls nothing")
                            continue
                        state = "healthy" if h["healthy"] else h["last_error_code"]
                        steps.say(
                            f"{n.node_id} → {h['peer']}: pulls {','.join(h['subscribe'])}: "
                            f"{state}, {h['failures']} failures, lag {h['lag_entries']} entries"
                        )
        _overlap_step(steps, b, base_sha[100:105], [_flip(c, 5, rnd) for c in base_pdq[:2]])
        with steps.step(f"{P} reports a sighting; it reaches {A} through {B}; an alert fires"):
            assert receiver is not None
            sighting_and_alert(
                partner=p.data,
                owner_client=a.client,
                list_name=BASELINE,
                seq=8,
                receiver=receiver,
                say=steps.say,
            )
        console.print(
            "[bold green]the federation works:[/] signed lists pulled, relayed, "
            "verified, matched and revoked across three nodes"
        )
        return True
    except (HashfedError, TimeoutError, AssertionError) as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        for n in nodes.values():
            log = n.data / "serve.log"
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-15:]
                console.print(f"[dim]--- {n.node_id} serve.log (last lines)[/]")
                console.print("\n".join(tail), markup=False)
        return False
    finally:
        for n in nodes.values():
            _stop(n)
        if receiver is not None:
            receiver.stop()
        console.print(f"[dim]stopped {len(nodes)} node process(es)[/]")
        if keep:
            console.print(f"[dim]data kept in {work}[/]")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _overlap_step(steps: _Steps, b: _Node, shared_sha: list[str], near_pdq: list[str]) -> None:
    """B seizes material A also holds: the overlap detector at B connects the two lists."""
    seized = f"{B}/seized-2026"
    with steps.step(f"{B} imports its own case list; overlaps with {BASELINE} appear"):
        hashes = [("sha256", v) for v in shared_sha] + [("pdq", v) for v in near_pdq]
        with b.client() as cb:
            cb.request("POST", "/api/v1/lists", {"name": seized, "label": "restricted"})
            body = {"hashes": [{"type": t, "value": v, "category": "B1"} for t, v in hashes]}
            cb.request("POST", f"/api/v1/lists/{seized}/hashes", body)

            def pair() -> dict[str, Any] | None:
                answer = cb.request("GET", f"/api/v1/overlaps?list={seized}")
                return next(iter(answer["pairs"]), None)

            _wait(f"{B} to find the overlaps", lambda: (pair() or {}).get("count") == len(hashes))
            found = pair()
            assert found is not None
            kinds = sorted({o["hash_type"] for o in found["overlaps"]})
            steps.say(
                f"{found['list_a']} ↔ {found['list_b']}: {found['count']} overlaps "
                f"({', '.join(kinds)}; PDQ within 31 bits), no hash values shown"
            )


def _wait_started(node: _Node) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    with node.client() as client:
        while time.monotonic() < deadline:
            if node.proc is not None and node.proc.poll() is not None:
                raise AssertionError(f"{node.node_id} exited at start (see its serve.log)")
            try:
                answer = client.request("GET", "/healthz")
                if isinstance(answer, dict) and answer.get("status") == "ok":
                    return
            except PeerError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"{node.node_id} did not start within {_START_TIMEOUT:.0f}s")
