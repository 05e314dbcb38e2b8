"""Index segments: start-up, memory per worker, 2 workers vs 1, memmap vs in-memory queries.

Fills a node with N sha256 and N PDQ hashes, then:

- start to first correct answer (healthz ok and a stored hash found) from
  the database (no segment: the build the node did before segments) and
  with the segment the first start wrote;
- ``hashfed serve --workers 2``: each worker's private memory (what it adds;
  the mapped segment is shared through the page cache) and its total RSS;
- single-hash GET throughput from the same load generator against 1 worker
  and 2 workers, both serving side by side, their loads alternating
  (``--rounds``, medians compared); then batches of sha256 and PDQ from one
  client against each;
- p50 of one PDQ query (in-process, no HTTP) from a memory-mapped segment
  vs the in-memory index built from the database.

Run: ``python -m bench.bench_segments --scale 1000000`` (10M: ``--scale 10000000``).
The machine is shared: compare the figures of one run, not across runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench._serve import UNLIMITED, admin_context, free_port
from bench.bench_api import fill_node, flip, run_batches, run_get_load


def private_mb(pid: int) -> tuple[float, float]:
    """(private MB, RSS MB) of a process.

    Private here is anonymous memory (heap, arrays built in memory): the
    segment's pages are file-backed and shared through the page cache (the
    kernel counts them "private" while only one process maps them).
    """
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        k, v = line.split(":", 1)
        fields[k] = int(v.split()[0])
    return fields["Anonymous"] / 1024, fields["Rss"] / 1024


def start(
    data: Path, port: int, known: str, workers: int = 1, timeout: float = 900.0
) -> tuple[subprocess.Popen[bytes], float]:
    """Start ``hashfed serve``; seconds until it answers ``known`` (sha256) correctly."""
    hashfed = str(Path(sys.executable).with_name("hashfed"))
    t0 = time.perf_counter()
    argv = [hashfed, "serve", "--data", str(data), "--port", str(port)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    proc = subprocess.Popen(
        argv,
        env={**os.environ, **UNLIMITED},
        stdout=subprocess.DEVNULL,
        stderr=(data / "serve.log").open("ab"),
    )
    ctx = admin_context(data)
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit((data / "serve.log").read_text()[-3000:])
        try:
            r = httpx.get(
                f"https://127.0.0.1:{port}/api/v1/match/sha256/{known}", verify=ctx, timeout=2
            )
            if r.status_code == 200 and r.json()["hits"] == 1:
                return proc, time.perf_counter() - t0
        except (httpx.TransportError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def status(data: Path, port: int) -> dict[str, Any]:
    with httpx.Client(verify=admin_context(data), timeout=30) as c:
        return dict(c.get(f"https://127.0.0.1:{port}/api/v1/status").json())


def wait_for_segment(data: Path, port: int, timeout: float = 900.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if status(data, port)["segments"]["generation"] >= 1:
            return time.perf_counter() - t0
        time.sleep(0.5)
    raise SystemExit("no segment written")


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(x) for x in text.split()]


def warm_get_load(
    data: Path, port: int, sha: np.ndarray, *, clients: int, seconds: float
) -> dict[str, Any]:
    """The GET load, after a short one that brings the mapped segment's pages in."""
    run_get_load(data, port, sha, clients=clients, seconds=min(3.0, seconds))
    return run_get_load(data, port, sha, clients=clients, seconds=seconds)


def pdq_p50(data: Path, queries: list[str]) -> tuple[float, float]:
    """p50 ms of one PDQ query: in-memory index built from the database vs the segment."""
    from config import load_settings
    from node.match.follower import LogFollower
    from node.match.matcher import Matcher, Query
    from node.match.segments import SEGMENT_FOLDER, SegmentManager
    from node.node import Node

    node = Node.open(load_settings(data))
    try:
        t0 = time.perf_counter()
        mem = Matcher()
        mem.load(node.store)
        t1 = time.perf_counter()
        seg = SegmentManager(data / SEGMENT_FOLDER, node.store, LogFollower(node.store, Matcher()))
        seg.load()
        t2 = time.perf_counter()
        assert seg.stats["started_from"] == "segment"
        print(
            f"in-process index ready: from the database {t1 - t0:.2f} s, from the segment "
            f"{t2 - t1:.2f} s ({(t1 - t0) / (t2 - t1):.0f}x faster)",
            flush=True,
        )
        qs = [Query("pdq", v) for v in queries]
        both = (mem, seg.follower.matcher)
        for m in both:  # warm: every page a query touches is resident for both
            for q in qs:
                m.match([q])
        # Each query timed on both, one right after the other, three times: a
        # drift of the machine's load over the run falls on both alike.
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(3):
            for q in qs:
                for m, out in zip(both, times, strict=True):
                    t0 = time.perf_counter()
                    m.match([q])
                    out.append(time.perf_counter() - t0)
        return 1000 * statistics.median(times[0]), 1000 * statistics.median(times[1])
    finally:
        node.close()


