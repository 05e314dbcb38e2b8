"""PdqIndex answers what brute force answers, whatever the data and the update order."""

from __future__ import annotations

import threading
from math import comb
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from node.match.index import PdqIndex, brute_force_pdq
from node.match.index import _hamming as hamming_module
from node.match.index import _mih as mih_module
from node.match.index import _pdq as pdq_module
from node.match.index._mih import MAX_RADIUS, TABLES, plan, radii

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ZERO = np.zeros(32, dtype=np.uint8)
ONES = np.full(32, 255, dtype=np.uint8)


def flip(code: NDArray[np.uint8], bits: list[int] | NDArray[np.int64]) -> NDArray[np.uint8]:
    """``code`` with the given bit positions (0..255) flipped."""
    out = code.copy()
    for b in bits:
        out[b // 8] ^= np.uint8(1 << (b % 8))
    return out


def at_distance(code: NDArray[np.uint8], d: int, seed: int) -> NDArray[np.uint8]:
    """A code exactly ``d`` bits away from ``code``."""
    rng = np.random.default_rng(seed)
    return flip(code, rng.choice(256, size=d, replace=False))


def same(got: tuple[NDArray[np.generic], ...], want: tuple[NDArray[np.generic], ...]) -> None:
    assert [a.tolist() for a in got] == [b.tolist() for b in want]


@st.composite
def code_sets(draw: st.DrawFn, max_codes: int = 120) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Codes clustered around a few centres (adversarial: shared substrings,
    distances near 31/32, exact duplicates, all-zero and all-ones)."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    centres = [ZERO, ONES, *rng.integers(0, 256, (3, 32), dtype=np.uint8)]
    n = draw(st.integers(0, max_codes))
    codes = np.empty((n, 32), dtype=np.uint8)
    for i in range(n):
        centre = centres[rng.integers(len(centres))]
        d = int(rng.choice([0, 0, 1, 2, 15, 30, 31, 32, 33, 64, 128]))
        codes[i] = at_distance(centre, d, int(rng.integers(2**32)))
    refs = rng.integers(0, 4, n).astype(np.int64)
    return codes, refs


@st.composite
def query_sets(draw: st.DrawFn, codes: NDArray[np.uint8]) -> NDArray[np.uint8]:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    qs = [ZERO, ONES, rng.integers(0, 256, 32, dtype=np.uint8)]
    for i in rng.integers(0, max(len(codes), 1), 8) if len(codes) else []:
        qs.append(at_distance(codes[i], int(rng.choice([0, 5, 16, 31, 32, 40])), int(i)))
    return np.array(qs, dtype=np.uint8)


RADII = st.sampled_from([0, 1, 5, 10, 11, 21, 22, 31, 32, 33, 64, 256])


@SETTINGS
@given(data=st.data(), radius=RADII)
def test_search_equals_brute_force_after_build(data: st.DataObject, radius: int) -> None:
    codes, refs = data.draw(code_sets())
    queries = data.draw(query_sets(codes))
    index = PdqIndex.from_arrays(codes, refs)
    same(index.search(queries, radius), brute_force_pdq(codes, refs, queries, radius))


@SETTINGS
@given(data=st.data(), radius=RADII)
def test_search_equals_brute_force_through_delta_and_merge(
    data: st.DataObject, radius: int
) -> None:
    codes, refs = data.draw(code_sets())
    queries = data.draw(query_sets(codes))
    want = brute_force_pdq(codes, refs, queries, radius)
    index = PdqIndex()
    for part in np.array_split(np.arange(len(codes)), 3):
        index.add(codes[part], refs[part])
    same(index.search(queries, radius), want)  # all in the delta
    index.merge()
    same(index.search(queries, radius), want)  # all in the tables


def test_distance_31_matches_and_32_does_not() -> None:
    rng = np.random.default_rng(7)
    query = rng.integers(0, 256, (1, 32), dtype=np.uint8)
    codes = np.array([at_distance(query[0], d, d) for d in (30, 31, 32, 33)])
    index = PdqIndex.from_arrays(codes, np.arange(4))
    _q, ref, dist = index.search(query)
    assert ref.tolist() == [0, 1]
    assert dist.tolist() == [30, 31]
    assert index.search(query, 32)[1].tolist() == [0, 1, 2]


def test_all_zero_against_all_ones_is_256_not_0() -> None:
    # 4 words x 64 differing bits: a byte-wide sum would wrap to 0.
    index = PdqIndex.from_arrays(np.stack([ONES, ZERO]), np.array([1, 2]))
    assert index.search(ZERO[None]).__getitem__(1).tolist() == [2]
    assert index.search(ZERO[None], 256)[2].tolist() == [0, 256]
    index.add(ONES[None], np.array([3]))  # in the delta's scan too
    assert index.search(ZERO[None], 255)[1].tolist() == [2]


def test_same_code_under_several_refs_hits_once_per_ref() -> None:
    code = np.random.default_rng(1).integers(0, 256, (1, 32), dtype=np.uint8)
    index = PdqIndex.from_arrays(np.repeat(code, 3, axis=0), np.array([5, 6, 7]))
    index.add(code, np.array([8]))
    assert index.search(code)[1].tolist() == [5, 6, 7, 8]


@pytest.mark.parametrize("build", ["arrays", "merge", "merge-twice"])
def test_many_duplicates_use_heavy_blocks_and_stay_exact(build: str) -> None:
    # 700 copies of one code put > 255 rows in one bucket block of every table.
    rng = np.random.default_rng(2)
    code = rng.integers(0, 256, (1, 32), dtype=np.uint8)
    codes = np.concatenate(
        [np.repeat(code, 700, axis=0), rng.integers(0, 256, (300, 32), np.uint8)]
    )
    refs = np.arange(len(codes))
    if build == "arrays":
        index = PdqIndex.from_arrays(codes, refs)
    elif build == "merge":
        index = PdqIndex.from_arrays(codes[700:], refs[700:])
        index.add(codes[:700], refs[:700])
        index.merge()
    else:  # blocks turn heavy in one merge, then heavy blocks grow in the next
        index = PdqIndex.from_arrays(codes[700:], refs[700:])
        for part in (slice(0, 400), slice(400, 700)):
            index.add(codes[part], refs[part])
            index.merge()
    queries = np.stack([code[0], at_distance(code[0], 31, 3), at_distance(code[0], 32, 4)])
    same(index.search(queries), brute_force_pdq(codes, refs, queries, 31))
    assert index._snap.tables is not None
    assert len(index._snap.tables.heavy)  # the crowded blocks moved to the side table


def test_removal_stops_matching_immediately() -> None:
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, (500, 32), dtype=np.uint8)
    index = PdqIndex.from_arrays(codes, np.arange(500))
    index.add(codes[:2], np.array([900, 901]))  # same codes, other refs, in the delta
    index.remove(codes[:2], np.array([0, 901]))
    assert index.search(codes[:2])[1].tolist() == [900, 1]
    index.remove(codes[:1], np.array([12345]))  # a missing pair is ignored
    assert len(index) == 500


