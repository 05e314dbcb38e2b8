"""The native MISP feed of a 1M-hash list over TLS on 127.0.0.1, as a MISP server fetches it.

A real ``hashfed serve`` holds N sha256 hashes in one ``baseline`` list, of
which ``--removed`` were removed again (sent as deleted attributes). A
partner with a token fetches, as MISP's "MISP Feed" type does:
``manifest.json``, the one event ``<uuid>.json`` (N attributes, streamed),
and ``hashes.csv``; each body in every encoding asked for (zstd, gzip,
identity), with its time, its bytes on the wire and the server's CPU. The
event is parsed with ``json`` and its attributes counted (every hash once,
the removed ones ``deleted``), then fetched once more with its ETag: 304.

Run: ``python -m bench.bench_misp --scale 1000000``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench._serve import free_port, partner_token, start_serve
from bench.bench_feeds import server_cpu
from bench.bench_taxii import fill


def fetch(client: httpx.Client, url: str, encoding: str, pid: int) -> tuple[bytes, dict[str, Any]]:
    c0 = server_cpu(pid)
    t0 = time.perf_counter()
    with client.stream("GET", url, headers={"Accept-Encoding": encoding}) as r:
        r.raise_for_status()
        body = r.read()
        wire = r.num_bytes_downloaded
        etag = r.headers.get("etag", "")
    return body, {
        "wall_s": time.perf_counter() - t0,
        "server_cpu_s": server_cpu(pid) - c0,
        "wire_mb": wire / 1e6,
        "body_mb": len(body) / 1e6,
        "etag": etag,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=int, default=1_000_000)
    ap.add_argument("--removed", type=int, default=1_000)
    ap.add_argument("--encodings", default="zstd,gzip,identity")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="hashfed-bench-misp-"))
    data = tmp / "node"
    rows: list[dict[str, Any]] = []
    proc = None
    try:
        t0 = time.perf_counter()
        fill(data, args.scale, args.removed, np.random.default_rng(16))
        print(f"filled {args.scale:,} hashes in {time.perf_counter() - t0:.1f} s", flush=True)

        token = partner_token(data)
        port = free_port()
        proc, _ = start_serve(data, port, {"HASHFED_TLS_CLIENT_AUTH": "optional"})
        tls = ssl.create_default_context(cafile=str(data / "tls" / "node.crt"))  # a token, no cert
        base = f"https://127.0.0.1:{port}/misp/v1/baseline"
        with httpx.Client(
            verify=tls, timeout=600, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            manifest, m = fetch(client, f"{base}/manifest.json", "identity", proc.pid)
            [event_id] = json.loads(manifest)
            print(f"manifest.json: {m['wall_s'] * 1000:.0f} ms", flush=True)
            for encoding in args.encodings.split(","):
                for what in (f"{event_id}.json", "hashes.csv"):
                    body, row = fetch(client, f"{base}/{what}", encoding, proc.pid)
                    row.update(what="event" if what.endswith(".json") else what, encoding=encoding)
                    if row["what"] == "event":
                        t = time.perf_counter()
                        attrs = json.loads(body)["Event"]["Attribute"]
                        row["parse_s"] = time.perf_counter() - t
                        row["attributes"] = len(attrs)
                        row["deleted"] = sum(1 for a in attrs if a.get("deleted"))
                        assert row["attributes"] == args.scale, row
                        del attrs
                    rows.append(row)
                    print(
                        f"{row['what']:>10} {encoding:>8}: {row['wall_s']:.1f} s, "
                        f"{row['wire_mb']:,.0f} MB on the wire ({row['body_mb']:,.0f} MB decoded), "
                        f"server CPU {row['server_cpu_s']:.1f} s"
                        + (
                            f"; {row['attributes']:,} attributes ({row['deleted']:,} deleted), "
                            f"json.loads {row['parse_s']:.1f} s"
                            if row["what"] == "event"
                            else ""
                        ),
                        flush=True,
                    )
            etag = next(r["etag"] for r in rows if r["what"] == "event")
            t = time.perf_counter()
            again = client.get(f"{base}/{event_id}.json", headers={"If-None-Match": etag})
            print(
                f"event again with its ETag: {again.status_code} in "
                f"{(time.perf_counter() - t) * 1000:.0f} ms",
                flush=True,
            )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


if __name__ == "__main__":
    main()
