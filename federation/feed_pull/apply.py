"""Applying a verified pull: per-list files, then the output files, then the state, last.

Nothing is written outside ``DIR/.hashfed/`` before every check passed, and
the state file is replaced last, so a pull killed at any point leaves a
state the next pull resumes from; a marker written before the first output
file is replaced makes that next pull rebuild every output file from the
per-list files, so it ends with exactly the files of an uninterrupted pull.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from federation.feed_pull.files import SortedFile, merge, new_file, splice, union
from federation.feed_pull.state import WORK_DIR, ListState, PullState, atomic_write
from federation.feed_pull.verify import Verified

__all__ = ["apply"]


def _splice_is_cheaper(changes: int, lines: int) -> bool:
    # A splice costs a binary search (~20 probes) per change; a merge one step per line.
    return changes * 32 < lines


def apply(
    out_dir: Path,
    old: PullState | None,
    verified: dict[str, Verified],
    *,
    url: str,
    label: str,
    cursor: str,
    rebuild: bool,
) -> tuple[PullState, list[str]]:
    work = out_dir / WORK_DIR
    gen = (old.generation if old else 0) + 1
    old_lists = old.lists if old else {}
    touched: dict[str, set[bytes] | None] = {}  # type -> changed values (None: rebuild it)
    dropped = sorted(set(old_lists) - set(verified))
    for name in dropped:
        for t in old_lists[name].files:
            touched[t] = None
    new_lists: dict[str, ListState] = {}
    for name, v in verified.items():
        prev = old_lists.get(name)
        files = dict(prev.files) if prev is not None else {}
        counts = dict(prev.counts) if prev is not None else {}
        owner, lname = name.split("/", 1)
        for htype, ch in sorted(v.changes.items()):
            rel = f"{WORK_DIR}/lists/{owner}/{lname}/{htype}.{gen}.txt"
            old_path = out_dir / files[htype] if htype in files else None
            old_count = counts.get(htype, 0)
            small = ch.small and _splice_is_cheaper(len(ch), old_count)
            with new_file(out_dir / rel) as fh:
                if old_path is None or small:
                    count = splice(old_path, ch.items(), fh, old_count)
                else:
                    count = merge(old_path, ch.items(), fh)
            if count:
                files[htype], counts[htype] = rel, count
            else:
                files.pop(htype, None)
                counts.pop(htype, None)
            seen = touched.get(htype, set())
            if seen is not None and small and old_path is not None:
                seen.update(v for v, _p in ch.items())
                touched[htype] = seen
            else:
                touched[htype] = None
        note, ts = v.checkpoint, v.timestamp
        if prev is not None and prev.size == v.size and prev.timestamp > ts:
            note, ts = prev.checkpoint, prev.timestamp  # never step back to an older note
        new_lists[name] = ListState(v.size, v.compact_range, note, ts, files, counts)

    outputs = dict(old.outputs) if old else {}
    all_types = {t for ls in new_lists.values() for t in ls.files} | set(outputs)
    # A missing output file (deleted by hand) is rebuilt even when nothing changed.
    missing = {t for t in all_types if not (out_dir / f"{t}.txt").exists()}
    todo = {
        t: (None if rebuild or t in missing else touched.get(t))
        for t in all_types
        if rebuild or t in touched or t in missing
    }
    marker = work / "pending"
    if todo:
        atomic_write(marker, f"{gen}\n".encode())
    for htype in sorted(todo):
        holders = [
            (out_dir / ls.files[htype], ls.counts[htype])
            for ls in new_lists.values()
            if htype in ls.files
        ]
        target = out_dir / f"{htype}.txt"
        keys = todo[htype]
        with new_file(target) as fh:
            if not holders:
                count = 0
            elif len(holders) == 1:
                with holders[0][0].open("rb") as src:
                    shutil.copyfileobj(src, fh, 1 << 20)
                count = holders[0][1]
            elif (
                keys is not None
                and target.exists()
                and _splice_is_cheaper(len(keys), outputs.get(htype, 0))
            ):
                lookups = [SortedFile(p) for p, _c in holders]
                try:
                    union_changes = ((k, any(k in s for s in lookups)) for k in sorted(keys))
                    count = splice(target, union_changes, fh, outputs.get(htype, 0))
                finally:
                    for s in lookups:
                        s.close()
            else:
                count = union([p for p, _c in holders], fh)
        outputs[htype] = count
    state = PullState(url, label, cursor, gen, new_lists, outputs)
    state.save(out_dir)
    marker.unlink(missing_ok=True)
    _collect_garbage(out_dir, state)
    return state, dropped


def _collect_garbage(out_dir: Path, state: PullState) -> None:
    """Delete per-list files no longer referenced (older generations, dropped lists)."""
    keep = {out_dir / f for ls in state.lists.values() for f in ls.files.values()}
    lists_dir = out_dir / WORK_DIR / "lists"
    if not lists_dir.is_dir():
        return
    for path in sorted(lists_dir.rglob("*"), reverse=True):
        if path.is_file() and path not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
