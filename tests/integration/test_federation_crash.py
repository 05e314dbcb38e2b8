"""Crash safety: SIGKILL a receiving node at random points of a large pull, again and again.

The owner ``a`` holds a large list and keeps growing it (adds and removals,
new checkpoints) between crashes; the receiver ``b`` is killed with SIGKILL
at a random moment after each start, at least 10 times, then left to finish.
At the end ``b`` holds exactly the owner's tree — same size, same root, every
seq once, the same content — and every checkpoint it accepted verifies under
the owner's key against ``b``'s own entries.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from _nodes import HASHFED, Identity, NodeProcess, free_port

from config import PeerSettings, load_settings
from crypto.checkpoint import list_origin, verify_checkpoint
from crypto.keys import NoteVerifier
from crypto.merkle import TreeLevels, leaf_hash
from federation.peers import register_peer
from node.log.entry import encode_leaf
from node.node import Node
from node.store import Store

pytestmark = pytest.mark.network

LIST = "a/big"


def _hashes(n: int, salt: str) -> list[str]:
    return [hashlib.sha256(f"{salt}{i}".encode()).hexdigest() for i in range(n)]


def _store(node: NodeProcess) -> Store:
    return Store.open(f"sqlite:///{node.data / 'hashfed.db'}", migrate=False)


def _snapshot(node: NodeProcess) -> tuple[int, bytes, int, list[tuple[str, str, str]]]:
    store = _store(node)
    try:
        row = store.get_list(owner="a", name="big")
        assert row is not None
        cp = store.latest_checkpoint(list_id=row.id)
        assert cp is not None
        state = store.get_state(list_id=row.id)
        content = sorted(
            (t, v, c) for page in store.iter_content(list_ids=[row.id]) for _l, t, v, c in page
        )
        return cp.size, cp.root_hash, state.size, content
    finally:
        store.close()


def _checkpoint_size(node: NodeProcess) -> int:
    store = _store(node)
    try:
        row = store.get_list(owner="a", name="big")
        cp = store.latest_checkpoint(list_id=row.id) if row else None
        return cp.size if cp else 0
    finally:
        store.close()


def _b_size(node: NodeProcess) -> int:
    store = _store(node)
    try:
        row = store.get_list(owner="a", name="big")
        return store.get_state(list_id=row.id).size if row else 0
    finally:
        store.close()


def _check_receiver(b: NodeProcess, owner_key: list[str]) -> None:
    """Every seq once; every accepted checkpoint verifies and matches b's own entries."""
    store = _store(b)
    try:
        row = store.get_list(owner="a", name="big")
        assert row is not None
        entries = list(store.iter_entries(list_id=row.id))
        assert [e[0] for e in entries] == list(range(len(entries)))
        tree = TreeLevels(leaf_hash(encode_leaf(*e)) for e in entries)
        verifiers = [NoteVerifier.from_verifier_key(k) for k in owner_key]
        accepted = store.checkpoints(list_id=row.id, status="accepted")
        assert accepted
        for cp in accepted:
            body = verify_checkpoint(cp.note, origin=list_origin("a", "big"), verifiers=verifiers)
            assert (body.size, body.root_hash) == (cp.size, cp.root_hash)
            assert tree.root(cp.size) == cp.root_hash
        assert store.checkpoints(list_id=row.id, status="evidence") == []
        assert row.frozen_reason is None
    finally:
        store.close()


def _spawn(node: NodeProcess) -> None:
    node.log = node.data / "serve.log"
    with node.log.open("ab") as fh:
        node.proc = subprocess.Popen(
            [HASHFED, "serve", "--data", str(node.data)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, **node.env},
        )


def _last_audit_id(node: NodeProcess) -> int:
    store = _store(node)
    try:
        rows = store.audit_records(after_id=0, limit=10_000_000)
        return rows[-1].id if rows else 0
    finally:
        store.close()


