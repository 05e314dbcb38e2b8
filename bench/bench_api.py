"""End-to-end API figures over mutual TLS on 127.0.0.1.

Starts a real `hashfed serve` process holding N sha256 and N PDQ hashes, then
drives it from a separate load-generator process (uvloop, raw HTTP/1.1
keep-alive over TLS with a client certificate, so the generator costs as
little CPU as possible on this 2-core machine):

- single-hash GETs from 32 keep-alive clients for a fixed time: requests/s,
  p50/p99 latency, errors;
- batches of 10,000 sha256 in one POST: hashes/s;
- batches of PDQ queries (near-duplicates of stored codes): queries/s;
- start-up time (process start to first answer) and resident memory.

Run: ``python -m bench.bench_api --scale 1000000`` (``make bench`` runs it).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench._serve import free_port, start_serve
from crypto.tls import client_context


def fill_node(data: Path, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Create the node and two lists of ``n`` sha256 and ``n`` PDQ hashes, in-process."""
    from config import load_settings
    from node.datadir import init_data_dir
    from node.node import Node

    init_data_dir(data, node_id="bench-node")
    node = Node.open(load_settings(data))
    sha = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    pdq = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    try:
        for name, codes, htype in (("sha", sha, "sha256"), ("pdq", pdq, "pdq")):
            node.create_list(f"bench-node/{name}", label="baseline", actor="bench")
            step = 1_000_000
            for i in range(0, n, step):
                hexes = [bytes(r).hex() for r in codes[i : i + step]]
                node.add(f"bench-node/{name}", [(htype, h, "A1") for h in hexes], actor="bench")
            node.publish(f"bench-node/{name}", actor="bench")
    finally:
        node.close()
    return sha, pdq


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the load generator (runs in its own process) -----------------------------------------------


class _KeepAliveClient(asyncio.Protocol):
    """One keep-alive connection sending the next GET as soon as the last answer is in.

    A bare protocol, not streams: the generator shares the machine's cores
    with the server, and every microsecond it spends per request is taken
    from the server's side of the comparison.
    """

    def __init__(self, paths: list[bytes], deadline: float, lat: list[float], errors: list[int]):
        self.requests = [b"GET " + p + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" for p in paths]
        self.deadline = deadline
        self.lat = lat
        self.errors = errors
        self.buf = b""
        self.i = 0
        self.t0 = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self._send()

    def _send(self) -> None:
        self.t0 = time.perf_counter()
        if self.t0 >= self.deadline:
            self.transport.close()
            return
        self.transport.write(self.requests[self.i % len(self.requests)])
        self.i += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].lower() + b"\r\n"
        at = head.find(b"content-length:") + 15
        length = int(head[at : head.find(b"\r\n", at)])
        if len(self.buf) < end + 4 + length:
            return
        self.buf = self.buf[end + 4 + length :]
        self.lat.append(time.perf_counter() - self.t0)
        if head[9:12] != b"200":
            self.errors.append(int(head[9:12]))
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _load_worker(
    port: int,
    cert: str,
    key: str,
    server_cert: str,
    paths: list[bytes],
    clients: int,
    seconds: float,
    out: Any,
) -> None:
    ctx = client_context(cert, key, pinned_cert_files=[server_cert])
    lat: list[float] = []
    errors: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadline = time.perf_counter() + seconds
        conns = []
        for k in range(clients):
            share = paths[k::clients] or paths
            _t, proto = await loop.create_connection(
                functools.partial(_KeepAliveClient, share, deadline, lat, errors),
                "127.0.0.1",
                port,
                ssl=ctx,
                server_hostname="127.0.0.1",
            )
            conns.append(proto)
        await asyncio.gather(*(c.done for c in conns))

    # uvloop (installed with uvicorn[standard]): the generator shares the
    # machine's cores with the server, so its own cost per request matters.
    import uvloop

    t0 = time.process_time()
    uvloop.run(main())
    out.put((lat, errors, time.process_time() - t0))


