"""Index segments: a process starts from one, never trusts a bad one, swaps to newer ones,
and a merge killed at any step leaves a folder a new process starts from correctly.
Every answer is checked against a brute-force fold of the log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from node.match.follower import LogFollower
from node.match.index.segment import (
    SegmentError,
    generations,
    open_segment,
    segment_name,
    write_segment,
)
from node.match.index.segment_merge import merge_lock
from node.match.matcher import Matcher
from node.match.segments import SegmentManager
from node.store import Store
from tests.unit.node._segment_data import Writer, answers, brute_force, queries

ROOT = Path(__file__).resolve().parents[3]


def _manager(store: Store, folder: Path, **kw: object) -> SegmentManager:
    return SegmentManager(folder, store, LogFollower(store, Matcher()), **kw)  # type: ignore[arg-type]


def _filled(store: Store, n: int = 600) -> list[Writer]:
    writers = [Writer(store, "one", 1), Writer(store, "two", 2)]
    for w in writers:
        w.add_random(n)
        w.remove_some(n // 10)
    return writers


def _check(m: SegmentManager, writers: list[Writer]) -> None:
    qs = queries(writers)
    assert answers(m.follower.matcher, qs) == brute_force(writers, qs)


def test_a_start_from_a_segment_equals_brute_force(store: Store, tmp_path: Path) -> None:
    writers = _filled(store)
    first = _manager(store, tmp_path)
    first.load()
    assert first.stats["started_from"] == "database"
    assert first.merge()
    for w in writers:  # past the segment: the new process's delta
        w.add_random(50)
        w.remove_some(30)
    second = _manager(store, tmp_path)
    second.load()
    assert second.stats["started_from"] == "segment"
    _check(second, writers)
    assert second.follower.status()["lag_entries"] == 0


def _segment_then(store: Store, tmp_path: Path) -> tuple[list[Writer], Path]:
    writers = _filled(store, 200)
    m = _manager(store, tmp_path)
    m.load()
    m.merge()
    (gen,) = generations(tmp_path)
    return writers, tmp_path / segment_name(gen)


@pytest.mark.parametrize("where", ["magic", "header", "array", "truncated", "appended"])
def test_a_corrupt_segment_is_rebuilt_not_trusted(store: Store, tmp_path: Path, where: str) -> None:
    writers, path = _segment_then(store, tmp_path)
    data = bytearray(path.read_bytes())
    if where == "magic":
        data[0] ^= 1
    elif where == "header":
        data[60] ^= 1
    elif where == "array":
        data[len(data) - 100] ^= 0x40
    elif where == "truncated":
        del data[len(data) - 4096 :]
    else:
        data += b"\0" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(SegmentError):
        open_segment(path, database_id=store.database_id())
    m = _manager(store, tmp_path)
    m.load()
    assert m.stats["started_from"] == "database"
    assert m.stats["rejected"] == 1
    _check(m, writers)


def test_a_foreign_segment_is_rebuilt_not_trusted(store: Store, tmp_path: Path) -> None:
    other = Store.open(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        # Another database with a list of the same id and name, other content.
        foreign_writers = [Writer(other, "one", 99)]
        foreign_writers[0].add_random(300)
        f = _manager(other, tmp_path / "segments")
        f.load()
        f.merge()
    finally:
        other.close()
    writers = _filled(store, 200)
    m = _manager(store, tmp_path / "segments")
    m.load()
    assert m.stats["started_from"] == "database"
    assert "another database" in m.stats["last_rejected"]
    _check(m, writers)


def test_a_segment_ahead_of_the_log_is_rebuilt_not_trusted(store: Store, tmp_path: Path) -> None:
    writers = _filled(store, 200)
    # Right database, but it claims more of a list's log than exists (a restored backup).
    write_segment(
        tmp_path,
        5,
        database_id=store.database_id(),
        watermarks={writers[0].row.id: writers[0].size + 10},
        categories=[],
        indexes={},
    )
    m = _manager(store, tmp_path)
    m.load()
    assert m.stats["started_from"] == "database"
    _check(m, writers)


def test_every_process_swaps_to_a_newer_generation(store: Store, tmp_path: Path) -> None:
    writers = _filled(store, 300)
    a, b = _manager(store, tmp_path, merge_entries=100), _manager(store, tmp_path)
    a.load()
    a.merge()
    b.load()
    assert b.generation == a.generation == 1
    for w in writers:
        w.add_random(80)
        w.remove_some(20)
    a.follower.check()
    b.follower.check()
    a.tick()  # backlog >= 100: writes generation 2
    assert a.generation == 2
    assert generations(tmp_path) == [2]
    for w in writers:
        w.add_random(10)
    b.follower.check()
    b.tick()
    assert b.generation == 2
    assert b.stats["swaps"] == 2 - 1
    _check(b, writers)
    a.follower.check()
    _check(a, writers)


def test_only_one_merger_at_a_time(store: Store, tmp_path: Path) -> None:
    _filled(store, 50)
    m = _manager(store, tmp_path)
    m.load()
    with merge_lock(tmp_path) as held:
        assert held
        assert not m.merge()  # someone else merges
    assert m.merge()


def test_a_merge_while_queries_run_always_answers_the_brute_force(
    store: Store, tmp_path: Path
) -> None:
    writers = _filled(store, 800)
    m = _manager(store, tmp_path)
    m.load()
    m.merge()
    for w in writers:
        w.add_random(100)
        w.remove_some(60)
    m.follower.check()
    qs = queries(writers)
    want = brute_force(writers, qs)
    stop = threading.Event()
    bad: list[int] = []
    rounds = [0]

    def ask() -> None:
        while not stop.is_set():
            if answers(m.follower.matcher, qs) != want:
                bad.append(rounds[0])
            rounds[0] += 1

    t = threading.Thread(target=ask)
    t.start()
    try:
        for _ in range(3):
            assert m.merge()
    finally:
        stop.set()
        t.join()
    assert rounds[0] > 0
    assert not bad
    assert m.generation == 4


# --- crash during a merge, with real processes ------------------------------------------

_CRASHER = """
import os, signal, sys
from pathlib import Path
from node.match.follower import LogFollower
from node.match.matcher import Matcher
from node.match.segments import SegmentManager
from node.store import Store
from tests.unit.node._segment_data import Writer
url, folder, step = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
store = Store.open(url)
def hook(name):
    if name == step:
        os.kill(os.getpid(), signal.SIGKILL)
