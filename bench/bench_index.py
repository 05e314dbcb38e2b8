"""Benchmark the match indexes against their anchors; prints one table.

PDQ: our :class:`PdqIndex` against faiss ``IndexBinaryMultiHash(256, 16, 16)``
with ``nflip=1`` (what python-threatexchange/HMA use), faiss
``IndexBinaryFlat`` (exact; it also gives the ground truth for recall) and
numpy brute force. Three workloads at radius 31:
uniform codes with near-duplicate queries (10-30 bits flipped from a stored
code), the same codes with fresh random queries (no match), and clustered
codes (half of them in clusters of ~64 around shared centres) with
near-duplicate queries. The numpy brute force is the index's own scan (two
words first, the other two only for rows still in range), timed on 20
queries (5 at 10 M); the plain reference checks faiss's ground truth. Then
incremental adds into the built index with a background merger, and
ExactIndex (sha256) against a Python ``set`` of bytes.

Memory: ours is ``memory_bytes()`` (every array it holds); faiss is the RSS
growth over its build, which is rough (freed memory gets reused).
Single-query figures make one call per query; batched ones one call for all
(faiss and our index both use the machine's 2 cores there).

    python -m bench --scale 1000000
"""

from __future__ import annotations

import argparse
import gc
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from node.match.index import ExactIndex, PdqIndex, brute_force_pdq
from node.match.index._hamming import as_words, scan

