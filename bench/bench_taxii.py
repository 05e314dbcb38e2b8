"""TAXII 2.1 paging over TLS on 127.0.0.1, driven by the OASIS ``taxii2-client``.

A real ``hashfed serve`` holds N sha256 hashes in one ``baseline`` list, of
which ``--removed`` were removed again (so the feed has revocations and the
server must know each removed key's history). The client pages the whole
collection with ``as_pages(per_request=1000)`` (target: 1M in ≤ 60 s), and
each page is timed: the first one is *cold* (a server just started, no
cache), and every page must take ≤ 1 s. Then the same with
``Accept-Encoding: identity`` and ``gzip`` forced (bench_misp gives the
bytes on the wire of each encoding).

Run: ``python -m bench.bench_taxii --scale 1000000``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._serve import free_port, partner_token, start_serve
from bench.bench_feeds import server_cpu

NODE = "bench-node"
TOTAL_TARGET_S = 60.0
PAGE_TARGET_S = 1.0


def fill(data: Path, n: int, removed: int, rng: np.random.Generator) -> None:
    from config import load_settings
    from node.datadir import init_data_dir
    from node.node import Node

    init_data_dir(data, node_id=NODE)
    node = Node.open(load_settings(data))
    sha = [bytes(r).hex() for r in rng.integers(0, 256, size=(n, 32), dtype=np.uint8)]
    try:
        name = f"{NODE}/sha"
        node.create_list(name, label="baseline", actor="bench")
        node.add(name, [("sha256", v, "A1") for v in sha], actor="bench")
        node.publish(name, actor="bench")
        if removed:
            node.remove(
                name, [("sha256", v) for v in sha[:: max(1, n // removed)][:removed]], actor="bench"
            )
            node.publish(name, actor="bench")
    finally:
        node.close()


def page_all(url: str, data: Path, token: str, encoding: str | None) -> dict[str, Any]:
    import requests
    from taxii2client.v21 import Server, as_pages

    os.environ.pop("REQUESTS_CA_BUNDLE", None)
    os.environ.pop("CURL_CA_BUNDLE", None)
    server = Server(
        f"{url}/taxii2/", user="acme", password=token, verify=str(data / "tls" / "node.crt")
    )
    if encoding is not None:
        server._conn.session.headers["Accept-Encoding"] = encoding
    [root] = server.api_roots
    [col] = root.collections
    times: list[float] = []
    n = revoked = 0
    t0 = time.perf_counter()
    last = t0
    for env in as_pages(col.get_objects, per_request=1000):
        now = time.perf_counter()
        times.append(now - last)
        objs = env.get("objects", [])
        n += sum(1 for o in objs if o["type"] == "indicator")
        revoked += sum(1 for o in objs if o.get("revoked"))
        last = time.perf_counter()
    total = time.perf_counter() - t0
    del requests
    return {
        "objects": n,
        "revoked": revoked,
        "wall_s": total,
        "pages": len(times),
        "first_page_s": times[0],
        "max_page_s": max(times),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=int, default=1_000_000)
    ap.add_argument("--removed", type=int, default=1_000)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--encodings", default="default,identity,gzip")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(16)
    tmp = Path(tempfile.mkdtemp(prefix="hashfed-bench-taxii-"))
    data = tmp / "node"
    rows: list[dict[str, Any]] = []
    proc = None
    try:
        t0 = time.perf_counter()
        fill(data, args.scale, args.removed, rng)
        print(
            f"filled {args.scale:,} hashes ({args.removed:,} removed) in "
            f"{time.perf_counter() - t0:.1f}s",
            flush=True,
        )

        token = partner_token(data)
        for encoding in args.encodings.split(","):
            encoding = None if encoding == "default" else encoding
            port = free_port()
            proc, _ = start_serve(data, port, {"HASHFED_TLS_CLIENT_AUTH": "optional"})
            c0, u0 = server_cpu(proc.pid), time.process_time()
            row = page_all(f"https://127.0.0.1:{port}", data, token, encoding)
            row["server_cpu_s"] = server_cpu(proc.pid) - c0
            row["client_cpu_s"] = time.process_time() - u0
            row["encoding"] = encoding or "client default"
            rows.append(row)
            print(
                f"TAXII {row['encoding']:>14}: {row['objects']:,} indicators "
                f"({row['revoked']:,} revoked) in {row['wall_s']:.1f} s "
                f"(target ≤ {TOTAL_TARGET_S:g} s: {row['wall_s'] / TOTAL_TARGET_S:.2f}×), "
                f"{row['pages']} pages, first (cold) {row['first_page_s']:.2f} s, "
                f"slowest {row['max_page_s']:.2f} s (target ≤ {PAGE_TARGET_S:g} s); CPU: server "
                f"{row['server_cpu_s']:.1f} s, client {row['client_cpu_s']:.1f} s",
                flush=True,
            )
            proc.terminate()
            proc.wait(timeout=30)
            proc = None
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows


if __name__ == "__main__":
    main()
