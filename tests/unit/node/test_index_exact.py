"""ExactIndex answers what a dict of lists answers, whatever the keys and the update order."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from node.match.index import ExactIndex
from node.match.index import _exact as exact_module

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WIDTHS = st.sampled_from([1, 5, 8, 16, 20, 32])
Rows = list[tuple[bytes, int]]


def expected(rows: Rows, queries: NDArray[np.uint8]) -> list[tuple[int, int]]:
    """The model: every (query index, ref) whose key equals the query."""
    refs: dict[bytes, list[int]] = {}
    for key, ref in rows:
        refs.setdefault(key, []).append(ref)
    return sorted((i, r) for i, q in enumerate(queries) for r in refs.get(q.tobytes(), []))


def answer(index: ExactIndex, queries: NDArray[np.uint8]) -> list[tuple[int, int]]:
    q, refs = index.lookup(queries)
    assert q.tolist() == sorted(q.tolist()), "hits are ordered by query index"
    return sorted(zip(q.tolist(), refs.tolist(), strict=True))


def one_by_one(index: ExactIndex, queries: NDArray[np.uint8]) -> list[tuple[int, int]]:
    """The single-key path, which does not share code with the batch path."""
    out = []
    for i in range(len(queries)):
        q, refs = index.lookup(queries[i : i + 1])
        assert q.tolist() == [0] * len(refs)
        out += [(i, r) for r in refs.tolist()]
    return sorted(out)


@st.composite
def key_sets(draw: st.DrawFn, width: int, max_keys: int = 80) -> NDArray[np.uint8]:
    """Keys that collide on purpose: shared 8-byte prefixes, keys that differ
    only in their last byte, exact duplicates, all-zero and all-ones."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = [np.zeros(width, np.uint8), np.full(width, 255, np.uint8)]
    base += list(rng.integers(0, 256, (3, width), dtype=np.uint8))
    n = draw(st.integers(0, max_keys))
    keys = np.empty((n, width), dtype=np.uint8)
    for i in range(n):
        key = base[rng.integers(len(base))].copy()
        kind = rng.integers(4)
        if kind == 1:
            key[-1] ^= np.uint8(rng.integers(1, 4))  # same prefix, other tail
        elif kind == 2:
            key[rng.integers(width)] = rng.integers(256)
        elif kind == 3:
            key = rng.integers(0, 256, width, dtype=np.uint8)
        keys[i] = key
    return keys


def queries_for(keys: NDArray[np.uint8], width: int) -> NDArray[np.uint8]:
    rng = np.random.default_rng(len(keys))
    extra = np.stack([np.zeros(width, np.uint8), np.full(width, 255, np.uint8)])
    near = keys[:10].copy()
    if len(near):
        near[:, -1] ^= np.uint8(1)
    misses = rng.integers(0, 256, (3, width), dtype=np.uint8)
    return np.concatenate([keys[:20], near, extra, misses])


@SETTINGS
@given(data=st.data(), width=WIDTHS)
def test_lookup_equals_the_model_after_build(data: st.DataObject, width: int) -> None:
    keys = data.draw(key_sets(width))
    refs = np.arange(len(keys), dtype=np.int64) % 3
    index = ExactIndex.from_arrays(width, keys, refs)
    queries = queries_for(keys, width)
    want = expected(list(zip([k.tobytes() for k in keys], refs.tolist(), strict=True)), queries)
    assert answer(index, queries) == want
    assert one_by_one(index, queries) == want


OPS = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "remove", "merge"]),
        st.lists(st.integers(0, 59), min_size=1, max_size=30),
        st.integers(0, 2),
    ),
    max_size=12,
)


@SETTINGS
@given(data=st.data(), width=WIDTHS, ops=OPS)
def test_interleaved_add_remove_merge_matches_the_model(
    data: st.DataObject, width: int, ops: list[tuple[str, list[int], int]]
) -> None:
    pool = data.draw(key_sets(width, max_keys=60))
    if not len(pool):
        return
    queries = queries_for(pool, width)
    index = ExactIndex(width)
    rows: Rows = []
    for op, picks, ref in ops:
        chosen = pool[[p % len(pool) for p in picks]]
        ref_arr = np.full(len(chosen), ref, dtype=np.int64)
        if op == "add":
            index.add(chosen, ref_arr)
            rows += [(k.tobytes(), ref) for k in chosen]
        elif op == "remove":
            index.remove(chosen, ref_arr)
            gone = {k.tobytes() for k in chosen}
            rows = [r for r in rows if not (r[0] in gone and r[1] == ref)]
        else:
            index.merge()
        want = expected(rows, queries)
        assert answer(index, queries) == want
        assert one_by_one(index, queries) == want
        assert len(index) == len(rows)


def test_removal_stops_matching_immediately() -> None:
    keys = np.random.default_rng(1).integers(0, 256, (100, 32), dtype=np.uint8)
    index = ExactIndex.from_arrays(32, keys, np.arange(100))
    index.add(keys[:2], np.array([500, 501]))  # same keys, other refs, in the delta
    index.remove(keys[:2], np.array([0, 501]))
    assert answer(index, keys[:2]) == [(0, 500), (1, 1)]
    index.remove(keys[:1], np.array([999]))  # a missing pair is ignored
    assert len(index) == 100


