"""VICS (Project VIC) import: a synthetic 2.0 hash set of N media into a list, one transaction.

Each media record carries MD5, SHA1, a size and precategorisation as strings
and a file entry (as exports do), so the file is ~250 bytes a record. Timed:
parsing alone (streamed, nothing kept: the anchor, since the import parses
too), then ``Node.import_file`` (parse + one write transaction through the
list writer, streamed a page at a time), with the peak resident memory of
this process. Target: 1M media ≤ 30 s, set on a machine where the parse
alone took 5.0 s: ≤ 6.0× the parse alone, on any machine.

Run: ``python -m bench.bench_vics --scale 1000000``.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import shutil
import tempfile
import time
from pathlib import Path

TARGET_S = 30.0
# The parse alone where the target was set (docs/PERFORMANCE.md).
TARGET_PARSE_S = 5.0
V20 = "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/Default/$metadata#Media"


def synthetic(path: Path, n: int) -> None:
    with path.open("w") as fh:
        fh.write('{"@odata.context":"' + V20 + '","value":[')
        parts = []
        for i in range(n):
            b = i.to_bytes(8, "big")
            m = hashlib.md5(b).hexdigest().upper()  # noqa: S324 (test data)
            s = hashlib.sha1(b).hexdigest().upper()  # noqa: S324 (test data)
            parts.append(
                ("," if i else "") + f'{{"MediaID":{i + 1},"Category":1,"MD5":"{m}","SHA1":"{s}",'
                f'"MediaSize":"{1000 + i}","IsPrecategorized":"true",'
                f'"MediaFiles":[{{"FileName":"IMG_{i:08d}.jpg","FilePath":"C:\\\\case\\\\{i}"}}]}}'
            )
            if len(parts) >= 10_000:
                fh.write("".join(parts))
                parts = []
        fh.write("".join(parts) + "]}")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    from config import load_settings
    from node.datadir import init_data_dir
    from node.log.vics import read_vics
    from node.node import Node

    tmp = Path(tempfile.mkdtemp(prefix="hashfed-bench-vics-"))
    try:
        path = tmp / "set.json"
        t0 = time.perf_counter()
        synthetic(path, args.scale)
        size = path.stat().st_size
        print(
            f"wrote {args.scale:,} media, {size / 1e6:,.0f} MB in {time.perf_counter() - t0:.1f}s"
        )
        base = peak_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        n = sum(1 for _ in read_vics(path))
        parse_s, parse_cpu = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"parse (streamed, nothing kept): {n:,} hashes in {parse_s:.1f} s wall, "
            f"{parse_cpu:.1f} s CPU ({args.scale / parse_cpu:,.0f} media per CPU s), "
            f"peak RSS +{peak_mb() - base:.0f} MB"
        )
        init_data_dir(tmp / "node", node_id="bench-node")
        node = Node.open(load_settings(tmp / "node"))
        try:
            node.create_list("bench-node/vics", label="baseline", actor="bench")
            t0, c0 = time.perf_counter(), time.process_time()
            r = node.import_file("bench-node/vics", path, actor="bench")
            import_s, import_cpu = time.perf_counter() - t0, time.process_time() - c0
        finally:
            node.close()
        print(
            f"import (parse + one transaction): {r.appended:,} hashes in {import_s:.1f} s wall, "
            f"{import_cpu:.1f} s CPU of this process, "
            f"peak RSS {peak_mb():.0f} MB for a {size / 1e6:,.0f} MB file"
        )
        print(
            f"import / parse alone: {import_s / parse_s:.2f}× "
            f"(target ≤ {TARGET_S / TARGET_PARSE_S:.1f}×: {TARGET_S:g} s where the parse took "
            f"{TARGET_PARSE_S:g} s); {import_s:.1f} s against {TARGET_S:g} s on this machine"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
