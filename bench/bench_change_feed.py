"""Cross-process commit-to-matchable: how long until a serve process answers a change
that ANOTHER process committed.

Starts a real ``hashfed serve`` process holding N sha256 hashes, then, from
this (separate) process, opens the same node and database as the CLI does and
commits changes one at a time, at random moments: an add of a new hash,
then its remove. After
each commit it polls the serve process over mutual TLS (keep-alive, every
~2 ms) until the answer reflects the change, and records the time from the
commit's return to that answer. Nothing in the serve process is told: it
learns of the commit from the database (SQLite ``PRAGMA data_version``,
PostgreSQL ``LISTEN``).

Run: ``python -m bench.bench_change_feed --changes 200`` (SQLite, and
PostgreSQL when ``--database-url`` or ``HASHFED_TEST_DATABASE_URL`` is set).
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from bench._serve import admin_context, free_port, start_serve

TARGET_P99_S = 1.0
LIST = "bench-node/feed"


def _settings(data: Path, url: str | None) -> Any:
    from config import load_settings

    return load_settings(data, database_url=url) if url else load_settings(data)


def fill(data: Path, url: str | None, n: int) -> None:
    """Initialise the node and a list of ``n`` sha256 in the database at ``url``."""
    from node.datadir import init_data_dir
    from node.node import Node

    init_data_dir(data, node_id="bench-node")
    node = Node.open(_settings(data, url))
    try:
        node.create_list(LIST, label="baseline", actor="bench")
        # One add: into an empty list it skips the presence check, which on a
        # fresh PostgreSQL table (no statistics yet) is a scan per batch.
        node.add(LIST, [("sha256", os.urandom(32).hex(), "A1") for _ in range(n)], actor="bench")
    finally:
        node.close()


def _client(data: Path, port: int) -> httpx.Client:
    return httpx.Client(
        base_url=f"https://127.0.0.1:{port}", verify=admin_context(data), timeout=10
    )


def _pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))]


def measure(data: Path, port: int, url: str | None, changes: int) -> dict[str, Any]:
    """Commit ``changes`` adds and as many removes from here; time each until the API agrees."""
    from node.node import Node

    node = Node.open(_settings(data, url), migrate=False)
    adds: list[float] = []
    removes: list[float] = []
    timeouts = 0
    try:
        with _client(data, port) as c:

            def hits(value: str) -> int:
                r = c.get(f"/api/v1/match/sha256/{value}")
                r.raise_for_status()
                return int(r.json()["hits"])

            def until(want: int, value: str) -> float | None:
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < 10.0:
                    if hits(value) == want:
                        return time.perf_counter() - t0
                    time.sleep(0.002)
                return None

            rng = random.Random(3)
            for i in range(changes):
                if timeouts > 5:
                    raise SystemExit(f"{timeouts} changes not reflected within 10 s: stopping")
                if i and i % 50 == 0:
                    print(f"  {i} of {changes} adds and removes", flush=True)
                h = os.urandom(32).hex()
                # A random phase against the follower's 50 ms poll: back-to-back
                # commits would lock onto its ticks and measure one phase only.
                time.sleep(rng.uniform(0, 0.06))
                node.add(LIST, [("sha256", h, "B2")], actor="bench")
                took = until(1, h)
                if took is None:
                    timeouts += 1
                else:
                    adds.append(took)
                time.sleep(rng.uniform(0, 0.06))
                node.remove(LIST, [("sha256", h)], actor="bench")
                took = until(0, h)
                if took is None:
                    timeouts += 1
                else:
                    removes.append(took)
            follower = c.get("/api/v1/status").json()["follower"]
    finally:
        node.close()
    both = adds + removes
    return {
        "n": len(both),
        "p50_ms": 1000 * _pct(both, 0.50),
        "p99_ms": 1000 * _pct(both, 0.99),
        "max_ms": 1000 * max(both),
        "add_p99_ms": 1000 * _pct(adds, 0.99),
        "remove_p99_ms": 1000 * _pct(removes, 0.99),
        "timeouts": timeouts,
        "lag_entries": follower["lag_entries"],
        "max_apply_us": follower["max_apply_us"],
    }


def run_backend(name: str, url: str | None, scale: int, changes: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"hashfed-bench-feed-{name}-"))
    data = tmp / "node"
    proc = None
    try:
        t0 = time.perf_counter()
        fill(data, url, scale)
        print(f"{name}: filled {scale:,} sha256 in {time.perf_counter() - t0:.1f}s", flush=True)
        port = free_port()
        proc, _ = start_serve(data, port, {"HASHFED_DATABASE_URL": url} if url else None)
        return measure(data, port, url, changes)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def _with_schema(base_url: str) -> tuple[str, Any]:
    """A fresh schema on the PostgreSQL at ``base_url``: its URL, and a drop function."""
    from sqlalchemy import create_engine, text

    schema = "bench_" + secrets.token_hex(6)
    admin = create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()

    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}options={quote(f'-csearch_path={schema}')}", drop


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", type=int, default=100_000, help="hashes in the list beforehand")
    ap.add_argument("--changes", type=int, default=100, help="adds (and as many removes)")
    ap.add_argument(
        "--database-url",
        default=os.environ.get("HASHFED_TEST_DATABASE_URL"),
        help="PostgreSQL to measure too (a fresh schema is made and dropped)",
    )
    args = ap.parse_args(argv)

    rows: list[dict[str, Any]] = []
    backends: list[tuple[str, str | None]] = [("SQLite", None)]
    if args.database_url:
        backends.append(("PostgreSQL", args.database_url))
    for name, base in backends:
        drop = None
        url = None
        if base is not None:
            url, drop = _with_schema(base)
        try:
            r = run_backend(name, url, args.scale, args.changes)
        finally:
            if drop is not None:
                drop()
        rows.append({"backend": name, **r})

    from rich.console import Console
    from rich.table import Table

    table = Table(
        "backend",
        "changes",
        "p50",
        "p99",
        "max",
        "p99 add / remove",
        "timeouts",
        "target",
        title=f"cross-process commit → matchable, list of {args.scale:,} sha256",
    )
    for r in rows:
        table.add_row(
            r["backend"],
            str(r["n"]),
            f"{r['p50_ms']:.1f} ms",
            f"{r['p99_ms']:.1f} ms",
            f"{r['max_ms']:.1f} ms",
            f"{r['add_p99_ms']:.1f} / {r['remove_p99_ms']:.1f} ms",
            str(r["timeouts"]),
            f"p99 ≤ {TARGET_P99_S * 1000:.0f} ms ({r['p99_ms'] / (TARGET_P99_S * 1000):.2f}×)",
        )
    Console(width=150).print(table)
    return rows


if __name__ == "__main__":
    main()
