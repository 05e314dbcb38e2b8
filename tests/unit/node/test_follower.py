"""The log follower: whatever order and chunking it applies the log in, the
matcher ends where a brute-force fold of the whole log ends; and it sees
commits made through another engine (another process) on the same database."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from crypto.merkle import CompactRange
from node.log.lists import ContentChange, content_delta, fold
from node.match.follower import LogFollower, net_changes
from node.match.matcher import Matcher, Query
from node.store import EntryTuple, StateRow, Store

# serial: it measures time (see tests/conftest.py).
pytestmark = pytest.mark.serial

# A small pool, so logs re-add, re-remove and share values between lists.
_POOL = [("sha256", os.urandom(32).hex()) for _ in range(5)] + [
    ("pdq", os.urandom(32).hex()) for _ in range(3)
]
_CATS = ("A1", "B2")

# One log op: (op, pool index, category index).
_op = st.tuples(
    st.sampled_from(("add", "remove")), st.integers(0, len(_POOL) - 1), st.integers(0, 1)
)


def _entries(ops: Sequence[tuple[str, int, int]], base: int = 0) -> list[EntryTuple]:
    return [
        (base + i, op, _POOL[k][0], _POOL[k][1], _CATS[c], int(time.time() * 1000))
        for i, (op, k, c) in enumerate(ops)
    ]


def _fold(entries: Sequence[EntryTuple]) -> dict[tuple[str, str], str]:
    """The brute-force reference: add on present keeps the first category."""
    out: dict[tuple[str, str], str] = {}
    for _s, op, t, v, c, _ts in entries:
        if op == "add":
            out.setdefault((t, v), c)
        else:
            out.pop((t, v), None)
    return out


def _index_view(m: Matcher, list_ids: Sequence[int]) -> dict[int, dict[tuple[str, str], str]]:
    """What the matcher answers, per list, for every value of the pool."""
    view: dict[int, dict[tuple[str, str], str]] = {lid: {} for lid in list_ids}
    hits = m.match([Query(t, v) for t, v in _POOL], max_distance=0)
    for h in hits:
        if h.list_id in view:
            key = _POOL[h.query_index]
            assert key not in view[h.list_id], "one list holds one key once"
            view[h.list_id][key] = h.category
    return view


def _apply(m: Matcher, list_id: int, entries: Sequence[EntryTuple]) -> None:
    m.apply(net_changes(m, list_id, [(e[1], e[2], e[3], e[4]) for e in entries]))


# --- the fold, without a database ------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    logs=st.lists(st.lists(_op, max_size=40), min_size=1, max_size=3),
    cuts=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=30),
)
def test_any_chunking_with_reapplied_ranges_equals_the_fold(
    logs: list[list[tuple[str, int, int]]], cuts: list[tuple[int, int]]
) -> None:
    m = Matcher()
    entries = {lid: _entries(ops) for lid, ops in enumerate(logs, start=1)}
    mark = dict.fromkeys(entries, 0)
    for i, (back, ahead) in enumerate(cuts):
        lid = 1 + i % len(entries)
        log = entries[lid]
        # Start anywhere at or before the watermark (a range applied again),
        # end anywhere at or after it.
        start = max(0, mark[lid] - back)
        end = min(len(log), mark[lid] + ahead)
        _apply(m, lid, log[start:end])
        mark[lid] = end
        assert _index_view(m, [lid])[lid] == _fold(log[:end])
    for lid, log in entries.items():
        _apply(m, lid, log[mark[lid] :])
    assert _index_view(m, list(entries)) == {lid: _fold(log) for lid, log in entries.items()}


def test_the_same_range_twice_changes_nothing() -> None:
    m = Matcher()
    log = _entries([("add", 0, 0), ("remove", 0, 0), ("add", 0, 1), ("add", 0, 0)])
    _apply(m, 1, log)
    assert net_changes(m, 1, [(e[1], e[2], e[3], e[4]) for e in log]) == []
    assert _index_view(m, [1])[1] == {_POOL[0]: "B2"}


def test_a_removed_hash_stops_matching_in_its_list_only() -> None:
    m = Matcher()
    t, v = _POOL[1]
    m.apply([ContentChange("add", 1, t, v, "A1"), ContentChange("add", 2, t, v, "B2")])
    _apply(m, 1, _entries([("remove", 1, 0)]))
    assert _index_view(m, [1, 2]) == {1: {}, 2: {(t, v): "B2"}}


# --- the follower on a real database ------------------------------------------------------


class _Log:
    """Commits entries to a list the way the writer does: entries, content, state."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.row = store.create_list(
            owner="au-argos", name=name, label="baseline", empty_range=CompactRange().to_bytes()
        )
        self.entries: list[EntryTuple] = []

    def commit(self, ops: Sequence[tuple[str, int, int]]) -> tuple[int, int, list[ContentChange]]:
        start = len(self.entries)
        new = _entries(ops, base=start)
        before = _fold(self.entries)
        after = _fold(self.entries + new)
        adds = [(t, v, c, 0) for (t, v), c in after.items() if (t, v) not in before]
        gone = [k for k in before if k not in after or after[k] != before[k]]
        adds += [(t, v, after[(t, v)], 0) for t, v in gone if (t, v) in after]
        self.store.append(
            list_id=self.row.id,
            expected_size=start,
            entries=new,
            adds=adds,
            removes=gone,
            new_state=StateRow(start + len(new), CompactRange().to_bytes(), len(after)),
        )
        # What the writer emits: the commit's exact effect on content.
        _, _, changes = content_delta(new, fold(self.entries), self.row.id)
        self.entries += new
        return start, start + len(new), changes


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    commits=st.lists(
        st.tuples(st.integers(0, 2), st.lists(_op, min_size=1, max_size=6), st.integers(0, 4)),
        min_size=1,
        max_size=12,
    ),
    load_at=st.integers(0, 12),
)
def test_follower_in_any_interleaving_equals_the_fold(
    store: Store, commits: list[tuple[int, list[tuple[str, int, int]], int]], load_at: int
) -> None:
    logs = [_Log(store, f"l{os.urandom(4).hex()}") for _ in range(3)]
    follower = LogFollower(store, Matcher())
    loaded = False
    for i, (which, ops, action) in enumerate(commits):
        if i == load_at:
            follower.load()
            loaded = True
        start, end, changes = logs[which].commit(ops)
        if not loaded:
            continue
        lid = logs[which].row.id
        if action == 0:
            follower.check()
        elif action == 1:
            follower.note_commit(lid, start, end, changes)
        elif action == 2:
            follower.note_commit(lid, start, end)  # no changes: read back from the log
        elif action == 3:
            # Apply a range again, from well before the watermark.
            follower.check()
            follower._catch_up(lid, max(0, start - 3), follower.watermark(lid))
        # action 4: nothing now; a later check catches up
    if not loaded:
        follower.load()
    follower.check()
    ids = [lg.row.id for lg in logs]
    assert _index_view(follower.matcher, ids) == {lg.row.id: _fold(lg.entries) for lg in logs}
    assert follower.status()["lag_entries"] == 0


