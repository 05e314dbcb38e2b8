"""Federation benchmarks.

1. Catch-up: a peer pulls a 1,000,000-entry list it does not have from a real
   ``hashfed serve`` owner over mutual TLS, and applies it: fetch and parse
   every page, hash every leaf, recompute and compare the signed root, write
   entries + content + state + checkpoint in one transaction, update the
   in-memory index. Target: under 60 s.
2. Notify-to-matchable: owner and peer are both real processes; the owner
   adds one hash and publishes; the owner notifies the peer; the peer pulls;
   the clock stops when the peer's match API finds the hash. The peer pulls
   the owner only every hour otherwise. Target: median of 20 under 2 s.

Run: ``python -m bench.bench_sync [--entries 1000000] [--runs 20]``.
Anchors (research/perf.md): SQLite bulk ingest 75-175 k rows/s, leaf
verification ~1 µs per entry.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from config import PeerSettings, load_settings
from crypto.errors import PeerError
from crypto.pki import cert_fingerprint, load_certificate
from federation.client import AdminClient, PeerClient
from federation.peers import register_peer
from federation.sync import Syncer
from node.datadir import init_data_dir
from node.match.matcher import Matcher
from node.match.matcher import Query as MatchQuery
from node.node import Node

OWNER, PEER = "bench-owner", "bench-peer"
BIG, LIVE = f"{OWNER}/big", f"{OWNER}/live"
TARGET_CATCHUP_S = 60.0
TARGET_NOTIFY_S = 2.0
ANCHOR_INGEST_ROWS_S = 75_000  # research/perf.md: SQLite bulk insert, low end


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(data: Path) -> subprocess.Popen[bytes]:
    log = (data / "serve.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from api.cli import main; main()", "serve", "--data", str(data)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _admin(data: Path, port: int) -> AdminClient:
    return AdminClient(
        f"https://127.0.0.1:{port}",
        cert_file=data / "tls" / "node.crt",
        key_file=data / "tls" / "node.key",
        pinned_cert_files=[data / "tls" / "node.crt"],
    )


def _wait_up(data: Path, port: int, proc: subprocess.Popen[bytes]) -> float:
    t0 = time.monotonic()
    with _admin(data, port) as c:
        while time.monotonic() - t0 < 300:
            if proc.poll() is not None:
                raise SystemExit(f"{data.name} exited:\n{(data / 'serve.log').read_text()[-2000:]}")
            with contextlib.suppress(PeerError):  # not listening yet
                if c.request("GET", "/healthz").get("status") == "ok":
                    return time.monotonic() - t0
            time.sleep(0.1)
    raise SystemExit(f"{data.name} did not start")


class _TimedClient(PeerClient):
    """Counts time spent fetching and parsing pages (network + JSON + checks)."""

    fetch_s = 0.0
    pages = 0

    def entries(self, owner: str, name: str, *, start: int, limit: int) -> Any:
        t = time.perf_counter()
        try:
            return super().entries(owner, name, start=start, limit=limit)
        finally:
            _TimedClient.fetch_s += time.perf_counter() - t
            _TimedClient.pages += 1


def _setup(work: Path, entries: int) -> tuple[Path, int, Path, int]:
    owner_dir, peer_dir = work / OWNER, work / PEER
    owner_port, peer_port = _free_port(), _free_port()
    init_data_dir(owner_dir, node_id=OWNER, port=owner_port)
    init_data_dir(peer_dir, node_id=PEER, port=peer_port)
    for d, other in ((owner_dir, peer_dir), (peer_dir, owner_dir)):
        pinned = d / "tls" / "pinned"
        pinned.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(other / "tls" / "node.crt", pinned / f"{other.name}.crt")
    fpr = {
        d.name: cert_fingerprint(load_certificate(d / "tls" / "node.crt"))
        for d in (owner_dir, peer_dir)
    }
    owner_key = (owner_dir / "keys" / "signing.pub").read_text().strip()
    t0 = time.monotonic()
    owner = Node.open(load_settings(owner_dir))
    try:
        register_peer(
            owner.store,
            owner_dir,
            PeerSettings(
                node_id=PEER,
                url=f"https://127.0.0.1:{peer_port}",
                fingerprint=fpr[PEER],
                labels=["baseline"],
                subscribe=[],
            ),
            actor="bench",
        )
        owner.create_list(BIG, label="baseline", actor="bench")
        owner.create_list(LIVE, label="baseline", actor="bench")
        # 80 % sha256, 20 % PDQ: the index update includes the multi-index.
        n_pdq = entries // 5
        items = [("sha256", os.urandom(32).hex(), "A1") for _ in range(entries - n_pdq)]
        items += [("pdq", os.urandom(32).hex(), "B2") for _ in range(n_pdq)]
        owner.add(BIG, items, actor="bench")
        owner.add(LIVE, [("sha256", os.urandom(32).hex(), "A1")], actor="bench")
        owner.publish(BIG, actor="bench")
        owner.publish(LIVE, actor="bench")
    finally:
        owner.close()
    print(f"owner list of {entries:,} entries built in {time.monotonic() - t0:.1f}s")
    peer = Node.open(load_settings(peer_dir))
    try:
        register_peer(
            peer.store,
            peer_dir,
            PeerSettings(
                node_id=OWNER,
                url=f"https://127.0.0.1:{owner_port}",
                fingerprint=fpr[OWNER],
                signing_keys=[owner_key],
                subscribe=[f"{OWNER}/*"],
                interval_seconds=3600,  # only a notify makes it pull in part 2
            ),
            actor="bench",
        )
    finally:
        peer.close()
    return owner_dir, owner_port, peer_dir, peer_port


def catch_up(peer_dir: Path, entries: int) -> dict[str, float]:
    """Part 1, in this process: pull the big list with a live index attached."""
    node = Node.open(load_settings(peer_dir))
    try:
        matcher = Matcher()
        matcher.load(node.store)
        index_s = 0.0

        def apply(changes: Any) -> None:
            nonlocal index_s
            t = time.perf_counter()
            matcher.apply(changes.changes)
            index_s += time.perf_counter() - t

        node.on_change(apply)
        syncer = Syncer(node, client_factory=_TimedClient.for_peer)
        t0 = time.perf_counter()
        report = syncer.pull(OWNER)
        total = time.perf_counter() - t0
        if not report.ok:
            raise SystemExit(f"pull failed: {report.error_code}: {report.error}")
        applied = report.applied_entries
        t = time.perf_counter()
        matcher.merge()
        merge_s = time.perf_counter() - t
        # Spot check: hashes from the pulled list match in the index.
        row = node.get_list(BIG)
        sample = list(itertools.islice(node.store.iter_entries(list_id=row.id), 1000))
        queries = [MatchQuery(e[2], e[3]) for e in sample]
        hits = {h.query_index for h in matcher.match(queries, max_distance=0)}
        if len(hits) != len(queries):
            raise SystemExit(f"only {len(hits)} of {len(queries)} pulled hashes match")
    finally:
        node.close()
    return {
        "entries": applied,
        "total_s": total,
        "fetch_parse_s": _TimedClient.fetch_s,
        "pages": _TimedClient.pages,
        "index_s": index_s,
        "merge_s": merge_s,
        "verify_apply_s": total - _TimedClient.fetch_s - index_s,
    }


def notify_latency(owner: tuple[Path, int], peer: tuple[Path, int], runs: int) -> list[float]:
    """Part 2: both real processes; publish at the owner, poll the peer's match API."""
    out = []
    with _admin(*owner) as oc, _admin(*peer) as pc:
        for _ in range(runs):
            value = os.urandom(32).hex()
            oc.request(
                "POST",
                f"/api/v1/lists/{LIVE}/hashes",
                {"hashes": [{"type": "sha256", "value": value, "category": "A1"}]},
            )
            t0 = time.perf_counter()
            oc.request("POST", f"/api/v1/lists/{LIVE}/publish")
            while True:
                got = pc.request(
                    "POST", "/api/v1/match", {"hashes": [{"type": "sha256", "value": value}]}
                )
                if got["hits"]:
                    break
                if time.perf_counter() - t0 > 30:
                    raise SystemExit("a published hash did not reach the peer within 30 s")
                time.sleep(0.01)
            out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--keep", action="store_true", help="keep the data folders")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hashfed-bench-sync-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        owner_dir, owner_port, peer_dir, peer_port = _setup(work, args.entries)
        procs.append(_spawn(owner_dir))
        print(f"owner serving after {_wait_up(owner_dir, owner_port, procs[0]):.1f}s")

        r = catch_up(peer_dir, args.entries)
        rate = r["entries"] / r["total_s"]
        print(
            f"\n1. catch-up of {int(r['entries']):,} entries: {r['total_s']:.1f}s "
            f"(target < {TARGET_CATCHUP_S:.0f}s: {TARGET_CATCHUP_S / r['total_s']:.1f}x margin)"
        )
        print(f"   fetch + parse + check {int(r['pages'])} pages  {r['fetch_parse_s']:6.1f}s")
        print(f"   hash, verify root, fold, one transaction  {r['verify_apply_s']:6.1f}s")
        print(f"   index update (apply)                      {r['index_s']:6.1f}s")
        print(f"   index merge (background in a server)      {r['merge_s']:6.1f}s")
        print(
            f"   {rate:,.0f} entries/s end to end = {rate / ANCHOR_INGEST_ROWS_S:.2f}x the "
            f"SQLite bulk-ingest anchor ({ANCHOR_INGEST_ROWS_S:,} rows/s), verification included"
        )

        procs.append(_spawn(peer_dir))
        print(
            f"\npeer serving after {_wait_up(peer_dir, peer_port, procs[1]):.1f}s "
            f"(index of {args.entries:,} loaded)"
        )
        lat = notify_latency((owner_dir, owner_port), (peer_dir, peer_port), args.runs)
        med = statistics.median(lat)
        print(
            f"2. notify-to-matchable at a direct peer, {len(lat)} runs: median {med:.3f}s, "
            f"min {min(lat):.3f}s, max {max(lat):.3f}s "
            f"(target < {TARGET_NOTIFY_S:.0f}s: {TARGET_NOTIFY_S / med:.1f}x margin)"
        )
        ok = r["total_s"] < TARGET_CATCHUP_S and med < TARGET_NOTIFY_S
        print("\nPASS" if ok else "\nFAIL")
    finally:
        for p in procs:
            _stop(p)
        if args.keep:
            print(f"data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
