"""What /metrics costs the hottest request: single-hash GETs with metrics off and on.

Two ``hashfed serve`` processes on the same data folder, one with
``HASHFED_METRICS=false``, one with metrics on (the default), take the same
single-GET load in alternating rounds (off, on, off, on, ...), so drift in a
shared machine's load falls on both alike. Reported: requests/s and p50 of
each, and the overhead (1 - on/off) of the medians over rounds. Target: < 5 %.

On a shared, loaded machine the two processes' throughput differs by more
than any metrics cost (scheduling, which process holds the scheduler), so
the same comparison also runs in process: two apps over one node, metrics
off and on, the plain single-hash GET driven straight through ASGI (auth,
match, audit, serialisation; no TLS or sockets), alternating batches; the
overhead is the difference of the median per-request times.

    python -m bench.bench_metrics --scale 100000 --rounds 4 --seconds 8
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._serve import free_port, start_serve
from bench.bench_api import fill_node, run_get_load


def _say(row: dict[str, Any]) -> None:
    """Print one measured figure (timings only: the bench never prints a hash)."""
    print(f"{row['figure']}: {row['measured']} (target {row['target']})", flush=True)


def _asgi_rounds(data: Path, codes: np.ndarray, rounds: int, per_round: int) -> dict[str, float]:
    """Median µs per plain single-hash GET through each app, alternating batches."""
    import asyncio

    from api.app import create_app
    from config import load_settings
    from node.node import Node

    settings = load_settings(data)
    # One principal drives the load: its rate limit would measure itself.
    unlimited = settings.limits.model_copy(
        update={"rate_limit_per_second": 1e9, "rate_limit_burst": 1_000_000_000}
    )
    settings = settings.model_copy(update={"limits": unlimited})
    pem = (data / "tls" / "node.crt").read_text()
    node = Node.open(settings)
    apps = {
        "off": create_app(settings.model_copy(update={"metrics": False}), node=node),
        "on": create_app(settings.model_copy(update={"metrics": True}), node=node),
    }
    paths = [f"/api/v1/match/sha256/{bytes(c).hex()}" for c in codes[:100]]
    paths += [f"/api/v1/match/sha256/{i:064x}" for i in range(900)]

    async def one(app: Any, path: str) -> int:
        status = 0
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "https",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1")],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8443),
            "extensions": {"tls": {"client_cert_chain": [pem]}},
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)
        return status

    async def run() -> dict[str, float]:
        per: dict[str, list[float]] = {"off": [], "on": []}
        off, on = apps["off"], apps["on"]
        async with off.router.lifespan_context(off), on.router.lifespan_context(on):
            for mode in ("off", "on"):  # warm-up
                for p in paths:
                    assert await one(apps[mode], p) == 200
            for r in range(rounds):
                for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                    t0 = time.perf_counter()
                    for i in range(per_round):
                        await one(apps[mode], paths[i % len(paths)])
                    per[mode].append((time.perf_counter() - t0) / per_round * 1e6)
        return {m: statistics.median(v) for m, v in per.items()}

    try:
        return asyncio.run(run())
    finally:
        node.close()


def _middleware_cost(n: int = 200_000) -> float:
    """µs the metrics middleware adds around a do-nothing ASGI app (its own cost, no noise
    from the request it wraps)."""
    import asyncio

    from api.metrics import MetricsMiddleware, NodeMetrics

    class _Route:
        path = "/api/v1/match/{hash_type}/{value}"

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = _Route
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b""})

    wrapped = MetricsMiddleware(bare, metrics=NodeMetrics(lambda: None))

    async def nothing(_message: Any) -> None:
        return None

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def per_call(app: Any) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            await app({"type": "http", "method": "GET"}, receive, nothing)
        return (time.perf_counter() - t0) / n * 1e6

    async def run() -> float:
        costs = []
        for _ in range(5):
            costs.append(await per_call(wrapped) - await per_call(bare))
        return statistics.median(costs)

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", type=int, default=100_000, help="hashes per type")
    ap.add_argument("--rounds", type=int, default=4, help="alternating off/on rounds")
    ap.add_argument("--seconds", type=float, default=8.0, help="load per round and server")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--asgi-rounds", type=int, default=20, help="in-process rounds (0: skip)")
    ap.add_argument("--asgi-requests", type=int, default=2000, help="requests per round")
    ap.add_argument("--skip-http", action="store_true", help="only the in-process comparison")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(3)
    data = Path(tempfile.mkdtemp(prefix="hashfed-bench-metrics-")) / "node"
    sha, _ = fill_node(data, args.scale, rng)
    rows: list[dict[str, Any]] = []
    if args.asgi_rounds:
        us = _asgi_rounds(data, sha, args.asgi_rounds, args.asgi_requests)
        rows.append(
            {
                "figure": f"plain single GET in process, metrics off vs on ({args.asgi_rounds} "
                f"alternating rounds of {args.asgi_requests:,})",
                "measured": f"off {us['off']:.1f} µs, on {us['on']:.1f} µs per request: "
                f"overhead {(us['on'] / us['off'] - 1) * 100:+.1f} %",
                "target": "< 5 %",
            }
        )
        _say(rows[-1])
        cost = _middleware_cost()
        rows.append(
            {
                "figure": "metrics middleware's own cost (around a do-nothing app)",
                "measured": f"{cost:.1f} µs per request = {cost / us['off'] * 100:.2f} % of the "
                f"in-process single GET ({us['off']:.0f} µs) in the same run",
                "target": "< 5 %",
            }
        )
        _say(rows[-1])
    if args.skip_http:
        return rows
    ports = {"off": free_port(), "on": free_port()}
    procs = {}
    try:
        procs["off"], _ = start_serve(data, ports["off"], {"HASHFED_METRICS": "false"})
        procs["on"], _ = start_serve(data, ports["on"], {"HASHFED_METRICS": "true"})
        results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        # A short warm-up of each, not counted.
        for mode in ("off", "on"):
            run_get_load(data, ports[mode], sha, clients=args.clients, seconds=2)
        for r in range(args.rounds):
            order = ("off", "on") if r % 2 == 0 else ("on", "off")
            for mode in order:
                g = run_get_load(data, ports[mode], sha, clients=args.clients, seconds=args.seconds)
                results[mode].append(g)
                print(
                    f"round {r + 1} metrics {mode:>3}: {g['rps']:,.0f} req/s, "
                    f"p50 {g['p50_ms']:.2f} ms, p99 {g['p99_ms']:.2f} ms, {g['errors']} errors",
                    flush=True,
                )
        rps = {m: statistics.median(x["rps"] for x in results[m]) for m in results}
        p50 = {m: statistics.median(x["p50_ms"] for x in results[m]) for m in results}
        overhead = 1 - rps["on"] / rps["off"]
        rows += [
            {
                "figure": f"single GET, metrics off vs on ({args.rounds} alternating rounds of "
                f"{args.seconds:.0f} s, {args.clients} clients)",
                "measured": f"off {rps['off']:,.0f} req/s (p50 {p50['off']:.2f} ms), "
                f"on {rps['on']:,.0f} req/s (p50 {p50['on']:.2f} ms): "
                f"overhead {overhead * 100:+.1f} %",
                "target": "< 5 %",
            }
        ]
        for row in rows:
            _say(row)
        return rows
    finally:
        for p in procs.values():
            p.terminate()
            try:
                p.wait(timeout=10)
            except Exception:
                p.kill()
        time.sleep(0.1)


if __name__ == "__main__":
    main()