def test_crafted_bucket_falls_back_to_binary_search() -> None:
    # 5,000 keys sharing their first 8 bytes: one bucket holds all of them.
    rng = np.random.default_rng(2)
    keys = rng.integers(0, 256, (5000, 20), dtype=np.uint8)
    keys[:, :8] = 7
    index = ExactIndex.from_arrays(20, keys, np.arange(5000))
    queries = np.concatenate([keys[::250], keys[:3] ^ np.uint8(1)])
    rows = [(k.tobytes(), i) for i, k in enumerate(keys)]
    assert answer(index, queries) == expected(rows, queries)
    assert one_by_one(index, queries) == expected(rows, queries)


def test_merge_replays_changes_made_while_it_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = np.random.default_rng(3).integers(0, 256, (300, 16), dtype=np.uint8)
    index = ExactIndex.from_arrays(16, keys[:200], np.arange(200))
    index.add(keys[200:250], np.arange(200, 250))
    index.remove(keys[:10], np.arange(10))
    real_buckets = exact_module._Run.with_buckets

    def buckets_then_change(run: exact_module._Run) -> exact_module._Run:
        out = real_buckets(run)  # the merged run exists; the swap has not happened
        index.add(keys[250:], np.arange(250, 300))
        index.remove(keys[200:201], np.array([200]))
        index.remove(keys[20:21], np.array([20]))
        return out

    monkeypatch.setattr(exact_module._Run, "with_buckets", buckets_then_change)
    index.merge()
    monkeypatch.undo()
    alive = [i for i in range(300) if i >= 10 and i not in (20, 200)]
    rows = [(keys[i].tobytes(), i) for i in alive]
    assert answer(index, keys) == expected(rows, keys)
    assert len(index) == len(alive)


def test_lookups_during_merge_return_complete_answers() -> None:
    keys = np.random.default_rng(4).integers(0, 256, (40000, 32), dtype=np.uint8)
    index = ExactIndex.from_arrays(32, keys[:30000], np.arange(30000))
    index.add(keys[30000:], np.arange(30000, 40000))
    index.remove(keys[:100], np.arange(100))
    queries = keys[::400]
    want = answer(index, queries)
    failures: list[str] = []
    done = threading.Event()

    def lookup_until_done() -> None:
        while not done.is_set():
            if answer(index, queries) != want:
                failures.append("incomplete answer")

    reader = threading.Thread(target=lookup_until_done)
    reader.start()
    index.merge()
    index.merge()  # nothing left to fold: returns at once
    done.set()
    reader.join()
    assert not failures
    assert answer(index, queries) == want


def test_memory_is_at_most_48_bytes_per_sha256_key() -> None:
    keys = np.random.default_rng(5).integers(0, 256, (1 << 16, 32), dtype=np.uint8)
    index = ExactIndex.from_arrays(32, keys, np.arange(len(keys)))
    assert index.memory_bytes() / len(keys) <= 48


@pytest.mark.parametrize(
    ("keys", "refs"),
    [
        (np.zeros((2, 31), np.uint8), np.arange(2)),
        (np.zeros((2, 32), np.int8), np.arange(2)),
        (np.zeros(32, np.uint8), np.arange(1)),
        (np.zeros((2, 32), np.uint8), np.arange(1)),
    ],
)
def test_malformed_input_is_rejected(keys: NDArray[Any], refs: NDArray[Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  (a programming error, no message contract)
        ExactIndex(32).add(keys, refs)


def test_zero_width_is_rejected() -> None:
    with pytest.raises(ValueError):  # noqa: PT011  (a programming error, no message contract)
        ExactIndex(0)


def test_a_huge_delta_merges_by_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exact_module, "_DELTA_HARD", 64)
    monkeypatch.setattr(exact_module, "_DELTA_SOFT", 32)
    keys = np.random.default_rng(6).integers(0, 256, (100, 8), dtype=np.uint8)
    index = ExactIndex(8)
    index.add(keys[:40], np.arange(40))
    assert index.needs_merge
    assert len(index._snap.delta) == 40
    index.add(keys[40:], np.arange(40, 100))
    assert len(index._snap.delta) == 0
    assert len(index) == 100
    assert answer(index, keys[:3]) == [(0, 0), (1, 1), (2, 2)]


def test_big_batches_are_looked_up_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exact_module, "_LOOKUP_CHUNK", 7)
    keys = np.random.default_rng(7).integers(0, 256, (60, 20), dtype=np.uint8)
    index = ExactIndex.from_arrays(20, keys[:40], np.arange(40))
    index.add(keys[40:], np.arange(40, 60))
    queries = np.concatenate([keys[::3], keys[:5]])
    rows = [(k.tobytes(), i) for i, k in enumerate(keys)]
    assert answer(index, queries) == expected(rows, queries)