OPS = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "remove", "merge"]),
        st.lists(st.integers(0, 59), min_size=1, max_size=40),
        st.integers(0, 2),
    ),
    max_size=12,
)


@SETTINGS
@given(pool=code_sets(max_codes=60), ops=OPS, radius=st.sampled_from([0, 16, 31, 40]))
def test_interleaved_add_remove_merge_matches_a_model(
    pool: tuple[NDArray[np.uint8], NDArray[np.int64]],
    ops: list[tuple[str, list[int], int]],
    radius: int,
) -> None:
    codes, _ = pool
    if not len(codes):
        return
    queries = np.concatenate([codes[:8], ZERO[None], ONES[None]])
    index = PdqIndex()
    rows: list[tuple[bytes, int]] = []  # the model: a multiset of (code, ref)
    for op, picks, ref in ops:
        chosen = codes[[p % len(codes) for p in picks]]
        ref_arr = np.full(len(chosen), ref, dtype=np.int64)
        if op == "add":
            index.add(chosen, ref_arr)
            rows += [(c.tobytes(), ref) for c in chosen]
        elif op == "remove":
            index.remove(chosen, ref_arr)
            gone = {c.tobytes() for c in chosen}
            rows = [r for r in rows if not (r[0] in gone and r[1] == ref)]
        else:
            index.merge()
        model_codes = np.frombuffer(b"".join(c for c, _ in rows), np.uint8).reshape(-1, 32)
        model_refs = np.array([r for _, r in rows], dtype=np.int64)
        same(
            index.search(queries, radius), brute_force_pdq(model_codes, model_refs, queries, radius)
        )
        assert len(index) == len(rows)


def test_compacting_merge_replays_changes_made_while_it_ran(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 256, (6000, 32), dtype=np.uint8)
    index = PdqIndex.from_arrays(codes, np.arange(6000))
    index.remove(codes[:5000], np.arange(5000))  # enough dead rows to compact
    late = rng.integers(0, 256, (3, 32), dtype=np.uint8)
    real_build = mih_module.MihTables.build

    def build_then_change(words: NDArray[np.uint64], bits: int | None = None) -> object:
        tables = real_build(words, bits)
        index.add(late, np.array([1, 2, 3]))  # lands in the log
        index.remove(codes[5000:5001], np.array([5000]))
        return tables

    monkeypatch.setattr(mih_module.MihTables, "build", build_then_change)
    index.merge()
    monkeypatch.undo()
    assert len(index) == 1000 - 1 + 3
    assert index._snap.total == 1000 + 3
    assert index.search(late)[1].tolist() == [1, 2, 3]
    assert index.search(codes[5000:5002])[1].tolist() == [5001]


