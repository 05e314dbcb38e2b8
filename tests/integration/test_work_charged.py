"""Charged by work done: a request that makes the node build many proofs or read
many log entries costs more of the caller's rate limit than a cheap one."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from _nodes import Identity, NodeProcess, free_port, make_identity

from node.feeds.stix import collection_id

# serial: it measures time (see tests/conftest.py).
pytestmark = [pytest.mark.network, pytest.mark.serial]

HASH = "ab" * 32
RATE = {"HASHFED_LIMITS__RATE_LIMIT_PER_SECOND": "1", "HASHFED_LIMITS__RATE_LIMIT_BURST": "60"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data = tmp_path_factory.mktemp("charged") / "au-argos"
    n = NodeProcess("au-argos", data, free_port(), env=RATE).init()
    n.cli("list", "create", "au-argos/base", "--label", "baseline")
    lines = "\n".join(f"sha256,{i:064x}," for i in range(1, 3001))
    (data / "bulk.csv").write_text(f"type,value,category\nsha256,{HASH},A1\n{lines}\n")
    n.cli("list", "import", "au-argos/base", str(data / "bulk.csv"))
    n.cli("list", "publish", "au-argos/base")
    n.start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def callers(node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> list[Identity]:
    """Principals of their own: rate limits are per principal, so each test starts full."""
    out = []
    for i in range(3):
        ident = make_identity(tmp_path_factory.mktemp(f"ops{i}"), f"ops{i}")
        node.cli("principal", "add", f"ops{i}", "--role", "admin", "--cert", str(ident.cert))
        out.append(ident)
    time.sleep(2.5)  # the running node trusts newly pinned certificates within 2 s
    return out


def test_the_same_batch_without_proofs_is_one_request(
    node: NodeProcess, callers: list[Identity]
) -> None:
    caller = callers[0]
    batch = {"hashes": [{"type": "sha256", "value": HASH}] * 2_000}
    with node.client(caller) as c:
        r = c.post("/api/v1/match", json=batch)
        assert r.status_code == 200
        statuses = [c.get(f"/api/v1/match/sha256/{HASH}").status_code for _ in range(30)]
    assert 429 not in statuses


def test_duplicate_proofs_in_one_batch_are_charged(
    node: NodeProcess, callers: list[Identity]
) -> None:
    caller = callers[1]
    batch = {"hashes": [{"type": "sha256", "value": HASH}] * 2_000}
    with node.client(caller) as c:
        r = c.post("/api/v1/match?proof=true", json=batch)
        assert r.status_code == 200
        assert r.json()["hits"] == 2_000
        # 2,000 proofs cost 40 requests' worth: with a burst of 60 and a refill
        # of 1/s, the caller is out of budget within a few more requests.
        statuses = [c.get(f"/api/v1/match/sha256/{HASH}").status_code for _ in range(30)]
    assert 429 in statuses


def test_selective_taxii_filter_is_charged_for_the_entries_it_reads(
    node: NodeProcess, callers: list[Identity]
) -> None:
    caller = callers[2]
    url = f"/taxii2/hashfed/collections/{collection_id('au-argos', 'baseline')}/objects/"
    headers = {"accept": "application/taxii+json;version=2.1"}
    # An id that is nowhere: each request reads the whole list to find nothing.
    params = {"match[id]": f"indicator--{uuid.uuid4()}"}
    with node.client(caller) as c:
        statuses = [c.get(url, params=params, headers=headers).status_code for _ in range(45)]
    assert statuses[0] == 200
    assert 429 in statuses