m = SegmentManager(folder, store, LogFollower(store, Matcher()), on_step=hook)
m.load()
for w in (Writer(store, "one", 11), Writer(store, "two", 12)):
    w.add_random(40)
    w.remove_some(5)
m.follower.check()
m.merge()
"""

_FAST_STEPS = ["open", "array-2", "written", "synced", "renamed"]
_ALL_STEPS = [*_FAST_STEPS, "array-0", "array-5", "array-9", "array-14", "done", "never"]


def _crash_case(store: Store, tmp_path: Path, step: str) -> None:
    url = store.shared_url
    assert url is not None
    _filled(store, 200)
    first = _manager(store, tmp_path)
    first.load()
    first.merge()
    proc = subprocess.run(
        [sys.executable, "-c", _CRASHER, url, str(tmp_path), step],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=120,
    )
    if step == "never":
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    else:
        assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    writers = [Writer(store, "one", 1), Writer(store, "two", 2)]
    after = _manager(store, tmp_path)
    after.load()
    assert after.stats["rejected"] == 0
    _check(after, writers)
    assert after.merge()  # and the next merge cleans up after the crash
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert len(generations(tmp_path)) == 1
    _check(after, writers)


@pytest.mark.parametrize("step", _FAST_STEPS)
def test_a_merge_killed_at_any_step_leaves_a_node_that_starts_correctly(
    store: Store, tmp_path: Path, step: str
) -> None:
    _crash_case(store, tmp_path, step)


@pytest.mark.slow
@pytest.mark.parametrize("step", _ALL_STEPS)
def test_a_merge_killed_at_many_more_steps(store: Store, tmp_path: Path, step: str) -> None:
    _crash_case(store, tmp_path, step)
