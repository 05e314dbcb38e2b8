"""Overlap detection against a brute-force reference, on a real database.

Whatever the order of commits, follower checks and detector batches, and
across a restart of the detector, the overlaps recorded are exactly the
pairs of entries of lists of different owners that are equal (exact types)
or within the PDQ distance (PDQ), minus any whose hash is on an allow-list.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.errors import InputError
from crypto.merkle import CompactRange
from node.log.kinds import check_kind
from node.match.follower import LogFollower
from node.match.matcher import Matcher, Query
from node.overlaps import OverlapDetector, parse_since
from node.store import EntryTuple, StateRow, Store

T = 31  # the overlap distance
ALLOW_DISTANCE = 8


def _flip(code: bytes, bits: int, salt: int) -> bytes:
    arr = np.frombuffer(code, np.uint8).copy()
    rng = np.random.default_rng(salt)
    for b in rng.choice(256, bits, replace=False):
        arr[b // 8] ^= 1 << (b % 8)
    return arr.tobytes()


_BASES = [os.urandom(32) for _ in range(3)]
# PDQ codes near and far from each other; exact values shared between lists.
_POOL: list[tuple[str, str]] = [("sha256", os.urandom(32).hex()) for _ in range(6)] + [
    ("md5", os.urandom(16).hex()) for _ in range(2)
]
for _i, _b in enumerate(_BASES):
    for _bits in (0, 4, 12, 25, 40):
        _POOL.append(("pdq", _flip(_b, _bits, _i * 100 + _bits).hex()))

OWNERS = ("au-argos", "au-argos", "nl-dhd", "us-ncmec")


def _dist(a: tuple[str, str], b: tuple[str, str]) -> int | None:
    if a[0] != b[0]:
        return None
    if a[0] != "pdq":
        return 0 if a[1] == b[1] else None
    x = np.unpackbits(np.frombuffer(bytes.fromhex(a[1]), np.uint8))
    y = np.unpackbits(np.frombuffer(bytes.fromhex(b[1]), np.uint8))
    return int((x != y).sum())


class _Log:
    """Commits adds to a list as the writer does: entries, content (seq of the add), state."""

    def __init__(self, store: Store, owner: str, *, kind: str = "block", dist: int = 0) -> None:
        self.store = store
        self.row = store.create_list(
            owner=owner,
            name=f"l{os.urandom(4).hex()}",
            label="baseline",
            kind=kind,
            allow_distance=dist,
            empty_range=CompactRange().to_bytes(),
        )
        self.entries: list[EntryTuple] = []

    def commit(self, keys: Sequence[tuple[str, str]]) -> None:
        start = len(self.entries)
        now = int(time.time() * 1000)
        new = [(start + i, "add", t, v, "", now) for i, (t, v) in enumerate(keys)]
        self.store.append(
            list_id=self.row.id,
            expected_size=start,
            entries=new,
            adds=[(e[2], e[3], "", e[0]) for e in new],
            removes=[],
            new_state=StateRow(start + len(new), CompactRange().to_bytes(), start + len(new)),
        )
        self.entries += new


def _reference(logs: Sequence[_Log], allow: _Log) -> set[tuple[int, int, int, int, str, int]]:
    allowed = [(e[2], e[3]) for e in allow.entries]

    def on_allow(key: tuple[str, str]) -> bool:
        return any((d := _dist(key, a)) is not None and d <= ALLOW_DISTANCE for a in allowed)

    out = set()
    for i, x in enumerate(logs):
        for y in logs[i + 1 :]:
            if x.row.owner == y.row.owner:
                continue
            for ex in x.entries:
                for ey in y.entries:
                    kx, ky = (ex[2], ex[3]), (ey[2], ey[3])
                    d = _dist(kx, ky)
                    if d is None or d > T or on_allow(kx) or on_allow(ky):
                        continue
                    (la, sa), (lb, sb) = sorted(((x.row.id, ex[0]), (y.row.id, ey[0])))
                    out.add((la, sa, lb, sb, kx[0], d))
    return out


def _recorded(store: Store) -> list[tuple[int, int, int, int, str, int]]:
    rows = []
    for p in store.overlap_pairs():
        for o in store.overlaps_of_pair(list_a=p.list_a, list_b=p.list_b, limit=10_000):
            rows.append((o.list_a, o.seq_a, o.list_b, o.seq_b, o.hash_type, o.distance))
    return rows


def _detector(store: Store, follower: LogFollower, batch: int) -> OverlapDetector:
    d = OverlapDetector(
        store,
        follower.matcher,
        lists=follower.lists,
        applied=follower.watermark,
        pdq_distance=T,
        batch=batch,
    )
    d.load()
    return d


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    contents=st.lists(
        st.lists(st.integers(0, len(_POOL) - 1), unique=True, max_size=10),
        min_size=len(OWNERS),
        max_size=len(OWNERS),
    ),
    allowed=st.lists(st.integers(0, len(_POOL) - 1), unique=True, max_size=3),
    steps=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 4), st.integers(0, 3)), max_size=30),
    batch=st.integers(1, 5),
    restart_at=st.integers(0, 30),
    allow_at=st.integers(0, 30),
)
def test_detector_in_any_interleaving_and_restart_equals_brute_force(
    contents: list[list[int]],
    allowed: list[int],
    steps: list[tuple[int, int, int]],
    batch: int,
    restart_at: int,
    allow_at: int,
) -> None:
    # A fresh database per example: lists of earlier examples would overlap.
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{tmp}/t.db")
        try:
            _interleave(store, contents, allowed, steps, batch, restart_at, allow_at)
        finally:
            store.close()


def _interleave(
    store: Store,
    contents: list[list[int]],
    allowed: list[int],
    steps: list[tuple[int, int, int]],
    batch: int,
    restart_at: int,
    allow_at: int,
) -> None:
    allow = _Log(store, "xx-benign", kind="allow", dist=ALLOW_DISTANCE)
    logs = [_Log(store, owner) for owner in OWNERS]
    pending = [[_POOL[k] for k in c] for c in contents]
    follower = LogFollower(store, Matcher())
    follower.load()
    detector = _detector(store, follower, batch)
    for i, (which, n, action) in enumerate(steps):
        if i == restart_at:  # a new process: resumes at the persisted watermarks
            detector = _detector(store, follower, batch)
        if i == allow_at:  # before or after the overlaps it suppresses were found
            allow.commit([_POOL[k] for k in allowed])
        chunk, pending[which] = pending[which][:n], pending[which][n:]
        if chunk:
            logs[which].commit(chunk)
        if action >= 1:
            follower.check()
        if action >= 2:
            detector.step()
    for which, rest in enumerate(pending):
        if rest:
            logs[which].commit(rest)
    if allow_at >= len(steps):
        allow.commit([_POOL[k] for k in allowed])
    follower.check()
    detector.run_until_idle()
    assert detector.backlog() == 0
    got = _recorded(store)
    assert len(got) == len(set(got)), "each overlap once"
    assert set(got) == _reference(logs, allow)


def test_new_overlaps_reach_listeners_once_and_restart_checks_nothing_twice(store: Store) -> None:
    a, b = _Log(store, "au-argos"), _Log(store, "nl-dhd")
    shared = _POOL[0]
    a.commit([shared, _POOL[1]])
    b.commit([_POOL[2], shared])
    follower = LogFollower(store, Matcher())
    follower.load()
    heard: list[int] = []
    first = _detector(store, follower, 100)
    first.listeners.append(lambda rows, lists: heard.append(len(rows)))
    first.run_until_idle()
    assert heard == [1]
    assert first.status()["entries_checked"] == 4
    second = _detector(store, follower, 100)
    second.listeners.append(lambda rows, lists: heard.append(len(rows)))
    assert second.run_until_idle() == 0  # nothing rescanned after a restart
    b.commit([_POOL[1]])
    follower.check()
    assert second.backlog() == 1
    assert second.run_until_idle() == 1
    assert heard == [1, 1]
    assert len(_recorded(store)) == 2


def test_lists_of_one_owner_are_passed_without_reading_until_another_owner_arrives(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, also_mine = _Log(store, "au-argos"), _Log(store, "au-argos")
    mine.commit([_POOL[0], _POOL[8]])
    also_mine.commit([_POOL[0], _POOL[9]])  # equal and near, but the same owner
    follower = LogFollower(store, Matcher())
    follower.load()
    read: list[int] = []
    real_pages = store.iter_entry_pages

    def counting_pages(**kw: int) -> object:
        read.append(kw["list_id"])
        return real_pages(**kw)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "iter_entry_pages", counting_pages)
    detector = _detector(store, follower, 100)
    assert detector.run_until_idle() == 4
    assert read == []
    assert _recorded(store) == []
    assert detector.backlog() == 0  # passed, not pending
    theirs = _Log(store, "nl-dhd")
    theirs.commit([_POOL[0], _POOL[10]])
    follower.check()  # reads the new entries itself
    read.clear()
    assert detector.run_until_idle() == 2
    assert read == [theirs.row.id]  # only the newcomer's entries were read
    assert set(_recorded(store)) == _reference([mine, also_mine, theirs], _Log(store, "x"))


def test_an_inactive_detector_records_nothing_and_follows_the_active_ones_marks(
    store: Store,
) -> None:
    a, b = _Log(store, "au-argos"), _Log(store, "nl-dhd")
    a.commit([_POOL[0], _POOL[1]])
    b.commit([_POOL[0]])
    follower = LogFollower(store, Matcher())
    follower.load()
    idle = _detector(store, follower, 100)
    idle.active = lambda: False
    idle.poll_seconds = 0.02
    idle.start()
    try:
        time.sleep(0.2)
        assert idle.backlog() == 3  # it checked nothing itself
        assert _recorded(store) == []
        working = _detector(store, follower, 100)
        assert working.run_until_idle() == 3
        deadline = time.monotonic() + 5
        while idle.backlog() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert idle.backlog() == 0  # the marks the active one wrote
        assert idle.status()["batches"] == 0
        assert len(_recorded(store)) == 1
    finally:
        idle.stop()


def test_a_second_detector_on_the_same_database_records_nothing_twice(store: Store) -> None:
    a, b = _Log(store, "au-argos"), _Log(store, "nl-dhd")
    a.commit([_POOL[0]])
    b.commit([_POOL[0]])
    follower = LogFollower(store, Matcher())
    follower.load()
    one, two = _detector(store, follower, 10), _detector(store, follower, 10)
    heard: list[int] = []
    for d in (one, two):
        d.listeners.append(lambda rows, lists: heard.append(len(rows)))
        d.run_until_idle()
    assert heard == [1]  # only the insert that took it hears it as new
    assert len(_recorded(store)) == 1


def test_an_allow_list_suppresses_matches_exact_and_near(store: Store) -> None:
    exact, code = _POOL[0], _POOL[8]  # a sha256, a PDQ base code
    near = ("pdq", _flip(bytes.fromhex(code[1]), 5, 7).hex())
    far = ("pdq", _flip(bytes.fromhex(code[1]), 20, 9).hex())
    block = _Log(store, "au-argos")
    block.commit([exact, code, _POOL[1]])
    follower = LogFollower(store, Matcher())
    follower.load()
    m = follower.matcher
    queries = [Query(*exact), Query(*near), Query(*far), Query(*_POOL[1])]
    assert {h.query_index for h in m.match(queries, max_distance=31)} == {0, 1, 2, 3}
    allow = _Log(store, "xx-benign", kind="allow", dist=ALLOW_DISTANCE)
    allow.commit([exact, code])
    follower.check()
    hits = m.match(queries, max_distance=31)
    # near (5 bits from the allowed code) is suppressed; far (20) is not.
    assert {h.query_index for h in hits} == {2, 3}
    assert all(h.list_id == block.row.id for h in hits)


def test_kind_and_allow_distance_are_checked() -> None:
    assert check_kind("allow", 8) == ("allow", 8)
    assert check_kind("block", 8) == ("block", 0)
    with pytest.raises(InputError):
        check_kind("deny", 0)
    with pytest.raises(InputError):
        check_kind("allow", 32)


def test_since_takes_durations_and_iso_times() -> None:
    now = 1_000_000_000_000
    assert parse_since("2h", now=now) == now - 7_200_000
    assert parse_since("1970-01-01T00:00:01Z", now=now) == 1000
    with pytest.raises(InputError):
        parse_since("yesterday", now=now)