def test_queries_during_merge_return_complete_answers() -> None:
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 256, (30000, 32), dtype=np.uint8)
    refs = np.arange(30000)
    index = PdqIndex.from_arrays(codes[:20000], refs[:20000])
    index.add(codes[20000:], refs[20000:])
    queries = np.stack([at_distance(codes[i], 20, i) for i in range(0, 30000, 1500)])
    want = brute_force_pdq(codes, refs, queries, 31)
    failures: list[str] = []
    done = threading.Event()

    def query_until_done() -> None:
        while not done.is_set():
            got = index.search(queries)
            if [a.tolist() for a in got] != [b.tolist() for b in want]:
                failures.append("incomplete answer")

    reader = threading.Thread(target=query_until_done)
    reader.start()
    for _ in range(3):
        index.merge()
        index.add(codes[:0], refs[:0])
    done.set()
    reader.join()
    assert not failures
    same(index.search(queries), want)


def test_merge_grows_the_buffer_so_adds_do_not_copy_it() -> None:
    # Growing copies every row; done by an add it would delay matchability.
    rng = np.random.default_rng(9)
    codes = rng.integers(0, 256, (5000, 32), dtype=np.uint8)
    refs = np.arange(5000)
    index = PdqIndex.from_arrays(codes[:3000], refs[:3000])
    index.merge()
    buffer = index._snap.words
    assert len(buffer) >= 3000 + pdq_module._MIN_SPARE // 2
    index.add(codes[3000:], refs[3000:])
    assert index._snap.words is buffer
    index.remove(codes[:10], refs[:10])
    queries = codes[::250]
    same(index.search(queries), brute_force_pdq(codes[10:], refs[10:], queries, 31))


def test_adds_while_the_buffer_grows_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # An add landing between the merge's copy and its swap must survive the swap.
    rng = np.random.default_rng(10)
    codes = rng.integers(0, 256, (3150, 32), dtype=np.uint8)
    refs = np.arange(3150)
    index = PdqIndex.from_arrays(codes[:3000], refs[:3000])
    index.add(codes[3000:3001], refs[3000:3001])  # grows by 1/16: room for 186 more
    buffer = index._snap.words
    real_empty = np.empty
    added = []

    def empty_then_add(*args: Any, **kwargs: Any) -> Any:
        out = real_empty(*args, **kwargs)
        if not added and args and args[0] == (3001 + pdq_module._MIN_SPARE, 4):
            added.append(1)
            index.add(codes[3001:], refs[3001:])  # as another thread would; fits the room
        return out

    monkeypatch.setattr(pdq_module.np, "empty", empty_then_add)
    index.merge()
    monkeypatch.undo()
    assert added
    assert index._snap.words is not buffer  # grown by the merge, not by the add
    assert len(index._snap.words) == 3001 + pdq_module._MIN_SPARE
    queries = codes[::10]
    same(index.search(queries), brute_force_pdq(codes, refs, queries, 31))


def test_heavy_queries_fall_back_to_a_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdq_module, "_CANDIDATE_FLOOR", 0)
    rng = np.random.default_rng(6)
    centre = rng.integers(0, 256, 32, dtype=np.uint8)
    codes = np.stack(
        [at_distance(centre, int(d), i) for i, d in enumerate(rng.integers(0, 40, 400))]
    )
    index = PdqIndex.from_arrays(codes, np.arange(400))
    queries = np.stack([centre, ONES])
    same(index.search(queries), brute_force_pdq(codes, np.arange(400), queries, 31))


def test_big_batches_use_threads_and_delta_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdq_module, "_QUERY_CHUNK", 3)
    monkeypatch.setattr(pdq_module, "_DELTA_TABLE_BATCH", 4)
    monkeypatch.setattr(pdq_module, "_DELTA_TABLE_MIN", 16)
    rng = np.random.default_rng(8)
    codes = rng.integers(0, 256, (400, 32), dtype=np.uint8)
    index = PdqIndex.from_arrays(codes[:200], np.arange(200))
    index.add(codes[200:], np.arange(200, 400))
    queries = np.stack([at_distance(codes[i], 25, i) for i in range(0, 400, 13)])
    same(index.search(queries), brute_force_pdq(codes, np.arange(400), queries, 31))
    assert index._snap.cache  # the delta got its temporary tables


