"""Issue 2's figures: a 1,000,000-hash CSV imported and published, then verified.

Runs the real `hashfed` command on a fresh data folder (SQLite, the embedded
default), so what is measured is what an operator waits for.
Targets: import + publish < 60 s; `hashfed list verify` < 10 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HASHFED = str(Path(sys.executable).with_name("hashfed"))


def _run(*args: str) -> tuple[float, float]:
    """Wall and CPU (user+sys of the child) seconds of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([HASHFED, *args], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="hashfed-bench-import-"))
    rows: list[dict[str, Any]] = []
    try:
        data = str(tmp / "data")
        csv_path = tmp / "hashes.csv"
        with csv_path.open("w") as fh:
            for i in range(args.scale):
                fh.write(f"sha256,{os.urandom(32).hex()},{'A1' if i % 3 else 'B'}\n")
        _run("init", "--node-id", "bench", "--data", data)
        _run("list", "create", "bench/big", "--label", "baseline", "--data", data)
        wi, ci = _run("list", "import", "bench/big", str(csv_path), "--data", data)
        wp, cp = _run("list", "publish", "bench/big", "--data", data)
        # Three runs: one figure on a 2-core machine is at the mercy of its neighbours.
        verifies = [_run("list", "verify", "bench/big", "--data", data) for _ in range(3)]
        wv, cv = sorted(verifies)[1]
        rows = [
            {"figure": f"import {args.scale:,} hashes", "wall": wi, "cpu": ci, "target": ""},
            {"figure": "publish (sign checkpoint)", "wall": wp, "cpu": cp, "target": ""},
            {"figure": "import + publish", "wall": wi + wp, "cpu": ci + cp, "target": "< 60 s"},
            {"figure": "list verify (median of 3)", "wall": wv, "cpu": cv, "target": "< 10 s"},
            *(
                {"figure": f"  verify run {i}", "wall": w, "cpu": c, "target": ""}
                for i, (w, c) in enumerate(verifies, 1)
            ),
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from rich.console import Console
    from rich.table import Table

    table = Table("figure", "wall s", "cpu s", "target", title="Import, publish, verify (SQLite)")
    for r in rows:
        table.add_row(r["figure"], f"{r['wall']:.1f}", f"{r['cpu']:.1f}", r["target"])
    Console().print(table)
    return rows


if __name__ == "__main__":
    main()