def run_get_load(
    data: Path, port: int, codes: np.ndarray, *, clients: int, seconds: float
) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    # 1 % known hashes, the rest unknown: what a filter sees.
    known = [bytes(codes[i]).hex() for i in rng.integers(0, len(codes), size=200)]
    unknown = [os.urandom(32).hex() for _ in range(19_800)]
    values = known + unknown
    rng.shuffle(values)
    paths = [f"/api/v1/match/sha256/{v}".encode() for v in values]
    q: Any = mp.get_context("spawn").Queue()
    p = mp.get_context("spawn").Process(
        target=_load_worker,
        args=(
            port,
            str(data / "tls/node.crt"),
            str(data / "tls/node.key"),
            str(data / "tls/node.crt"),
            paths,
            clients,
            seconds,
            q,
        ),
    )
    p.start()
    lat, errors, cpu = q.get()
    p.join()
    lat.sort()
    return {
        "requests": len(lat),
        "rps": len(lat) / seconds,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[int(len(lat) * 0.99)],
        "errors": len(errors),
        "generator_cpu_us": 1e6 * cpu / max(1, len(lat)),
    }


def run_batches(data: Path, port: int, htype: str, batches: list[list[str]]) -> dict[str, Any]:
    ctx = client_context(
        data / "tls/node.crt", data / "tls/node.key", pinned_cert_files=[data / "tls/node.crt"]
    )
    times = []
    hits = 0
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ctx, timeout=120) as c:
        c.post("/api/v1/match", json={"hashes": [{"type": htype, "value": batches[0][0]}]})  # warm
        for b in batches:
            body = json.dumps({"hashes": [{"type": htype, "value": v} for v in b]})
            t0 = time.perf_counter()
            r = c.post("/api/v1/match", content=body, headers={"content-type": "application/json"})
            times.append(time.perf_counter() - t0)
            r.raise_for_status()
            hits += r.json()["hits"]
    n = sum(len(b) for b in batches)
    return {
        "queries": n,
        "per_s": n / sum(times),
        "median_batch_ms": 1000 * statistics.median(times),
        "hits": hits,
    }


def run_change_latency(data: Path, port: int, rounds: int = 20) -> dict[str, Any]:
    """Admin add/remove calls, then a GET straight after: matchable, then not.

    The node updates its indexes after the commit and before the call
    returns, so the call's round trip bounds commit-to-matchable from above;
    the node's own figure (``index_apply`` in /api/v1/status) is the time
    from the commit to the index update, the longest of the run.
    """
    ctx = client_context(
        data / "tls/node.crt", data / "tls/node.key", pinned_cert_files=[data / "tls/node.crt"]
    )
    out: dict[str, list[float]] = {"add": [], "remove": [], "add 1,000": [], "remove 1,000": []}
    wrong = 0
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ctx, timeout=120) as c:
        for i in range(rounds):
            htype, name = ("sha256", "sha") if i % 2 else ("pdq", "pdq")
            many = 1000 if i < 2 else 1
            values = [os.urandom(32).hex() for _ in range(many)]
            suffix = " 1,000" if many > 1 else ""
            for op, path in (("add", "hashes"), ("remove", "remove")):
                body = {"hashes": [{"type": htype, "value": v, "category": "A1"} for v in values]}
                t0 = time.perf_counter()
                r = c.post(f"/api/v1/lists/bench-node/{name}/{path}", json=body)
                out[op + suffix].append(time.perf_counter() - t0)
                r.raise_for_status()
                hits = c.get(f"/api/v1/match/{htype}/{values[-1]}?max_distance=0").json()["hits"]
                wrong += hits != (1 if op == "add" else 0)
        applied = c.get("/api/v1/status").json()["index_apply"]
    return {k: 1000 * max(v) for k, v in out.items()} | {
        "median_ms": 1000 * statistics.median(out["add"] + out["remove"]),
        "wrong": wrong,
        "apply_max_ms": applied["max_us"] / 1000,
        "apply_calls": applied["calls"],
    }