@pytest.mark.parametrize("radius", range(MAX_RADIUS + 1))
def test_probe_radii_cover_the_distance_by_pigeonhole(radius: int) -> None:
    s = radii(radius)
    assert sum(x + 1 for x in s) == radius + 1
    assert max(s) <= 2
    assert len(s) == TABLES
    assert len(plan(23, radius).masks) == sum(comb(23, k) for x in s for k in range(x + 1))


def test_brute_force_reference_agrees_with_python_popcount() -> None:
    rng = np.random.default_rng(9)
    codes = rng.integers(0, 256, (50, 32), dtype=np.uint8)
    query = codes[:1] ^ np.uint8(1)
    as_int = [int.from_bytes(c.tobytes(), "big") for c in codes]
    qi = int.from_bytes(query[0].tobytes(), "big")
    want = sorted((bin(c ^ qi).count("1"), i) for i, c in enumerate(as_int))
    _q, ref, dist = brute_force_pdq(codes, np.arange(50), query, 256)
    assert sorted(zip(dist.tolist(), ref.tolist(), strict=True)) == want


@pytest.mark.parametrize(
    ("codes", "refs"),
    [
        (np.zeros((2, 31), np.uint8), np.arange(2)),
        (np.zeros((2, 32), np.int64), np.arange(2)),
        (np.zeros((2, 32), np.uint8), np.arange(3)),
        (np.zeros((2, 32), np.uint8), np.zeros(2, np.float64)),
    ],
)
def test_malformed_input_is_rejected(codes: NDArray[Any], refs: NDArray[Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  (a programming error, no message contract)
        PdqIndex().add(codes, refs)


def test_negative_distance_is_rejected() -> None:
    with pytest.raises(ValueError):  # noqa: PT011  (a programming error, no message contract)
        PdqIndex().search(np.zeros((1, 32), np.uint8), -1)


def test_memory_stays_near_100_bytes_per_code() -> None:
    codes = np.random.default_rng(10).integers(0, 256, (1 << 16, 32), dtype=np.uint8)
    index = PdqIndex.from_arrays(codes, np.arange(len(codes)))
    assert index.memory_bytes() / len(codes) <= 100


def test_growing_index_rebuilds_wider_tables() -> None:
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 256, (3000, 32), dtype=np.uint8)
    index = PdqIndex()
    index.add(codes[:100], np.arange(100))
    index.merge()
    assert index._snap.tables is not None
    narrow = index._snap.tables.bits
    index.add(codes[100:], np.arange(100, 3000))
    index.merge()
    assert index._snap.tables.bits > narrow
    assert index._snap.main == 3000
    queries = np.stack([at_distance(codes[i], 31, i) for i in range(0, 3000, 97)])
    same(index.search(queries), brute_force_pdq(codes, np.arange(3000), queries, 31))


def test_a_huge_delta_merges_by_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdq_module, "_DELTA_HARD", 64)
    monkeypatch.setattr(pdq_module, "_DELTA_SOFT", 32)
    codes = np.random.default_rng(12).integers(0, 256, (100, 32), dtype=np.uint8)
    index = PdqIndex()
    index.add(codes[:40], np.arange(40))
    assert index.needs_merge
    assert index._snap.main == 0
    index.add(codes[40:], np.arange(40, 100))
    assert index._snap.main == 100
    assert not index.needs_merge
    same(index.search(codes[:5]), brute_force_pdq(codes, np.arange(100), codes[:5], 31))


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_exact_join_equals_a_radius_0_scan(data: st.DataObject) -> None:
    # Few distinct first words and repeated codes: the join's ranges and
    # duplicates must come out exactly as the scan's.
    pool = data.draw(st.integers(1, 6))
    n = data.draw(st.integers(0, 40))
    q = data.draw(st.integers(0, 12))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    words = rng.integers(0, pool, (n, 4), dtype=np.uint64)
    queries = rng.integers(0, pool, (q, 4), dtype=np.uint64)
    first_row = data.draw(st.integers(0, 1000))
    got = hamming_module.equal_rows(words, queries, first_row)
    want = hamming_module.scan(words, queries, 0, first_row)
    assert [a.tolist() for a in got] == [b.tolist() for b in want]


def test_search_codes_returns_the_stored_code_of_each_hit_in_tables_and_delta() -> None:
    codes = np.random.default_rng(21).integers(0, 256, (600, 32), dtype=np.uint8)
    index = PdqIndex()
    index.add(codes[:400], np.arange(400))
    index.merge()  # rows 0..399 in the tables, the rest in the delta
    index.add(codes[400:], np.arange(400, 600))
    queries = np.stack([at_distance(codes[i], 12, i) for i in range(0, 600, 37)])
    q, refs, dist, stored = index.search_codes(queries, 31)
    same((q, refs, dist), index.search(queries, 31))
    assert len(q) > 0
    assert all(np.array_equal(stored[k], codes[ref]) for k, ref in enumerate(refs.tolist()))
