"""Overlap detection benchmarks (in this process, SQLite in a temporary folder).

With N entries held (another owner's list: 80 % sha256, 20 % PDQ, as in
bench_sync), a new list arrives and the detector checks it:

1. Exact: new sha256 entries checked per second by :meth:`OverlapDetector.detect`
   (index lookups in batches, the other side's seq read for each hit),
   1 % of them overlapping. Also the whole batch path (log read, detect,
   record with the watermark) per second. Target: >= 1M new entries/s.
2. PDQ: new codes checked per second, batched, within distance 31, 1 % near
   duplicates 10 bits off. Target: >= 5,000 codes/s.
3. Apply with vs without detection: 1M entries appended in 64k pages (what a
   sync's apply writes: entries, content, state) while the follower applies
   them, once with the detector's thread running and once without. Target:
   within 20 %; detection trails, its backlog sampled while it does.

Run: ``python -m bench.bench_overlaps [--scale 1000000] [--sync 1000000]``.
Anchors measured in the same run: numpy sort of 1M uint64 and SQLite bulk
insert of 100k rows, so figures on a loaded machine can be compared.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crypto.merkle import CompactRange
from node.match.follower import LogFollower
from node.match.matcher import Matcher
from node.overlaps import OverlapDetector
from node.store import EntryTuple, ListRow, StateRow, Store

PAGE = 65_536
TARGET_EXACT = 1_000_000
TARGET_PDQ = 5_000
TARGET_SYNC_RATIO = 1.20


def _flip(code: bytes, bits: int, rng: np.random.Generator) -> bytes:
    arr = np.frombuffer(code, np.uint8).copy()
    for b in rng.choice(256, bits, replace=False):
        arr[b // 8] ^= 1 << (b % 8)
    return arr.tobytes()


class _List:
    """Appends to a list as the writer does (entries, content, state), in pages."""

    def __init__(self, store: Store, owner: str, name: str) -> None:
        self.store = store
        self.row = store.create_list(
            owner=owner, name=name, label="baseline", empty_range=CompactRange().to_bytes()
        )
        self.size = 0

    def append(self, keys: Sequence[tuple[str, str]], on_page: object = None) -> None:
        for i in range(0, len(keys), PAGE):
            part = keys[i : i + PAGE]
            now = int(time.time() * 1000)
            new: list[EntryTuple] = [
                (self.size + j, "add", t, v, "A1", now) for j, (t, v) in enumerate(part)
            ]
            self.store.append(
                list_id=self.row.id,
                expected_size=self.size,
                entries=new,
                adds=[(e[2], e[3], "A1", e[0]) for e in new],
                removes=[],
                new_state=StateRow(self.size + len(new), CompactRange().to_bytes(), 0),
            )
            self.size += len(new)
            if callable(on_page):
                on_page()


def _keys(n: int, kind: str) -> list[tuple[str, str]]:
    raw = os.urandom(32 * n)
    return [(kind, raw[32 * i : 32 * i + 32].hex()) for i in range(n)]


def anchors(work: Path) -> dict[str, float]:
    a = np.frombuffer(os.urandom(8 * 1_000_000), np.uint64)
    t = time.perf_counter()
    np.sort(a)
    sort_s = time.perf_counter() - t
    store = Store.open(f"sqlite:///{work / 'anchor.db'}")
    try:
        lst = _List(store, "anchor", "a")
        t = time.perf_counter()
        lst.append(_keys(100_000, "sha256"))
        ins = 100_000 / (time.perf_counter() - t)
    finally:
        store.close()
    return {"numpy_sort_1M_s": sort_s, "sqlite_append_rows_s": ins}


def detection(work: Path, held: int, new_exact: int, new_pdq: int) -> dict[str, float]:
    store = Store.open(f"sqlite:///{work / 'detect.db'}")
    try:
        rng = np.random.default_rng(1)
        n_pdq = held // 5
        theirs = _List(store, "nl-dhd", "held")
        held_exact = _keys(held - n_pdq, "sha256")
        held_pdq = _keys(n_pdq, "pdq")
        t = time.perf_counter()
        theirs.append(held_exact + held_pdq)
        build_s = time.perf_counter() - t
        follower = LogFollower(store, Matcher())
        t = time.perf_counter()
        follower.load()
        load_s = time.perf_counter() - t
        detector = OverlapDetector(
            store, follower.matcher, lists=follower.lists, applied=follower.watermark
        )
        detector.load()
        rows: dict[int, ListRow] = dict(follower.lists())
        mine = _List(store, "au-argos", "new")
        rows[mine.row.id] = mine.row
        # 1. exact: 1 % of the new entries are held by the other owner.
        k = new_exact // 100
        exact = _keys(new_exact - k, "sha256") + [held_exact[int(i)] for i in range(k)]
        entries = [(i, "add", t_, v, "A1", 0) for i, (t_, v) in enumerate(exact)]
        t, c = time.perf_counter(), time.process_time()
        found = detector.detect(mine.row, entries, rows)
        exact_s, exact_cpu = time.perf_counter() - t, time.process_time() - c
        assert len(found) == k, (len(found), k)
        # 2. PDQ: 1 % near duplicates, 10 bits off.
        kp = max(1, new_pdq // 100)
        codes = _keys(new_pdq - kp, "pdq") + [
            ("pdq", _flip(bytes.fromhex(held_pdq[i][1]), 10, rng).hex()) for i in range(kp)
        ]
        pentries = [(i, "add", t_, v, "A1", 0) for i, (t_, v) in enumerate(codes)]
        t, c = time.perf_counter(), time.process_time()
        pfound = detector.detect(mine.row, pentries, rows)
        pdq_s, pdq_cpu = time.perf_counter() - t, time.process_time() - c
        assert len(pfound) >= kp, (len(pfound), kp)
        # 1b. the whole batch path, log read and record included.
        path_n = min(new_exact, 262_144)
        mine.append(exact[:path_n])
        follower.check()
        t = time.perf_counter()
        checked = detector.run_until_idle(timeout=3600)
        path_s = time.perf_counter() - t
    finally:
        store.close()
    return {
        "held": held,
        "held_build_s": build_s,
        "index_load_s": load_s,
        "exact_new": new_exact,
        "exact_per_s": new_exact / exact_s,
        "exact_per_cpu_s": new_exact / exact_cpu,
        "pdq_held": n_pdq,
        "pdq_new": new_pdq,
        "pdq_per_s": new_pdq / pdq_s,
        "pdq_per_cpu_s": new_pdq / pdq_cpu,
        "path_entries": checked,
        "path_per_s": checked / path_s,
    }


def apply_run(work: Path, name: str, entries: int, *, detect: bool) -> dict[str, float]:
    store = Store.open(f"sqlite:///{work / f'{name}.db'}")
    try:
        other = _List(store, "nl-dhd", "held")
        shared = _keys(entries // 10, "sha256")
        other.append(shared)
        follower = LogFollower(store, Matcher())
        follower.load()
        detector = OverlapDetector(
            store, follower.matcher, lists=follower.lists, applied=follower.watermark
        )
        detector.load()
        detector.run_until_idle(timeout=3600)
        incoming = _List(store, "au-argos", "incoming")
        keys = _keys(entries - len(shared) // 10, "sha256") + shared[: len(shared) // 10]
        backlog: list[int] = []
        if detect:
            detector.start()
        t = time.perf_counter()
        incoming.append(
            keys, on_page=lambda: (follower.check(), backlog.append(detector.backlog()))
        )
        follower.check()
        apply_s = time.perf_counter() - t
        trail_s = 0.0
        if detect:
            t = time.perf_counter()
            while detector.backlog():
                time.sleep(0.05)
            trail_s = time.perf_counter() - t
            detector.stop()
    finally:
        store.close()
    return {
        "apply_s": apply_s,
        "trail_s": trail_s,
        "max_backlog": max(backlog or [0]),
        "found": detector.status()["overlaps_found"],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=1_000_000, help="entries held")
    ap.add_argument("--new", type=int, default=1_000_000, help="new exact entries checked")
    ap.add_argument("--new-pdq", type=int, default=20_000, help="new PDQ codes checked")
    ap.add_argument("--sync", type=int, default=1_000_000, help="entries applied (0: skip)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        anc = anchors(work)
        print(
            f"anchors: numpy sort 1M uint64 {anc['numpy_sort_1M_s']:.3f}s; "
            f"SQLite append {anc['sqlite_append_rows_s']:,.0f} rows/s"
        )
        d = detection(work, args.scale, args.new, args.new_pdq)
        print(
            f"held {d['held']:,} entries (built {d['held_build_s']:.1f}s, "
            f"index loaded {d['index_load_s']:.1f}s)"
        )
        print(
            f"exact: {d['exact_per_s']:,.0f} new entries/s wall, "
            f"{d['exact_per_cpu_s']:,.0f}/CPU-s "
            f"(target {TARGET_EXACT:,}: {'met' if d['exact_per_s'] >= TARGET_EXACT else 'NOT met'})"
        )
        print(
            f"pdq: {d['pdq_per_s']:,.0f} new codes/s wall, {d['pdq_per_cpu_s']:,.0f}/CPU-s, "
            f"against {d['pdq_held']:,} held "
            f"(target {TARGET_PDQ:,}: {'met' if d['pdq_per_s'] >= TARGET_PDQ else 'NOT met'})"
        )
        print(
            f"batch path (log read + detect + record): {d['path_per_s']:,.0f} entries/s "
            f"over {d['path_entries']:,}"
        )
        if args.sync:
            off = apply_run(work, "off", args.sync, detect=False)
            on = apply_run(work, "on", args.sync, detect=True)
            ratio = on["apply_s"] / off["apply_s"]
            print(
                f"apply {args.sync:,}: without detection {off['apply_s']:.1f}s, with "
                f"{on['apply_s']:.1f}s (x{ratio:.2f}, target <= x{TARGET_SYNC_RATIO}: "
                f"{'met' if ratio <= TARGET_SYNC_RATIO else 'NOT met'}); detection trailed "
                f"{on['trail_s']:.1f}s after, backlog peaked at {on['max_backlog']:,}, "
                f"{on['found']:,} overlaps"
            )


if __name__ == "__main__":
    main()
