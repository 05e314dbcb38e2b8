"""Sightings accepted per second, and alert delivery latency (emit → receiver).

In one process, on a real node (SQLite in a temporary data folder):

* ``accept``: signed sightings of an owned list's entries through
  :func:`node.sightings.accept` (verify, time checks, replay guard, insert,
  audit, alert), one at a time as the federation endpoint takes them.
  Anchor: Ed25519 verification of the same notes alone (``verify_sighting``).
* ``alerts``: events raised with :func:`node.alerts.emit` while the outbox
  worker runs as in ``hashfed serve``; latency is emit → a local HTTP
  receiver has the signed POST. Anchor: a plain POST round trip to the same
  receiver.

Usage::

    .venv/bin/python -m bench.bench_sightings [--sightings 2000] [--alerts 50]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from config import TrustedOwner, load_settings
from crypto.keys import NoteSigner, generate_signing_key
from crypto.sighting import Sighting, new_nonce, sign_sighting, verify_sighting
from federation.outbox import OutboxWorker
from node.alerts import emit
from node.datadir import init_data_dir
from node.node import Node
from node.sightings import accept


class _Receiver:
    def __init__(self) -> None:
        self.times: dict[int, float] = {}
        times = self.times

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                now = time.perf_counter()
                with contextlib.suppress(ValueError, KeyError):
                    times[int(json.loads(body)["data"]["n"])] = now
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def bench_accept(node: Node, reporter: NoteSigner, n: int) -> None:
    now = int(time.time())
    notes = [
        sign_sighting(
            Sighting(
                list_name=f"{node.node_id}/base",
                seq=i % 1000,
                when=now,
                reporter=reporter.name,
                disposition=("seen", "confirmed", "false_positive")[i % 3],
                nonce=new_nonce(),
            ),
            reporter,
        )
        for i in range(n)
    ]
    verifiers = [reporter.verifier()]
    t0 = time.perf_counter()
    for note in notes:
        verify_sighting(note, verifiers)
    verify_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for note in notes:
        accept(node, note, via="bench")
    accept_s = time.perf_counter() - t0
    print(f"accept: {n} sightings in {accept_s:.2f}s = {n / accept_s:,.0f}/s")
    ratio = accept_s / verify_s
    print(f"  anchor verify only: {n / verify_s:,.0f}/s; accept/verify time = {ratio:.1f}x")


def bench_alerts(node: Node, n: int) -> None:
    receiver = _Receiver()
    node.store.add_webhook(
        url=receiver.url, events="sighting", include_hashes=False, secret="s" * 32
    )
    # anchor: a plain POST round trip
    rtt = []
    with httpx.Client(trust_env=False) as http:
        for _ in range(20):
            t = time.perf_counter()
            http.post(receiver.url, content=b"{}")
            rtt.append(time.perf_counter() - t)
    worker = OutboxWorker(node)
    worker.start()
    sent: dict[int, float] = {}
    try:
        for i in range(n):
            sent[i] = time.perf_counter()
            emit(node.store, "sighting", {"list": "x/y", "n": i})
            time.sleep(0.05)
        deadline = time.monotonic() + 30
        while len(receiver.times) < n and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()
        receiver.stop()
    lat = [(receiver.times[i] - sent[i]) * 1000 for i in receiver.times]
    print(
        f"alerts: {len(lat)}/{n} delivered; emit → received p50 {_pct(lat, 0.5):.0f} ms, "
        f"p95 {_pct(lat, 0.95):.0f} ms, max {max(lat):.0f} ms (outbox polled every 250 ms)"
    )
    print(f"  anchor plain POST round trip p50: {statistics.median(rtt) * 1000:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sightings", type=int, default=2000)
    ap.add_argument("--alerts", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sightings-") as tmp:
        data = Path(tmp) / "owner"
        init_data_dir(data, node_id="owner")
        reporter = NoteSigner("reporter", generate_signing_key())
        settings = load_settings(data).model_copy(
            update={
                "trusted_owners": [
                    TrustedOwner(node_id="reporter", signing_keys=[reporter.verifier_key])
                ]
            }
        )
        node = Node.open(settings)
        try:
            node.create_list("owner/base", label="baseline", actor="bench")
            node.add(
                "owner/base",
                [("sha256", f"{i:064x}", "A1") for i in range(1000)],
                actor="bench",
            )
            bench_accept(node, reporter, args.sightings)
            bench_alerts(node, args.alerts)
        finally:
            node.close()


if __name__ == "__main__":
    main()
