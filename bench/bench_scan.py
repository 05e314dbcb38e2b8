"""Benchmark of the local scan: files/s on many small images, MB/s on a few large files.

Two folders are generated in a work directory:

* ``small/``: N small JPEG images (textured, all different), scanned with
  :func:`node.local.scan.scan` against a matcher that knows nothing, so the figure
  is walking + MD5/SHA-1/SHA-256 + decoding + PDQ + batching, in files/s;
* ``large/``: a few large files of random bytes, scanned the same way, in
  MB/s, next to ``sha256sum`` run on the same files (one process, as a user
  would run it, and one process per file).

The large files are read from the page cache (they were just written), for
both hashfed and sha256sum alike: the figures compare hashing, not disks.

    python -m bench.bench_scan                      # 10,000 images, 3 x 1 GB
    python -m bench.bench_scan --images 2000 --large-size 256M
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from node.local.matcher import Hit, Query
from node.local.results import ScanResult
from node.local.scan import scan


class NullMatcher:
    """Knows no hash: the benchmark measures the local side only."""

    description = "benchmark null matcher"

    def __init__(self) -> None:
        self.queries = 0
        self.calls = 0

    def match(self, queries: Sequence[Query], *, max_distance: int) -> list[list[Hit]]:
        self.calls += 1
        self.queries += len(queries)
        return [[] for _ in queries]


@dataclass
class Figures:
    """One measured scan."""

    files: int
    bytes: int
    seconds: float

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds


def parse_size(text: str) -> int:
    """``1G``, ``256M``, ``4096`` -> bytes (powers of 1024)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def make_images(folder: Path, count: int, size: int, seed: int = 0) -> int:
    """Write ``count`` different textured JPEGs of ``size`` x ``size``; returns bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    total = 0
    per_dir = 1000
    cells = max(size // 16, 2)
    for i in range(count):
        sub = folder / f"d{i // per_dir:04d}"
        if i % per_dir == 0:
            sub.mkdir(exist_ok=True)
        coarse = (rng.random((cells, cells, 3)) * 255).astype(np.uint8)
        img = Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR)
        path = sub / f"img{i:06d}.jpg"
        img.save(path, format="JPEG", quality=85)
        total += path.stat().st_size
    return total


def make_large(folder: Path, count: int, size: int) -> list[Path]:
    """Write ``count`` files of ``size`` random bytes (a 64 MiB random block repeated)."""
    folder.mkdir(parents=True, exist_ok=True)
    block = np.random.default_rng(1).integers(0, 256, 64 << 20, dtype=np.uint8).tobytes()
    paths = []
    for i in range(count):
        path = folder / f"large{i}.bin"
        with path.open("wb") as fh:
            left = size
            while left > 0:
                n = min(left, len(block))
                fh.write(block[:n])
                left -= n
        paths.append(path)
    return paths


def run_scan(folder: Path, state: Path, workers: int) -> tuple[Figures, ScanResult]:
    matcher = NullMatcher()
    start = time.perf_counter()
    result = scan(folder, matcher, state_file=state, workers=workers, progress=False)
    seconds = time.perf_counter() - start
    if result.errors:
        raise SystemExit(f"benchmark scan reported {len(result.errors)} errors")
    return Figures(len(result.files), result.bytes_total, seconds), result


def run_sha256sum(paths: Sequence[Path], *, parallel: bool) -> float:
    """Seconds for ``sha256sum`` over ``paths``: one process, or one per file at once."""
    start = time.perf_counter()
    if parallel:
        procs = [subprocess.Popen(["sha256sum", str(p)], stdout=subprocess.DEVNULL) for p in paths]
        if any(p.wait() != 0 for p in procs):
            raise SystemExit("sha256sum failed")
    else:
        subprocess.run(["sha256sum", *map(str, paths)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def warm(paths: Sequence[Path]) -> None:
    """Read the files once so every contender reads them from the page cache."""
    for p in paths:
        with p.open("rb") as fh:
            while fh.read(16 << 20):
                pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the figures (and JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10_000, help="small images (10,000)")
    parser.add_argument("--image-size", type=int, default=256, help="image side in px (256)")
    parser.add_argument("--large-count", type=int, default=3, help="large files (3)")
    parser.add_argument("--large-size", type=parse_size, default=1 << 30, help="e.g. 1G, 256M")
    parser.add_argument("--workers", type=int, default=2, help="hashing processes (2)")
    parser.add_argument("--workdir", type=Path, help="where to generate (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hashfed-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, object] = {
        "images": args.images,
        "image_size": args.image_size,
        "large_count": args.large_count,
        "large_size": args.large_size,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
    }
    try:
        if args.images:
            t = time.perf_counter()
            made = make_images(workdir / "small", args.images, args.image_size)
            print(
                f"generated {args.images:,} images ({made / 1e6:,.1f} MB) in "
                f"{time.perf_counter() - t:.1f} s",
                file=sys.stderr,
            )
            small, result = run_scan(workdir / "small", workdir / "small.state", args.workers)
            low = len(result.low_quality)
            out["small"] = {
                "files": small.files,
                "seconds": round(small.seconds, 2),
                "files_per_s": round(small.files_per_s, 1),
                "mb_per_s": round(small.mb_per_s, 1),
                "low_quality_pdq": low,
            }
            print(
                f"small images: {small.files:,} files in {small.seconds:.1f} s = "
                f"{small.files_per_s:,.0f} files/s ({small.mb_per_s:,.1f} MB/s), "
                f"{low} low-quality PDQ"
            )

        if args.large_count:
            paths = make_large(workdir / "large", args.large_count, args.large_size)
            warm(paths)
            large, _ = run_scan(workdir / "large", workdir / "large.state", args.workers)
            seq = run_sha256sum(paths, parallel=False)
            par = run_sha256sum(paths, parallel=True)
            total_mb = args.large_count * args.large_size / 1e6
            out["large"] = {
                "files": large.files,
                "seconds": round(large.seconds, 2),
                "hashfed_mb_per_s": round(large.mb_per_s, 1),
                "sha256sum_mb_per_s": round(total_mb / seq, 1),
                "sha256sum_parallel_mb_per_s": round(total_mb / par, 1),
                "ratio_vs_sha256sum": round(large.mb_per_s / (total_mb / seq), 2),
                "ratio_vs_sha256sum_parallel": round(large.mb_per_s / (total_mb / par), 2),
            }
            print(
                f"large files: {args.large_count} x {args.large_size / 1e6:,.0f} MB: "
                f"hashfed (md5+sha1+sha256) {large.mb_per_s:,.0f} MB/s; "
                f"sha256sum {total_mb / seq:,.0f} MB/s (one process), "
                f"{total_mb / par:,.0f} MB/s (one per file); "
                f"ratio {large.mb_per_s / (total_mb / seq):.2f} / "
                f"{large.mb_per_s / (total_mb / par):.2f}"
            )
        out["loadavg_after"] = os.getloadavg()
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(json.dumps(out))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
