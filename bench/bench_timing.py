"""What timing tells a caller: hidden hits against misses, uncleared lists against missing ones.

A real ``hashfed serve`` over mutual TLS. A partner cleared for ``baseline``
asks for hashes held only in a ``restricted`` list (hidden hits) and for
hashes held nowhere (misses), interleaved, many rounds; the fastest answer
per hash is the attacker's best estimate of the work done. A peer asks
federation for entries of a list it is not cleared for and of lists that do
not exist. Reported: the gap between the groups' medians of the fastest
answers, and the same gap between two halves of the misses (the noise).
Target: hidden hit vs miss below 50 µs and within the noise.

    python -m bench.bench_timing --scale 100000 --rounds 200
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench._serve import HASHFED, free_port, start_serve
from crypto.pki import create_self_signed, save_certificate
from crypto.pki import save_private_key as save_tls_key
from crypto.tls import client_context

PROBES = 40


def _prepare(data: Path, scale: int) -> tuple[list[str], list[str], Path]:
    from config import load_settings
    from node.datadir import init_data_dir
    from node.node import Node

    init_data_dir(data, node_id="bench-node")
    hidden = [os.urandom(32).hex() for _ in range(PROBES)]
    misses = [os.urandom(32).hex() for _ in range(2 * PROBES)]
    node = Node.open(load_settings(data))
    try:
        for name, label in (("open", "baseline"), ("secret", "restricted")):
            node.create_list(f"bench-node/{name}", label=label, actor="bench")
            values = [os.urandom(32).hex() for _ in range(scale)]
            if name == "secret":
                values += hidden
            node.add(f"bench-node/{name}", [("sha256", v, "A1") for v in values], actor="bench")
            node.publish(f"bench-node/{name}", actor="bench")
    finally:
        node.close()
    key, cert = create_self_signed("bench-partner")
    save_tls_key(key, data / "partner.key")
    save_certificate(cert, data / "partner.crt")
    for who, role in (("bench-partner", "partner"), ("bench-peer", "peer")):
        subprocess.run(
            [HASHFED, "principal", "add", who, "--role", role, "--labels", "baseline",
             "--cert", str(data / "partner.crt") if role == "partner" else str(_peer(data)),
             "--data", str(data)],
            check=True, capture_output=True,
        )  # fmt: skip
    return hidden, misses, data / "partner.crt"


def _peer(data: Path) -> Path:
    if not (data / "peer.crt").exists():
        key, cert = create_self_signed("bench-peer")
        save_tls_key(key, data / "peer.key")
        save_certificate(cert, data / "peer.crt")
    return data / "peer.crt"


def _client(data: Path, port: int, who: str) -> httpx.Client:
    ctx = client_context(
        data / f"{who}.crt", data / f"{who}.key", pinned_cert_files=[data / "tls/node.crt"]
    )
    return httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ctx, timeout=10)


def _fastest(client: httpx.Client, paths: list[str], rounds: int) -> dict[str, float]:
    best = {p: float("inf") for p in paths}
    for _ in range(rounds):
        for p in paths:
            t0 = time.perf_counter()
            client.get(p)
            best[p] = min(best[p], time.perf_counter() - t0)
    return best


def _median_us(best: dict[str, float], paths: list[str]) -> float:
    return 1e6 * statistics.median(best[p] for p in paths)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=int, default=100_000, help="hashes per list")
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="hashfed-bench-timing-"))
    data = base / "bench-node"
    proc = None
    try:
        hidden, misses, _ = _prepare(data, args.scale)
        port = free_port()
        proc, _ = start_serve(data, port)
        time.sleep(2.5)  # newly pinned certificates are trusted within 2 s
        hid = [f"/api/v1/match/sha256/{h}" for h in hidden]
        miss_a = [f"/api/v1/match/sha256/{h}" for h in misses[:PROBES]]
        miss_b = [f"/api/v1/match/sha256/{h}" for h in misses[PROBES:]]
        with _client(data, port, "partner") as c:
            best = _fastest(c, hid + miss_a + miss_b, args.rounds)
        fed_hidden = [f"/federation/v1/lists/bench-node/secret/entries?limit={i}" for i in (1, 2)]
        fed_none = [f"/federation/v1/lists/bench-node/none{i}/entries?limit=1" for i in (1, 2)]
        with _client(data, port, "peer") as c:
            fbest = _fastest(c, fed_hidden + fed_none, args.rounds)
        out = {
            "hidden_us": _median_us(best, hid),
            "miss_us": _median_us(best, miss_a + miss_b),
            "hidden_minus_miss_us": _median_us(best, hid) - _median_us(best, miss_a + miss_b),
            "noise_miss_a_minus_b_us": _median_us(best, miss_a) - _median_us(best, miss_b),
            "uncleared_minus_missing_us": _median_us(fbest, fed_hidden)
            - _median_us(fbest, fed_none),
        }
        print(
            f"match GET, fastest of {args.rounds} per hash, {args.scale:,} hashes per list:\n"
            f"  hidden hit {out['hidden_us']:.1f} µs, miss {out['miss_us']:.1f} µs, "
            f"difference {out['hidden_minus_miss_us']:+.1f} µs (target < 50 µs)\n"
            f"  noise (misses, half against half): {out['noise_miss_a_minus_b_us']:+.1f} µs\n"
            f"federation entries: uncleared minus missing list "
            f"{out['uncleared_minus_missing_us']:+.1f} µs",
            flush=True,
        )
        return out
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