def test_a_huge_backlog_is_rebuilt_from_content(store: Store) -> None:
    log = _Log(store, "big")
    follower = LogFollower(store, Matcher(), rebuild_from=3)
    follower.load()
    log.commit([("add", k, 0) for k in range(6)] + [("remove", 2, 0)])
    follower.check()
    assert follower.status()["rebuilds"] == 1
    assert _index_view(follower.matcher, [log.row.id])[log.row.id] == _fold(log.entries)
    assert follower.watermark(log.row.id) == len(log.entries)


# --- two engines on one database: two processes ---------------------------------------------


def _wait_until(pred: object, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():  # type: ignore[operator]
            return time.monotonic() - t0
        time.sleep(0.01)
    raise AssertionError(f"not true within {timeout} s")


def test_a_commit_through_another_engine_wakes_the_change_watch(db_url: str) -> None:
    writer, reader = Store.open(db_url), Store.open(db_url, migrate=False)
    try:
        log = _Log(writer, "watched")
        watch = reader.watch_changes()
        try:
            watch.wait(0.2)  # the first call may report a change (a fresh LISTEN)
            assert watch.wait(0.3) is False
            fired = threading.Event()

            def waiter() -> None:
                if watch.wait(3.0):
                    fired.set()

            t = threading.Thread(target=waiter)
            t.start()
            time.sleep(0.1)
            t0 = time.monotonic()
            log.commit([("add", 0, 0)])
            t.join()
            assert fired.is_set()
            assert time.monotonic() - t0 < 1.0
        finally:
            watch.close()
    finally:
        reader.close()
        writer.close()


def test_a_commit_between_creating_the_watch_and_its_first_wait_is_not_lost(db_url: str) -> None:
    # The follower checks right after creating its watch and only then waits:
    # a commit in between must still wake the first wait.
    writer, reader = Store.open(db_url), Store.open(db_url, migrate=False)
    try:
        log = _Log(writer, "raced")
        watch = reader.watch_changes()
        try:
            log.commit([("add", 0, 0)])
            assert watch.wait(0.5) is True
        finally:
            watch.close()
    finally:
        reader.close()
        writer.close()


def test_follower_thread_applies_another_processes_add_and_remove(db_url: str) -> None:
    writer, reader = Store.open(db_url), Store.open(db_url, migrate=False)
    follower = LogFollower(reader, Matcher(), poll_seconds=30.0)  # the watch, not the poll
    try:
        log = _Log(writer, "followed")
        log.commit([("add", 0, 0)])
        follower.load()
        follower.start()
        lid = log.row.id

        def view() -> dict[tuple[str, str], str]:
            return _index_view(follower.matcher, [lid])[lid]

        assert view() == {_POOL[0]: "A1"}
        log.commit([("add", 6, 1)])
        assert _wait_until(lambda: _POOL[6] in view(), 1.0) < 1.0
        log.commit([("remove", 0, 0)])
        assert _wait_until(lambda: _POOL[0] not in view(), 1.0) < 1.0
        # A list created after the follower started is followed from 0.
        other = _Log(writer, "later")
        other.commit([("add", 1, 1), ("add", 7, 0)])
        _wait_until(
            lambda: (
                _index_view(follower.matcher, [other.row.id])[other.row.id] == _fold(other.entries)
            ),
            1.0,
        )
        status = follower.status()
        assert status["running"]
        assert status["errors"] == 0
    finally:
        follower.stop()
        assert follower.status()["running"] is False
        reader.close()
        writer.close()


def test_a_relabel_through_another_engine_reaches_the_list_rows_at_once(db_url: str) -> None:
    # Visibility is decided on the rows the follower keeps: a label made
    # stricter elsewhere must not wait for the fallback poll.
    writer, reader = Store.open(db_url), Store.open(db_url, migrate=False)
    follower = LogFollower(reader, Matcher(), poll_seconds=30.0)
    try:
        log = _Log(writer, "relabelled")
        follower.load()
        follower.start()
        assert _wait_until(lambda: follower.status()["running"], 1.0) < 1.0
        time.sleep(0.3)  # the watch is set up
        with writer.engine.begin() as conn:
            conn.execute(
                text("UPDATE hash_list SET label = 'restricted' WHERE id = :i"), {"i": log.row.id}
            )
        assert _wait_until(lambda: follower.lists()[log.row.id].label == "restricted", 1.0) < 1.0
    finally:
        follower.stop()
        reader.close()
        writer.close()


def test_a_list_with_a_broken_log_does_not_hold_back_the_others(db_url: str) -> None:
    writer = Store.open(db_url)
    reader = Store.open(db_url, migrate=False)
    follower = LogFollower(reader, Matcher(), poll_seconds=0.05)
    try:
        broken, good = _Log(writer, "broken"), _Log(writer, "good")
        follower.load()
        follower.start()
        # A state that claims more entries than the log holds: every check of
        # this list fails.
        writer.append(
            list_id=broken.row.id,
            expected_size=0,
            entries=_entries([("add", 2, 0)]),
            adds=[(*_POOL[2], "A1", 0)],
            removes=(),
            new_state=StateRow(5, CompactRange().to_bytes(), 1),
        )
        good.commit([("add", 3, 0)])
        lid = good.row.id
        _wait_until(lambda: _POOL[3] in _index_view(follower.matcher, [lid])[lid], 2.0)
        _wait_until(lambda: follower.status()["errors"] >= 2, 2.0)
        status = follower.status()
        assert status["running"]
        assert status["last_error"] == "StoreError"
        assert follower.watermark(broken.row.id) == 0
        assert status["lag_entries"] == 5
    finally:
        follower.stop()
        reader.close()
        writer.close()


def test_a_lost_listen_connection_is_reconnected_and_nothing_is_missed(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("LISTEN is PostgreSQL's")
    writer, reader = Store.open(db_url), Store.open(db_url, migrate=False)
    follower = LogFollower(reader, Matcher(), poll_seconds=30.0)  # the watch only
    try:
        log = _Log(writer, "relisten")
        follower.load()
        follower.start()
        lid = log.row.id

        def has(k: int) -> bool:
            return _POOL[k] in _index_view(follower.matcher, [lid])[lid]

        log.commit([("add", 0, 0)])
        _wait_until(lambda: has(0), 1.0)
        pids = [w.backend_pid for w in _watches(follower)]
        assert pids
        assert pids[0] is not None
        # The database ends the LISTEN session (a restart, a failover, an admin).
        with writer.engine.begin() as conn:
            conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pids[0])})")
        log.commit([("add", 1, 0)])
        _wait_until(lambda: has(1), 3.0)
        # Listening again: the next commit arrives by notification, not the 30 s poll.
        _wait_until(
            lambda: (
                bool(_watches(follower))
                and _watches(follower)[0].backend_pid not in (None, pids[0])
            ),
            3.0,
        )
        log.commit([("remove", 0, 0)])
        assert _wait_until(lambda: not has(0), 1.0) < 1.0
    finally:
        follower.stop()
        reader.close()
        writer.close()


def _watches(follower: LogFollower) -> list[Any]:
    w = follower._watch
    return [w] if w is not None else []
