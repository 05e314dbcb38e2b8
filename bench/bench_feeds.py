"""Feed figures over TLS on 127.0.0.1: a full 1M-hash feed, and 1,000 changes on top.

Starts a real `hashfed serve` holding N hashes (90% sha256 in one list, 10%
PDQ in another, both under ``baseline``), a partner with a token, then:

- the full NDJSON feed streamed by a bare HTTP client (target: ≤ 10 s at 1M);
- a first ``hashfed pull`` (verify every entry, write the files), in-process;
- 1,000 changes (700 adds, 300 removes, published), then the incremental
  stream and an incremental pull (target: ≤ 1 s), in-process and as the CLI
  (which adds the interpreter's start-up);
- TAXII objects paged 1,000 at a time.

Wall time, and CPU time of this process (user) and of the server (user +
system, from /proc): the machine is shared, so CPU says more than wall time
when other jobs run.

Run: ``python -m bench.bench_feeds --scale 1000000``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench._serve import HASHFED, admin_context, free_port, start_serve

NODE = "bench-node"
FULL_TARGET_S = 10.0
INCREMENTAL_TARGET_S = 1.0


def fill_node(data: Path, n: int, rng: np.random.Generator) -> list[str]:
    """The node and its two lists, in-process; returns the sha256 values."""
    from config import load_settings
    from node.datadir import init_data_dir
    from node.node import Node

    init_data_dir(data, node_id=NODE)
    node = Node.open(load_settings(data))
    n_sha, n_pdq = n - n // 10, n // 10
    sha = [bytes(r).hex() for r in rng.integers(0, 256, size=(n_sha, 32), dtype=np.uint8)]
    pdq = [bytes(r).hex() for r in rng.integers(0, 256, size=(n_pdq, 32), dtype=np.uint8)]
    try:
        for name, htype, values in (("sha", "sha256", sha), ("pdq", "pdq", pdq)):
            node.create_list(f"{NODE}/{name}", label="baseline", actor="bench")
            node.add(f"{NODE}/{name}", [(htype, v, "A1") for v in values], actor="bench")
            node.publish(f"{NODE}/{name}", actor="bench")
    finally:
        node.close()
    return sha


def pinned(data: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(data / "tls" / "node.crt"))
    return ctx


def server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def measured(
    rows: list[dict[str, Any]], what: str, server: int, target: float | None = None, **extra: Any
) -> Iterator[dict[str, Any]]:
    row: dict[str, Any] = {"what": what, **extra}
    s0, r0, c0 = (
        server_cpu(server),
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    t0 = time.perf_counter()
    yield row
    row["wall_s"] = time.perf_counter() - t0
    r1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    row["client_user_s"] = (r1.ru_utime - r0.ru_utime) + (c1.ru_utime - c0.ru_utime)
    row["server_cpu_s"] = server_cpu(server) - s0
    if target is not None:
        row["target_s"] = target
    rows.append(row)
    line = (
        f"{what:42} {row['wall_s']:7.2f} s wall  {row['client_user_s']:6.2f} s client user"
        f"  {row['server_cpu_s']:6.2f} s server cpu"
    )
    if target is not None:
        line += f"   target ≤ {target:g} s: {row['wall_s'] / target:.2f}×"
    extras = {
        k: v
        for k, v in row.items()
        if k not in ("what", "wall_s", "client_user_s", "server_cpu_s", "target_s")
    }
    print(
        line + ("  " + " ".join(f"{k}={v}" for k, v in extras.items()) if extras else ""),
        flush=True,
    )


def stream(client: httpx.Client, since: str | None = None) -> tuple[int, int]:
    params = {"format": "ndjson"} | ({"since": since} if since else {})
    n = lines = 0
    with client.stream("GET", "/feeds/v1/baseline/entries", params=params) as r:
        assert r.status_code == 200, r.read()[:300]
        for chunk in r.iter_bytes(1 << 16):
            n += len(chunk)
            lines += chunk.count(b"\n")
    return n, lines


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", type=int, default=1_000_000, help="hashes in the feed")
    ap.add_argument("--changes", type=int, default=1_000, help="changes for the incremental pull")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)

    from federation.client import FeedClient, token_context
    from federation.feed_pull import load_trust, pull

    rng = np.random.default_rng(6)
    tmp = Path(tempfile.mkdtemp(prefix="hashfed-bench-feeds-"))
    data, out = tmp / "node", tmp / "out"
    rows: list[dict[str, Any]] = []
    proc = None
    try:
        t0 = time.perf_counter()
        sha = fill_node(data, args.scale, rng)
        print(f"filled {args.scale:,} hashes in {time.perf_counter() - t0:.1f}s", flush=True)
        port = free_port()
        proc, _ = start_serve(data, port, {"HASHFED_TLS_CLIENT_AUTH": "optional"})
        url = f"https://127.0.0.1:{port}"

        def run(*a: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [HASHFED, *a, "--data", str(data)], check=True, capture_output=True, text=True
            )

        run("principal", "add", "acme", "--role", "partner", "--labels", "baseline")
        token = run("token", "create", "acme").stdout.strip().split()[-1]
        vkey = (data / "keys" / "signing.pub").read_text().strip()
        trust = load_trust([f"{NODE}={vkey}"])
        headers = {"Authorization": f"Bearer {token}"}
        http = httpx.Client(base_url=url, verify=pinned(data), headers=headers, timeout=300)
        admin = httpx.Client(
            base_url=url,
            timeout=300,
            verify=admin_context(data),
        )

        def feed_client() -> FeedClient:
            ctx = token_context(pinned_cert_files=[data / "tls" / "node.crt"])
            return FeedClient(url, ssl_context=ctx, token=token)

        def do_pull() -> Any:
            with feed_client() as c:
                return pull(c, label="baseline", out_dir=out, trust=trust)

        with measured(
            rows, "full feed streamed (NDJSON, 1 client)", proc.pid, FULL_TARGET_S
        ) as row:
            row["bytes"], row["lines"] = stream(http)
        with measured(rows, "first pull (download+verify+files)", proc.pid) as row:
            result = do_pull()
            row["entries"] = result.entries

        def change(k: int) -> None:
            adds = [
                bytes(r).hex()
                for r in rng.integers(0, 256, size=(k - k * 3 // 10, 32), dtype=np.uint8)
            ]
            gone = [sha.pop() for _ in range(k * 3 // 10)]
            for path, body in (
                (
                    f"/api/v1/lists/{NODE}/sha/hashes",
                    {"hashes": [{"type": "sha256", "value": v} for v in adds]},
                ),
                (
                    f"/api/v1/lists/{NODE}/sha/remove",
                    {"hashes": [{"type": "sha256", "value": v} for v in gone]},
                ),
                (f"/api/v1/lists/{NODE}/sha/publish", None),
            ):
                r = admin.post(path, json=body)
                assert r.status_code < 300, r.text

        from federation.feed_pull import PullState

        change(args.changes)
        state = PullState.load(out)
        assert state is not None
        with measured(rows, f"incremental stream ({args.changes} changes)", proc.pid) as row:
            row["bytes"], row["lines"] = stream(http, state.cursor)
        with measured(
            rows,
            f"incremental pull ({args.changes} changes), in-process",
            proc.pid,
            INCREMENTAL_TARGET_S,
        ) as row:
            row["entries"] = do_pull().entries
        change(args.changes)
        with measured(rows, f"incremental pull ({args.changes} changes), CLI", proc.pid) as row:
            subprocess.run(
                [
                    HASHFED,
                    "pull",
                    url,
                    "--label",
                    "baseline",
                    "--out",
                    str(out),
                    "--pin",
                    str(data / "tls" / "node.crt"),
                    "--trust",
                    f"{NODE}={vkey}",
                ],
                check=True,
                capture_output=True,
                env={**os.environ, "HASHFED_FEED_TOKEN": token},
            )
        with measured(rows, "CLI start-up alone (hashfed pull --help)", proc.pid):
            subprocess.run([HASHFED, "pull", "--help"], check=True, capture_output=True)
        taxii_pages(rows, http, proc.pid)
        http.close()
        admin.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows


def taxii_pages(
    rows: list[dict[str, Any]], http: httpx.Client, server: int, pages: int = 20
) -> None:
    accept = {"Accept": "application/taxii+json;version=2.1"}
    [col] = http.get("/taxii2/hashfed/collections/", headers=accept).json()["collections"]
    url = f"/taxii2/hashfed/collections/{col['id']}/objects/"
    params: dict[str, Any] = {"limit": 1000}
    get: Callable[[], Any] = lambda: http.get(url, params=params, headers=accept).json()  # noqa: E731
    # The first request after removes indexes the list's removed keys (one log scan).
    with measured(rows, "TAXII: first page (indexes removals)", server):
        get()
    with measured(rows, f"TAXII: {pages} pages of 1,000 objects", server) as row:
        n = 0
        for _ in range(pages):
            env = get()
            n += len(env.get("objects", []))
            if not env.get("more"):
                break
            params["next"] = env["next"]
        row["objects"] = n
    print(f"{'':42} {n / row['wall_s']:,.0f} objects/s", flush=True)


if __name__ == "__main__":
    main()