def _wait_for_fetch(a: NodeProcess, after_id: int, timeout: float = 20.0) -> bool:
    """Wait until ``b`` fetches a page of entries from ``a`` (its audit says so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store = _store(a)
        try:
            rows = store.audit_records(after_id=after_id, limit=1000)
        finally:
            store.close()
        if any(r.action == "federation.entries" and r.actor == "b" for r in rows):
            return True
        time.sleep(0.02)
    return False


def run_crash_test(
    base: Path, *, entries: int, kills: int, growth: int, seed: int, window: float
) -> None:
    """Kill ``b`` at a random moment of each pull: ``window`` seconds after its first page."""
    rnd = random.Random(seed)
    a = NodeProcess("a", base / "a", free_port()).init()
    b = NodeProcess(
        "b", base / "b", free_port(), env={"HASHFED_LIMITS__MAX_PAGE_ENTRIES": "5000"}
    ).init()
    a_key = a.verifier_keys()
    # Set up in this process: the CLI is tested elsewhere, and every second counts here.
    values = _hashes(entries, "big")
    for node, peer in (
        (
            a,
            PeerSettings(
                node_id="b",
                url=b.url,
                fingerprint=Identity("b", b.cert, b.cert).fingerprint,
                labels=["baseline"],
                subscribe=[],
            ),
        ),
        (
            b,
            PeerSettings(
                node_id="a",
                url=a.url,
                fingerprint=Identity("a", a.cert, a.cert).fingerprint,
                signing_keys=a_key,
                subscribe=["a/*"],
                interval_seconds=1,
            ),
        ),
    ):
        other = "b" if node is a else "a"
        pinned = node.data / "tls" / "pinned"
        pinned.mkdir(parents=True, exist_ok=True)
        shutil.copyfile((b if node is a else a).cert, pinned / f"{other}.crt")
        opened = Node.open(load_settings(node.data))
        try:
            register_peer(opened.store, node.data, peer, actor="test")
            if node is a:
                opened.create_list(LIST, label="baseline", actor="test")
                opened.add(LIST, [("sha256", v, "A1") for v in values], actor="test")
                opened.publish(LIST, actor="test")
        finally:
            opened.close()
    a.start()
    log: list[tuple[float, int, int]] = []  # (kill delay, a's size, b's size after the kill)
    try:
        for i in range(kills):
            if i:  # the owner moves on: more entries, a removal, a new checkpoint
                with a.client() as c:
                    more = [
                        {"type": "sha256", "value": v, "category": "B2"}
                        for v in _hashes(growth, f"more{i}")
                    ]
                    r = c.post(f"/api/v1/lists/{LIST}/hashes", json={"hashes": more})
                    assert r.status_code == 200, r.text
                    gone = {"hashes": [{"type": "sha256", "value": values[rnd.randrange(entries)]}]}
                    c.post(f"/api/v1/lists/{LIST}/remove", json=gone)  # 422 if removed already
                    assert c.post(f"/api/v1/lists/{LIST}/publish").status_code == 200
            a_size = _checkpoint_size(a)
            mark = _last_audit_id(a)
            _spawn(b)  # no need to wait for /healthz: the pull shows in a's audit log
            assert _wait_for_fetch(a, mark), "b did not start pulling"
            if i % 3 == 1:
                # Now and then b finishes, so later pulls resume from a non-empty
                # tree (with a consistency proof) and are cut there.
                delay = -1.0
                started = time.monotonic()
                deadline = started + 60
                while _b_size(b) != a_size and time.monotonic() < deadline:
                    time.sleep(0.02)
                # Later kills land within the time a whole pull took here, so
                # most cut a pull short however fast this machine is.
                window = min(window, 0.5 * (time.monotonic() - started))
            else:
                delay = rnd.uniform(0.0, window)
                time.sleep(delay)
            b.kill()  # SIGKILL: no shutdown, no cleanup
            b_size = _b_size(b)
            log.append((round(delay, 2), a_size, b_size))
            # Whatever the moment, b is at a checkpoint it verified, with no partial data.
            if b_size:
                _check_receiver(b, a_key)
        b.start()
        want = _snapshot(a)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _b_size(b) != want[0]:
            time.sleep(0.2)
        got = _snapshot(b)
        assert got[:2] == want[:2], f"seed {seed}: {log}"
        assert got[2] == want[0]
        assert got[3] == want[3]
        _check_receiver(b, a_key)
        interrupted = sum(1 for _d, a_size, b_size in log if b_size < a_size)
        print(f"seed {seed}: {interrupted} of {len(log)} kills interrupted a pull; {log}")
        assert interrupted >= 3, f"seed {seed}: {log}"
        assert any(b_size for _d, _a, b_size in log), "b never got anywhere"
    finally:
        b.stop()
        a.stop()


def test_sigkill_during_pulls_leaves_the_receiver_at_a_verified_checkpoint(
    tmp_path: Path,
) -> None:
    run_crash_test(
        tmp_path, entries=30_000, kills=10, growth=6_000, seed=random.randrange(2**32), window=0.5
    )


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_sigkill_during_a_large_pull_many_times(tmp_path: Path) -> None:
    run_crash_test(
        tmp_path, entries=300_000, kills=20, growth=50_000, seed=random.randrange(2**32), window=2.0
    )
