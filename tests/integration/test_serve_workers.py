"""``hashfed serve --workers 2``: two processes on one port, one SQLite database and one
segment folder; a hash added through either worker matches through the other."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
from _cluster import hit_lists, wait_until
from _nodes import HASHFED, NodeProcess, free_port, terminate

LIST = "au-argos/workers"


def _client_of_each_worker(node: NodeProcess, deadline: float) -> dict[int, httpx.Client]:
    """One keep-alive client per worker process: new connections until both answered."""
    found: dict[int, httpx.Client] = {}
    while len(found) < 2:
        assert time.monotonic() < deadline, f"saw only workers {sorted(found)}"
        c = node.client()
        try:
            pid = c.get("/api/v1/status").json()["segments"]["pid"]
        except (httpx.TransportError, ValueError, KeyError, TypeError):
            c.close()
            time.sleep(0.1)
            continue
        if pid in found:
            c.close()
        else:
            found[pid] = c
    return found


def test_two_workers_see_each_others_writes(tmp_path: Path) -> None:
    node = NodeProcess("au-argos", tmp_path / "au-argos", free_port()).init()
    node.cli("list", "create", LIST, "--label", "baseline")
    node.cli("list", "add", LIST, "sha256", os.urandom(32).hex(), "--category", "A1")
    log = (tmp_path / "serve.log").open("ab")
    proc = subprocess.Popen(
        [HASHFED, "serve", "--data", str(node.data), "--workers", "2"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    clients: dict[int, httpx.Client] = {}
    try:
        clients = _client_of_each_worker(node, time.monotonic() + 60)
        (pa, a), (pb, b) = sorted(clients.items())
        assert pa != pb
        for writer, reader in ((a, b), (b, a)):
            for htype in ("sha256", "pdq"):
                value = os.urandom(32).hex()
                r = writer.post(
                    f"/api/v1/lists/{LIST}/hashes",
                    json={"hashes": [{"type": htype, "value": value, "category": "B2"}]},
                )
                assert r.status_code == 200, r.text
                assert hit_lists(writer, htype, value) == [(LIST, "B2")]
                wait_until(
                    lambda c=reader, v=value, t=htype: hit_lists(c, t, v) == [(LIST, "B2")], 2.0
                )
        statuses = [c.get("/api/v1/status").json() for c in (a, b)]
        # Both map the one segment generation in the shared data folder.
        assert {s["segments"]["generation"] for s in statuses} != {0}
        assert len({s["segments"]["pid"] for s in statuses}) == 2
        # Overlap detection is done once, by the worker that holds the scheduler.
        detecting = [s["overlaps"]["detecting"] for s in statuses]
        assert sorted(detecting) == [False, True], detecting
    finally:
        for c in clients.values():
            c.close()
        terminate(proc)
        log.close()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]
