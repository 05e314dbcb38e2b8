"""``python -m bench --scale N``: every benchmark, each printing its anchor ratios.

``make bench`` runs it at 1,000,000 (a few minutes), ``make bench-full`` at
10,000,000. ``--only index,api`` picks some; each module also runs alone
(``python -m bench.bench_index --help``).
"""

from __future__ import annotations

import argparse
import importlib

# (module, arguments at a given scale)
BENCHES: list[tuple[str, object]] = [
    ("index", lambda n: ["--scale", str(n)]),
    ("import", lambda n: ["--scale", str(min(n, 1_000_000))]),
    ("api", lambda n: ["--scale", str(n), "--seconds", "60"]),
    ("writers", lambda n: ["--seconds", "20"]),
    ("sync", lambda n: ["--entries", str(min(n, 1_000_000))]),
    ("feeds", lambda n: ["--scale", str(min(n, 1_000_000))]),
    ("scan", lambda n: ["--images", "10000"]),
    ("change_feed", lambda n: ["--scale", str(min(n, 1_000_000)), "--changes", "200"]),
    ("timing", lambda n: ["--scale", str(min(n, 1_000_000)), "--rounds", "200"]),
    ("metrics", lambda n: ["--scale", str(min(n, 1_000_000))]),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=int, default=1_000_000)
    ap.add_argument(
        "--only", default="", help="comma-separated: " + ",".join(b for b, _ in BENCHES)
    )
    args = ap.parse_args()
    chosen = {x.strip() for x in args.only.split(",") if x.strip()}
    for name, make_args in BENCHES:
        if chosen and name not in chosen:
            continue
        print(f"\n=== bench_{name} ===", flush=True)
        module = importlib.import_module(f"bench.bench_{name}")
        module.main(make_args(args.scale))  # type: ignore[operator]


main()