RADIUS = 31
QUERIES = 500  # per workload, for batches and recall
SINGLE = 200  # per workload, one call each, for latency
Row = dict[str, Any]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _flip(
    codes: NDArray[np.uint8], rng: np.random.Generator, lo: int, hi: int
) -> NDArray[np.uint8]:
    """Each code with ``lo``..``hi`` distinct random bits flipped."""
    out = codes.copy()
    for i in range(len(out)):
        for b in rng.choice(256, size=int(rng.integers(lo, hi + 1)), replace=False):
            out[i, b // 8] ^= np.uint8(1 << (b % 8))
    return out


def _clustered(n: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    """Half uniform codes, half in clusters of ~64 codes within 16 bits of a centre."""
    centres = rng.integers(0, 256, (max(1, n // 128), 32), dtype=np.uint8)
    members = centres[rng.integers(0, len(centres), n - n // 2)]
    # Flip up to 16 bits per member, vectorised: 16 random positions, each kept or not.
    pos = rng.integers(0, 256, (len(members), 16))
    keep = rng.random((len(members), 16)) < rng.random((len(members), 1))
    for j in range(16):
        rows = np.flatnonzero(keep[:, j])
        members[rows, pos[rows, j] // 8] ^= (1 << (pos[rows, j] % 8)).astype(np.uint8)
    codes = np.concatenate([rng.integers(0, 256, (n // 2, 32), dtype=np.uint8), members])
    rng.shuffle(codes)
    return codes


def _latency(call: Callable[[int], object], count: int) -> tuple[float, float]:
    """Median and p99 in ms of ``call(i)`` for i < count (after 5 warm-up calls)."""
    for i in range(min(5, count)):
        call(i)
    times = []
    for i in range(count):
        t = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1e3
    return float(np.median(ms)), float(np.percentile(ms, 99))


def _faiss_pairs(lims: NDArray[np.int64], ids: NDArray[np.int64]) -> set[tuple[int, int]]:
    return {(q, int(i)) for q in range(len(lims) - 1) for i in ids[lims[q] : lims[q + 1]]}


def _recall(found: set[tuple[int, int]], truth: set[tuple[int, int]]) -> tuple[float, int]:
    """Share of true hits found (1.0 with none to find) and the number of false hits."""
    hit = len(found & truth)
    return (hit / len(truth) if truth else 1.0), len(found - truth)


def _bench_pdq(
    data: str, codes: NDArray[np.uint8], workloads: dict[str, NDArray[np.uint8]]
) -> list[Row]:
    import faiss  # the anchors; never a dependency of the package

    n = len(codes)
    refs = np.arange(n, dtype=np.int64)
    rows: list[Row] = []
    gc.collect()
    before = _rss()
    t = time.perf_counter()
    ours = PdqIndex.from_arrays(codes, refs)
    build = time.perf_counter() - t
    rss = _rss() - before
    flat = faiss.IndexBinaryFlat(256)
    t = time.perf_counter()
    flat.add(codes)
    flat_build = time.perf_counter() - t
    gc.collect()
    before = _rss()
    t = time.perf_counter()
    mih = faiss.IndexBinaryMultiHash(256, 16, 16)
    mih.nflip = RADIUS // 16
    mih.add(codes)
    mih_build = time.perf_counter() - t
    mih_rss = _rss() - before

    for work, queries in workloads.items():
        lims, _, ids = flat.range_search(queries, RADIUS + 1)  # faiss: d < R
        truth = _faiss_pairs(lims, ids)
        # The plain reference on 3 queries checks faiss's ground truth; the
        # timed brute force is the faster numpy scan the index falls back to.
        check = queries[:3]
        bq, br, _ = brute_force_pdq(codes, refs, check, RADIUS)
        checked = set(zip(bq.tolist(), br.tolist(), strict=True))
        assert checked == {p for p in truth if p[0] < len(check)}, "flat and numpy disagree"
        sub = as_words(queries[: 20 if n <= 1_000_000 else 5])
        t = time.perf_counter()
        scan(as_words(codes), sub, RADIUS)
        brute_ms = (time.perf_counter() - t) / len(sub) * 1e3
        label = f"{data}/{work}"

        t = time.perf_counter()
        q, r, _ = ours.search(queries, RADIUS)
        ours_batch = len(queries) / (time.perf_counter() - t)
        recall, extra = _recall(set(zip(q.tolist(), r.tolist(), strict=True)), truth)
        p50, p99 = _latency(partial(_search_one, ours, queries), SINGLE)
        rows.append(
            _row(
                label,
                "ours PdqIndex",
                build,
                ours.memory_bytes() / n,
                p50,
                p99,
                ours_batch,
                recall,
                extra,
                f"RSS +{rss / n:.0f} B/code",
            )
        )

        t = time.perf_counter()
        lims, _, ids = mih.range_search(queries, RADIUS + 1)
        mih_batch = len(queries) / (time.perf_counter() - t)
        recall, extra = _recall(_faiss_pairs(lims, ids), truth)
        p50, p99 = _single_faiss(faiss, mih, queries)
        rows.append(
            _row(
                label,
                "faiss MultiHash 16x16 nflip=1",
                mih_build,
                mih_rss / n,
                p50,
                p99,
                mih_batch,
                recall,
                extra,
                "B/code = RSS growth",
            )
        )

        t = time.perf_counter()
        flat.range_search(queries, RADIUS + 1)
        flat_batch = len(queries) / (time.perf_counter() - t)
        p50, p99 = _single_faiss(faiss, flat, queries)
        rows.append(
            _row(
                label,
                "faiss BinaryFlat",
                flat_build,
                32.0,
                p50,
                p99,
                flat_batch,
                1.0,
                0,
                "the ground truth",
            )
        )
        rows.append(
            _row(
                label,
                "numpy brute force",
                0.0,
                32.0,
                brute_ms,
                brute_ms,
                1e3 / brute_ms,
                1.0,
                0,
                f"numpy scan, timed on {len(sub)} queries",
            )
        )
    return rows


def _search_one(index: PdqIndex, queries: NDArray[np.uint8], i: int) -> object:
    return index.search(queries[i : i + 1], RADIUS)


def _single_faiss(faiss: Any, index: Any, queries: NDArray[np.uint8]) -> tuple[float, float]:
    """One query per call on one OpenMP thread: a single query cannot use more, and
    on a busy 2-core box the second thread's barrier only adds stalls."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return _latency(lambda i: index.range_search(queries[i : i + 1], RADIUS + 1), SINGLE)
    finally:
        faiss.omp_set_num_threads(threads)


def _row(
    work: str,
    index: str,
    build: float,
    bpc: float,
    p50: float,
    p99: float,
    batch: float,
    recall: float,
    extra: int,
    note: str,
) -> Row:
    return {
        "workload": work,
        "index": index,
        "build_s": build,
        "bytes_per_code": bpc,
        "p50_ms": p50,
        "p99_ms": p99,
        "batch_qps": batch,
        "recall": recall,
        "false_hits": extra,
        "note": note,
    }


def _bench_adds(n: int, rng: np.random.Generator) -> list[Row]:
    """Adds in pages of 1,000 (a sync page) into a built index, merged in the background.

    First as fast as add() goes; then paced at 100 k codes/s (the target rate)
    with a query after every page, to see what the delta costs queries.
    """
    index = PdqIndex.from_arrays(rng.integers(0, 256, (n, 32), dtype=np.uint8), np.arange(n))
    stop = threading.Event()
    merges: list[float] = []

    def merger() -> None:
        while not stop.is_set():
            if index.needs_merge:
                t = time.perf_counter()
                index.merge()
                merges.append(time.perf_counter() - t)
            else:
                time.sleep(0.005)

    thread = threading.Thread(target=merger)
    thread.start()
    new = rng.integers(0, 256, (max(100_000, n // 20), 32), dtype=np.uint8)
    t0 = time.perf_counter()
    for lo in range(0, len(new), 1000):
        index.add(new[lo : lo + 1000], np.arange(lo, lo + len(new[lo : lo + 1000])) + n)
    added = time.perf_counter() - t0
    while index.needs_merge:
        time.sleep(0.01)
    t = time.perf_counter()
    index.merge()
    settle = time.perf_counter() - t0
    unpaced = len(merges)
    paced = rng.integers(0, 256, (300_000, 32), dtype=np.uint8)
    lat: list[float] = []
    deltas: list[int] = []
    t0 = time.perf_counter()
    for page, lo in enumerate(range(0, len(paced), 1000)):
        index.add(paced[lo : lo + 1000], np.arange(1000))
        t = time.perf_counter()
        index.search(paced[lo : lo + 1])
        lat.append(time.perf_counter() - t)
        deltas.append(index._snap.total - index._snap.main)
        time.sleep(max(0.0, t0 + (page + 1) / 100 - time.perf_counter()))  # 100 pages/s
    stop.set()
    thread.join()
    ms = np.array(lat) * 1e3
    return [
        {
            "workload": f"add {len(new):,} in pages of 1,000",
            "index": "ours PdqIndex",
            "build_s": settle,
            "bytes_per_code": index.memory_bytes() / len(index),
            "p50_ms": float("nan"),
            "p99_ms": float("nan"),
            "batch_qps": len(new) / added,
            "recall": 1.0,
            "false_hits": 0,
            "note": f"adds/s; {len(new) / settle:,.0f}/s until merged (build_s); "
            f"{unpaced} background merges",
        },
        {
            "workload": "queries while adding 100 k/s",
            "index": "ours PdqIndex",
            "build_s": float(np.mean(merges[unpaced:] or [0])),
            "bytes_per_code": index.memory_bytes() / len(index),
            "p50_ms": float(np.median(ms)),
            "p99_ms": float(np.percentile(ms, 99)),
            "batch_qps": 1e3 / float(np.median(ms)),
            "recall": 1.0,
            "false_hits": 0,
            "note": f"build_s = mean merge; delta max {max(deltas):,} rows; "
            f"{len(merges) - unpaced} merges",
        },
    ]


def _bench_exact(n: int, rng: np.random.Generator) -> list[Row]:
    """sha256-width keys: ExactIndex against a Python set of bytes."""
    keys = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    nq = min(1_000_000, n)
    queries = np.concatenate(
        [
            keys[rng.integers(0, n, nq // 2)],
            rng.integers(0, 256, (nq - nq // 2, 32), dtype=np.uint8),
        ]
    )
    rows: list[Row] = []
    t = time.perf_counter()
    index = ExactIndex.from_arrays(32, keys, np.arange(n))
    build = time.perf_counter() - t
    t = time.perf_counter()
    for lo in range(0, nq, 10_000):
        index.lookup(queries[lo : lo + 10_000])
    batch = nq / (time.perf_counter() - t)
    p50, p99 = _latency(lambda i: index.lookup(queries[i : i + 1]), 5000)
    rows.append(
        {
            "workload": "sha256 exact",
            "index": "ours ExactIndex",
            "build_s": build,
            "bytes_per_code": index.memory_bytes() / n,
            "p50_ms": p50,
            "p99_ms": p99,
            "batch_qps": batch,
            "recall": 1.0,
            "false_hits": 0,
            "note": "batches of 10,000",
        }
    )
    gc.collect()
    before = _rss()
    t = time.perf_counter()
    as_bytes = [k.tobytes() for k in keys]
    members = set(as_bytes)
    set_build = time.perf_counter() - t
    set_bytes = _rss() - before
    del as_bytes
    qbytes = [k.tobytes() for k in queries]
    t = time.perf_counter()
    sum(map(members.__contains__, qbytes))
    set_batch = nq / (time.perf_counter() - t)
    p50, p99 = _latency(lambda i: queries[i].tobytes() in members, 5000)
    rows.append(
        {
            "workload": "sha256 exact",
            "index": "Python set of bytes",
            "build_s": set_build,
            "bytes_per_code": set_bytes / n,
            "p50_ms": p50,
            "p99_ms": p99,
            "batch_qps": set_batch,
            "recall": 1.0,
            "false_hits": 0,
            "note": "keys already bytes; RSS growth",
        }
    )
    t = time.perf_counter()
    fresh = rng.integers(0, 256, (200_000, 32), dtype=np.uint8)
    for lo in range(0, len(fresh), 1000):
        index.add(fresh[lo : lo + 1000], np.arange(1000))
    add_rate = len(fresh) / (time.perf_counter() - t)
    t = time.perf_counter()
    index.merge()
    rows.append(
        {
            "workload": "sha256 add 200,000 in pages of 1,000",
            "index": "ours ExactIndex",
            "build_s": time.perf_counter() - t,
            "bytes_per_code": index.memory_bytes() / len(index),
            "p50_ms": float("nan"),
            "p99_ms": float("nan"),
            "batch_qps": add_rate,
            "recall": 1.0,
            "false_hits": 0,
            "note": "adds/s; build_s = the merge after",
        }
    )
    return rows


def run(scale: int) -> list[Row]:
    """Every measurement at ``scale`` codes/keys, as table rows."""
    rng = np.random.default_rng(20_260_717)
    rows: list[Row] = []
    codes = rng.integers(0, 256, (scale, 32), dtype=np.uint8)
    near = _flip(codes[rng.integers(0, scale, QUERIES)], rng, 10, 30)
    fresh = rng.integers(0, 256, (QUERIES, 32), dtype=np.uint8)
    rows += _bench_pdq("uniform", codes, {"near-dup": near, "random": fresh})
    del codes
    gc.collect()
    clustered = _clustered(scale, rng)
    near = _flip(clustered[rng.integers(0, scale, QUERIES)], rng, 10, 30)
    rows += _bench_pdq("clustered", clustered, {"near-dup": near})
    del clustered
    gc.collect()
    rows += _bench_adds(scale, rng)
    gc.collect()
    rows += _bench_exact(scale, rng)
    return rows


def _ratio(row: Row, anchor: Row | None, key: str, *, higher_is_better: bool) -> str:
    """How many times better ``row`` is than ``anchor`` on ``key`` ("" for itself)."""
    if anchor is None or row is anchor or not row[key] or not anchor[key]:
        return ""
    x = row[key] / anchor[key] if higher_is_better else anchor[key] / row[key]
    return f"{x:.1f}x"


def _print(rows: list[Row], scale: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"hashfed indexes at {scale:,} codes (radius {RADIUS}; 2 cores)")
    for col in (
        "workload",
        "index",
        "build s",
        "B/code",
        "p50 ms",
        "p99 ms",
        "batch q/s",
        "recall",
        "false",
        "x MultiHash p50",
        "x MultiHash batch",
        "x Flat p50",
        "note",
    ):
        table.add_column(col, justify="left" if col in ("workload", "index", "note") else "right")
    anchors = {(r["workload"], r["index"]): r for r in rows}
    for r in rows:
        mh = anchors.get((r["workload"], "faiss MultiHash 16x16 nflip=1"))
        fl = anchors.get((r["workload"], "faiss BinaryFlat"))
        table.add_row(
            r["workload"],
            r["index"],
            f"{r['build_s']:.2f}",
            f"{r['bytes_per_code']:.1f}",
            f"{r['p50_ms']:.3f}",
            f"{r['p99_ms']:.3f}",
            f"{r['batch_qps']:,.0f}",
            f"{r['recall']:.4f}",
            str(r["false_hits"]),
            _ratio(r, mh, "p50_ms", higher_is_better=False),
            _ratio(r, mh, "batch_qps", higher_is_better=True),
            _ratio(r, fl, "p50_ms", higher_is_better=False),
            r["note"],
        )
    Console(width=220).print(table)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", type=int, default=1_000_000, help="codes/keys per index")
    args = parser.parse_args(argv)
    _print(run(args.scale), args.scale)


if __name__ == "__main__":
    main()