def main(argv: list[str] | None = None) -> list[dict[str, str]]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", type=int, default=1_000_000, help="hashes per type")
    ap.add_argument("--seconds", type=float, default=15.0, help="duration of each GET load")
    # Connections stay open for the whole load and SO_REUSEPORT hands each to
    # a worker by a hash of its addresses: with 32, one worker often gets 19
    # and idles the other; 128 spread within a few percent.
    ap.add_argument("--clients", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3, help="alternating GET loads per set-up")
    ap.add_argument("--keep", type=Path, help="fill this folder once and keep it for later runs")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(3)
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="hashfed-bench-seg-"))
    data = tmp / "node"
    rows: list[dict[str, str]] = []

    def row(figure: str, value: str, target: str) -> None:
        rows.append({"figure": figure, "value": value, "target": target})
        print(f"{figure}: {value}   (target {target})", flush=True)

    try:
        t0 = time.perf_counter()
        if (tmp / "codes.npz").exists():
            saved = np.load(tmp / "codes.npz")
            sha, pdq = saved["sha"], saved["pdq"]
            shutil.rmtree(data / "segments", ignore_errors=True)
        else:
            sha, pdq = fill_node(data, args.scale, rng)
            print(f"filled {args.scale:,} + {args.scale:,} in {time.perf_counter() - t0:.0f} s")
            if args.keep:
                np.savez(tmp / "codes.npz", sha=sha, pdq=pdq)
        t0 = time.perf_counter()
        hashfed = str(Path(sys.executable).with_name("hashfed"))
        subprocess.run([hashfed, "--help"], capture_output=True, check=True)
        row(
            "anchor: `hashfed --help` (Python start-up and imports)",
            f"{time.perf_counter() - t0:.1f} s",
            "",
        )
        known = bytes(sha[0]).hex()
        port = free_port()
        row("load average at start", f"{os.getloadavg()[0]:.1f} (2 cores)", "")

        proc, fresh = start(data, port, known)
        written = wait_for_segment(data, port)
        st = status(data, port)["segments"]
        stop(proc)
        row(
            "start to first correct answer, no segment (build from the database)",
            f"{fresh:.1f} s",
            "no slower than before",
        )
        row(
            "segment written in the background after that start",
            f"{written:.1f} s later, {st['mapped_bytes'] / 2**20:.0f} MB",
            "",
        )

        proc, warm = start(data, port, known)
        st = status(data, port)["segments"]
        assert st["started_from"] == "segment", st
        row("start to first correct answer, segment present", f"{warm:.1f} s", "≤ 5 s at 10M+10M")
        one_private, one_rss = private_mb(proc.pid)
        # Both set-ups run side by side, and their loads alternate: the
        # comparison is not skewed by what the machine did in one period.
        port2 = free_port()
        proc2, _ = start(data, port2, known, workers=2)
        time.sleep(3)  # both workers up (the first answer may come from either)
        mem = [private_mb(pid) for pid in children(proc2.pid)]
        runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        for _ in range(args.rounds):
            for workers, p in ((1, port), (2, port2)):
                runs[workers].append(
                    warm_get_load(data, p, sha, clients=args.clients, seconds=args.seconds)
                )
        # Batches (10,000 sha256 with 100 known; 500 PDQ codes 12 bits off)
        # from one client, which one worker answers each time.
        sel = rng.integers(0, args.scale, size=1_000)
        sha_batches = [
            [os.urandom(32).hex() for _ in range(9_900)]
            + [bytes(sha[i]).hex() for i in sel[k * 100 : (k + 1) * 100]]
            for k in range(10)
        ]
        near = flip(pdq[sel], 12, rng)
        pdq_batches = [near[i : i + 500] for i in range(0, len(near), 500)]
        batches = {
            w: (
                run_batches(data, p, "sha256", sha_batches),
                run_batches(data, p, "pdq", pdq_batches),
            )
            for w, p in ((1, port), (2, port2))
        }
        stop(proc2)
        stop(proc)
        row("1 worker: private (anonymous) / RSS", f"{one_private:.0f} MB / {one_rss:.0f} MB", "")
        row(
            "2 workers: private (anonymous) / RSS each",
            ", ".join(f"{p:.0f} MB / {r:.0f} MB" for p, r in mem),
            "≤ 300 MB private each",
        )
        med = {w: statistics.median(g["rps"] for g in runs[w]) for w in runs}
        for workers in (1, 2):
            g = runs[workers]
            row(
                f"single GET, {args.clients} clients, {workers} worker{'s' if workers > 1 else ''}"
                f" ({args.rounds} alternating loads)",
                f"median {med[workers]:,.0f} req/s ("
                + ", ".join(f"{x['rps']:,.0f}" for x in g)
                + f"), p50 {statistics.median(x['p50_ms'] for x in g):.1f} ms, "
                f"p99 {statistics.median(x['p99_ms'] for x in g):.1f} ms, "
                f"{sum(x['errors'] for x in g)} errors; generator "
                f"{statistics.median(x['generator_cpu_us'] for x in g):.0f} µs CPU per request"
                + (f"; {med[2] / med[1]:.2f}× one worker" if workers == 2 else ""),
                "≥ 1.5×" if workers == 2 else "",
            )

        for workers, (b_sha, b_pdq) in batches.items():
            row(
                f"batches, {workers} worker{'s' if workers > 1 else ''}",
                f"sha256 {b_sha['per_s']:,.0f} hashes/s ({b_sha['hits']} hits), "
                f"PDQ {b_pdq['per_s']:,.0f} queries/s ({b_pdq['hits']} hits)",
                "no worse with 2" if workers == 2 else "",
            )

        near = flip(pdq[rng.integers(0, args.scale, 1000)], 12, rng)
        mem_p50, seg_p50 = pdq_p50(data, near + [os.urandom(32).hex() for _ in range(1000)])
        row(
            "one PDQ query p50, in-memory vs memory-mapped segment",
            f"{mem_p50:.2f} ms vs {seg_p50:.2f} ms ({seg_p50 / mem_p50:.2f}×)",
            "within 10 %",
        )
        row("load average at end", f"{os.getloadavg()[0]:.1f} (2 cores)", "")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows


if __name__ == "__main__":
    main()
