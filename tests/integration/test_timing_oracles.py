"""What a caller could learn from how long the node takes to answer.

Against a real node over mutual TLS: a hash held only in a list the caller
may not see must answer as fast as a hash held nowhere, and a federation
request for a list the caller is not cleared for as fast as one for a list
that does not exist. The attack as measured before the fix: the fastest of
15 GETs per hash separated hidden hashes from misses by ~600 µs.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator

import httpx
import pytest
from _nodes import Identity, NodeProcess, free_port, make_identity

# serial: it measures time (see tests/conftest.py).
pytestmark = [pytest.mark.network, pytest.mark.serial]

HIDDEN = [os.urandom(32).hex() for _ in range(6)]
MISSES = [os.urandom(32).hex() for _ in range(9)]
ROUNDS = 40
# Three measurements, their median judged: a systematic oracle shows in all three,
# a pause of the machine (GC, another process) in one at most.
MEASUREMENTS = 3
# Above the run-to-run noise of the fastest-of-N (±10 µs on a quiet machine,
# ~40 µs on a loaded one), below what the attacks measured before the fix:
# 170-600 µs for a hidden hash, 660 µs for an uncleared list.
# docs/PERFORMANCE.md reports the figures of bench/bench_timing.py.
MATCH_BOUND_S = 80e-6
FEDERATION_BOUND_S = 150e-6


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data = tmp_path_factory.mktemp("timing") / "au-argos"
    # The fastest of many answers is what an attacker times; the rate limit
    # (tested elsewhere) would answer 429 to that many.
    unlimited = {
        "HASHFED_LIMITS__RATE_LIMIT_PER_SECOND": "100000",
        "HASHFED_LIMITS__RATE_LIMIT_BURST": "100000",
    }
    n = NodeProcess("au-argos", data, free_port(), env=unlimited).init()
    n.cli("list", "create", "au-argos/open", "--label", "baseline")
    n.cli("list", "create", "au-argos/secret", "--label", "restricted")
    (data / "secret.txt").write_text("".join(f"{h}\n" for h in HIDDEN))
    n.cli("list", "import", "au-argos/secret", str(data / "secret.txt"), "--type", "sha256")
    for name in ("open", "secret"):
        n.cli("list", "publish", f"au-argos/{name}")
    n.start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def callers(node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Identity]:
    folder = tmp_path_factory.mktemp("callers")
    ids = {role: make_identity(folder, f"t-{role}") for role in ("partner", "peer")}
    for role, ident in ids.items():
        node.cli("principal", "add", ident.name, "--role", role, "--labels", "baseline",
                 "--cert", str(ident.cert))  # fmt: skip
    time.sleep(2.5)  # the running node trusts newly pinned certificates within 2 s
    return ids


def _fastest(client: httpx.Client, paths: list[str]) -> dict[str, float]:
    """The fastest of ``ROUNDS`` answers per path, the paths interleaved each round."""
    best = {p: float("inf") for p in paths}
    for _ in range(ROUNDS):
        for p in paths:
            t0 = time.perf_counter()
            r = client.get(p)
            took = time.perf_counter() - t0
            assert r.status_code in (200, 404)
            best[p] = min(best[p], took)
    return best


def _gap(best: dict[str, float], group_a: list[str], group_b: list[str]) -> float:
    return statistics.median(best[p] for p in group_a) - statistics.median(best[p] for p in group_b)


def test_hidden_hash_answers_as_fast_as_a_miss(
    node: NodeProcess, callers: dict[str, Identity]
) -> None:
    hidden = [f"/api/v1/match/sha256/{h}" for h in HIDDEN]
    misses = [f"/api/v1/match/sha256/{h}" for h in MISSES]
    with node.client(callers["partner"]) as c:
        for p in hidden:
            assert c.get(p).json()["hits"] == 0  # the caller learns nothing from the body
        gaps = [_gap(_fastest(c, hidden + misses), hidden, misses) for _ in range(MEASUREMENTS)]
    assert abs(statistics.median(gaps)) < MATCH_BOUND_S, gaps


def test_uncleared_list_answers_as_fast_as_a_missing_one(
    node: NodeProcess, callers: dict[str, Identity]
) -> None:
    hidden = [f"/federation/v1/lists/au-argos/secret/entries?start=0&limit={n}" for n in (1, 2, 3)]
    missing = [f"/federation/v1/lists/au-argos/none{n}/entries?start=0&limit=1" for n in (1, 2, 3)]
    with node.client(callers["peer"]) as c:
        gaps = [_gap(_fastest(c, hidden + missing), hidden, missing) for _ in range(MEASUREMENTS)]
    assert abs(statistics.median(gaps)) < FEDERATION_BOUND_S, gaps
