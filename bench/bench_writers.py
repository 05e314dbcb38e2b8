"""Admin add throughput: 16 concurrent clients adding to one list over mutual TLS.

Starts a real ``hashfed serve`` process (SQLite in its data folder, and
PostgreSQL when ``--database-url`` or HASHFED_TEST_DATABASE_URL names one),
creates one list, then drives it from a separate load-generator process
(asyncio, raw HTTP/1.1 keep-alive over TLS with the admin's client
certificate): each request adds one new sha256. Writers queue on the list's
lock instead of being refused, so the figures to watch are adds/s (target
>= 500), p50/p99 latency and refusals (target 0). Afterwards the list must
hold every accepted hash exactly once.

Run: ``python -m bench.bench_writers --seconds 20`` (``python -m bench`` runs it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench._serve import admin_context, free_port, start_serve

TARGET_ADDS_PER_S = 500.0
LIST = "bench-node/adds"
PATH = b"/api/v1/lists/bench-node/adds/hashes"


# --- the load generator (runs in its own process) -----------------------------------------------


async def _client(
    port: int, ctx: ssl.SSLContext, k: int, deadline: float, lat: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1"
    )
    i = 0
    while time.perf_counter() < deadline:
        value = f"{k:04x}{i:012x}".ljust(64, "0")
        i += 1
        body = json.dumps({"hashes": [{"type": "sha256", "value": value}]}).encode()
        t0 = time.perf_counter()
        writer.write(
            b"POST " + PATH + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        lat.append(time.perf_counter() - t0)
        if status != 200:
            errors.append(status)
    writer.close()


def _load_worker(data: str, port: int, clients: int, seconds: float, out: Any) -> None:
    ctx = admin_context(Path(data))
    lat: list[float] = []
    errors: list[int] = []

    async def main() -> None:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(
            *[_client(port, ctx, k, deadline, lat, errors) for k in range(clients)]
        )

    asyncio.run(main())
    out.put((lat, errors))


def run_adds(data: Path, port: int, *, clients: int, seconds: float) -> dict[str, Any]:
    q: Any = mp.get_context("spawn").Queue()
    p = mp.get_context("spawn").Process(
        target=_load_worker, args=(str(data), port, clients, seconds, q)
    )
    t0 = time.perf_counter()
    p.start()
    lat, errors = q.get()
    p.join()
    elapsed = time.perf_counter() - t0
    lat.sort()
    ok = len(lat) - len(errors)
    return {
        "requests": len(lat),
        "adds_per_s": ok / seconds,
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else float("nan"),
        "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else float("nan"),
        "refused": len(errors),
        "ok": ok,
        "wall_s": elapsed,
    }


def _pg_schema(url: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text

    schema = "bench_" + secrets.token_hex(4)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    sep = "&" if "?" in url else "?"
    return schema, f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


def _drop_schema(url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


def _stored_adds(url: str) -> tuple[int, int]:
    from node.store import Store

    store = Store.open(url, migrate=False)
    try:
        row = store.get_list(owner="bench-node", name="adds")
        assert row is not None
        values = [e[3] for e in store.iter_entries(list_id=row.id)]
    finally:
        store.close()
    return len(values), len(set(values))


def bench_backend(
    backend: str, base_url: str | None, *, clients: int, seconds: float
) -> dict[str, Any]:
    from config import load_settings
    from node.datadir import init_data_dir
    from node.node import Node

    tmp = Path(tempfile.mkdtemp(prefix="hashfed-bench-writers-"))
    data = tmp / "node"
    schema = None
    env: dict[str, str] = {}
    proc = None
    try:
        init_data_dir(data, node_id="bench-node")
        if backend == "postgresql":
            assert base_url
            schema, url = _pg_schema(base_url)
            env["HASHFED_DATABASE_URL"] = url
        else:
            url = f"sqlite:///{(data / 'hashfed.db').resolve()}"
        node = Node.open(load_settings(data, database_url=url))
        try:
            node.create_list(LIST, label="baseline", actor="bench")
        finally:
            node.close()
        port = free_port()
        proc, _ = start_serve(data, port, env)
        row = run_adds(data, port, clients=clients, seconds=seconds)
        stored, distinct = _stored_adds(url)
        row |= {"backend": backend, "stored": stored, "duplicates": stored - distinct}
        return row
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if schema is not None and base_url:
            _drop_schema(base_url, schema)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=20.0, help="duration of the add load")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument(
        "--database-url",
        default=os.environ.get("HASHFED_TEST_DATABASE_URL"),
        help="PostgreSQL to run against too (default: $HASHFED_TEST_DATABASE_URL)",
    )
    args = ap.parse_args(argv)
    backends = ["sqlite"] + (["postgresql"] if args.database_url else [])
    rows = []
    for backend in backends:
        r = bench_backend(backend, args.database_url, clients=args.clients, seconds=args.seconds)
        rows.append(r)
        print(
            f"{backend:10s} {args.clients} clients, one list: {r['adds_per_s']:7.0f} adds/s "
            f"({r['adds_per_s'] / TARGET_ADDS_PER_S:.2f}x the {TARGET_ADDS_PER_S:.0f}/s target), "
            f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, refused {r['refused']}, "
            f"stored {r['stored']:,} of {r['ok']:,} accepted, duplicates {r['duplicates']}",
            flush=True,
        )
    if not args.database_url:
        print("postgresql: skipped (no --database-url / HASHFED_TEST_DATABASE_URL)")
    return rows


if __name__ == "__main__":
    main()