def flip(codes: np.ndarray, bits: int, rng: np.random.Generator) -> list[str]:
    out = []
    for row in codes:
        v = int.from_bytes(bytes(row), "big")
        for b in rng.choice(256, size=bits, replace=False):
            v ^= 1 << int(b)
        out.append(f"{v:064x}")
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", type=int, default=1_000_000, help="hashes per type")
    ap.add_argument("--seconds", type=float, default=20.0, help="duration of the GET load")
    ap.add_argument("--clients", type=int, default=32)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(1)
    tmp = Path(tempfile.mkdtemp(prefix="hashfed-bench-api-"))
    data = tmp / "node"
    rows: list[dict[str, Any]] = []
    proc = None
    try:
        t0 = time.perf_counter()
        sha, pdq = fill_node(data, args.scale, rng)
        print(
            f"filled {args.scale:,} sha256 + {args.scale:,} pdq in {time.perf_counter() - t0:.1f}s",
            flush=True,
        )
        port = free_port()
        proc, startup = start_serve(data, port)
        rows.append(
            {
                "figure": "start-up to first answer",
                "value": f"{startup:.1f} s",
                "target": "≤ 60 s at 10M+10M",
            }
        )
        rows.append(
            {
                "figure": "resident memory after start",
                "value": f"{rss_mb(proc.pid):.0f} MB",
                "target": "< 3 GB at 10M+10M",
            }
        )

        sel = rng.integers(0, args.scale, size=20_000)
        sha_batches = [
            [os.urandom(32).hex() for _ in range(9_900)]
            + [bytes(sha[i]).hex() for i in sel[k * 100 : (k + 1) * 100]]
            for k in range(10)
        ]
        b = run_batches(data, port, "sha256", sha_batches)
        rows.append(
            {
                "figure": "batch of 10,000 sha256",
                "value": f"{b['per_s']:,.0f} hashes/s "
                f"(median {b['median_batch_ms']:.0f} ms/batch, {b['hits']} hits)",
                "target": "≥ 100,000 hashes/s",
            }
        )

        near = flip(pdq[sel[:2000]], 12, rng)
        pdq_batches = [near[i : i + 500] for i in range(0, len(near), 500)]
        b = run_batches(data, port, "pdq", pdq_batches)
        rows.append(
            {
                "figure": "PDQ batches of 500 (12 bits flipped)",
                "value": f"{b['per_s']:,.0f} queries/s ({b['hits']} hits of {b['queries']})",
                "target": "≥ 1,000 queries/s at 10M",
            }
        )

        g = run_get_load(data, port, sha, clients=args.clients, seconds=args.seconds)
        rows.append(
            {
                "figure": f"single GET, {args.clients} keep-alive clients, {args.seconds:.0f} s",
                "value": f"{g['rps']:,.0f} req/s, p50 {g['p50_ms']:.1f} ms, "
                f"p99 {g['p99_ms']:.1f} ms, {g['errors']} errors of {g['requests']:,}",
                "target": "≥ 5,000 req/s, p99 ≤ 15 ms, 0 errors (1M+1M)",
            }
        )
        ch = run_change_latency(data, port)
        rows.append(
            {
                "figure": "admin add/remove call → (not) matchable",
                "value": f"one hash: median {ch['median_ms']:.1f} ms, max add {ch['add']:.1f} / "
                f"remove {ch['remove']:.1f} ms; 1,000 hashes: max add {ch['add 1,000']:.1f} / "
                f"remove {ch['remove 1,000']:.1f} ms (whole calls); commit → index updated: "
                f"max {ch['apply_max_ms']:.1f} ms over {ch['apply_calls']} updates; "
                f"{ch['wrong']} wrong answers after",
                "target": "≤ 50 ms after commit",
            }
        )
        rows.append(
            {
                "figure": "resident memory after load",
                "value": f"{rss_mb(proc.pid):.0f} MB",
                "target": "",
            }
        )
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)

    from rich.console import Console
    from rich.table import Table

    table = Table(
        "figure", "measured", "target", title=f"API over mTLS, {args.scale:,} hashes per type"
    )
    for r in rows:
        table.add_row(r["figure"], r["value"], r["target"])
    Console().print(table)
    return rows


if __name__ == "__main__":
    main()
