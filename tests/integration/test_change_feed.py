"""Every serving process answers from what the database holds, within a second.

The database is the change feed: a hash added or removed by the CLI while
``hashfed serve`` runs, or through any one of several serve processes on one
PostgreSQL database, matches (or stops matching) in every process within 1 s.
These stop the defect where a removed hash kept matching until a restart.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from _cluster import Cluster, hit_lists, pg_schema, wait_until
from _nodes import NodeProcess, free_port

PG_URL = os.environ.get("HASHFED_TEST_DATABASE_URL")
LIST = "au-argos/cf"
# Commit to matchable, in any process (the design's promise).
WITHIN = 1.0
# serial: it measures time (see tests/conftest.py).
pytestmark = pytest.mark.serial


def _sha() -> str:
    return os.urandom(32).hex()


def test_cli_add_remove_import_while_serving_are_matched_within_a_second(tmp_path: Path) -> None:
    node = NodeProcess("au-argos", tmp_path / "au-argos", free_port()).init()
    node.cli("list", "create", LIST, "--label", "baseline")
    kept, gone = _sha(), _sha()
    node.cli("list", "add", LIST, "sha256", kept, "--category", "A1")
    node.start()
    try:
        with node.client() as c:
            assert hit_lists(c, "sha256", kept) == [(LIST, "A1")]

            node.cli("list", "add", LIST, "sha256", gone, "--category", "B2")
            took = wait_until(lambda: hit_lists(c, "sha256", gone) == [(LIST, "B2")], WITHIN)
            assert took < WITHIN

            # A removed hash must stop matching: the worst defect this stops.
            node.cli("list", "remove", LIST, "sha256", gone)
            took = wait_until(lambda: hit_lists(c, "sha256", gone) == [], WITHIN)
            assert took < WITHIN
            node.cli("list", "publish", LIST)
            time.sleep(0.2)
            assert hit_lists(c, "sha256", gone) == []
            assert hit_lists(c, "sha256", kept) == [(LIST, "A1")]

            shas, pdqs = [_sha() for _ in range(20)], [os.urandom(32).hex() for _ in range(5)]
            csv = tmp_path / "import.csv"
            csv.write_text(
                "".join(f"sha256,{v},C3\n" for v in shas) + "".join(f"pdq,{v},C3\n" for v in pdqs)
            )
            node.cli("list", "import", LIST, str(csv))
            took = wait_until(
                lambda: (
                    all(hit_lists(c, "sha256", v) == [(LIST, "C3")] for v in shas[-3:])
                    and hit_lists(c, "pdq", pdqs[-1]) == [(LIST, "C3")]
                ),
                WITHIN,
            )
            assert took < WITHIN
            assert all(hit_lists(c, "sha256", v) for v in shas)

            status = c.get("/api/v1/status").json()
            follower = status["follower"]
            assert follower["running"]
            assert follower["lag_entries"] == 0
            assert follower["errors"] == 0
            assert follower["entries_applied"] >= 2 + len(shas) + len(pdqs)
    finally:
        node.stop()


def test_a_hash_removed_while_the_server_was_down_does_not_match_after_restart(
    tmp_path: Path,
) -> None:
    node = NodeProcess("au-argos", tmp_path / "au-argos", free_port()).init()
    node.cli("list", "create", LIST, "--label", "baseline")
    h = _sha()
    node.cli("list", "add", LIST, "sha256", h)
    node.start()
    node.stop()
    node.cli("list", "remove", LIST, "sha256", h)
    node.start()
    try:
        with node.client() as c:
            assert hit_lists(c, "sha256", h) == []
    finally:
        node.stop()


@pytest.mark.skipif(not PG_URL, reason="HASHFED_TEST_DATABASE_URL is not set")
def test_three_serve_processes_on_one_postgresql_reflect_each_others_changes(
    tmp_path: Path,
) -> None:
    with pg_schema() as url:
        cluster = Cluster.create("au-argos", tmp_path / "au-argos", url, n=3)
        cluster.cli("list", "create", LIST, "--label", "baseline")
        clients = [p.client() for p in cluster.start().processes]
        try:
            for i in range(3):
                writer, remover = clients[i], clients[(i + 1) % 3]
                h = _sha()
                r = writer.post(
                    f"/api/v1/lists/{LIST}/hashes",
                    json={"hashes": [{"type": "sha256", "value": h, "category": "A1"}]},
                )
                assert r.status_code == 200, r.text
                took = wait_until(
                    lambda h=h: all(hit_lists(c, "sha256", h) == [(LIST, "A1")] for c in clients),
                    WITHIN,
                )
                assert took < WITHIN
                r = remover.post(
                    f"/api/v1/lists/{LIST}/remove",
                    json={"hashes": [{"type": "sha256", "value": h}]},
                )
                assert r.status_code == 200, r.text
                took = wait_until(
                    lambda h=h: all(hit_lists(c, "sha256", h) == [] for c in clients), WITHIN
                )
                assert took < WITHIN
            # And from the CLI, a fourth process on the same database.
            h = _sha()
            cluster.cli("list", "add", LIST, "sha256", h, "--category", "B2")
            took = wait_until(
                lambda: all(hit_lists(c, "sha256", h) == [(LIST, "B2")] for c in clients), WITHIN
            )
            assert took < WITHIN
            for c in clients:
                follower = c.get("/api/v1/status").json()["follower"]
                assert follower["lag_entries"] == 0
                assert follower["errors"] == 0
        finally:
            for c in clients:
                c.close()
            cluster.stop()


@pytest.mark.network
@pytest.mark.skipif(not PG_URL, reason="HASHFED_TEST_DATABASE_URL is not set")
def test_a_list_pulled_by_the_scheduler_holder_is_matchable_through_every_process(
    tmp_path: Path,
) -> None:
    assert PG_URL
    owner = NodeProcess("a", tmp_path / "a", free_port()).init()
    owner_keys = owner.key_args()

    def peer_up(cl: Cluster) -> None:
        cl.cli(
            "peer",
            "add",
            "a",
            owner.url,
            "--cert",
            str(owner.cert),
            *owner_keys,
            "--subscribe",
            "a/*",
            "--interval",
            "1",
        )
        b = cl.processes[0]
        owner.cli(
            "peer", "add", "b", b.url, "--cert", str(b.cert), "--labels", "baseline", "--no-pull"
        )

    owner.start()
    try:
        with pg_schema() as url:
            cluster = Cluster.create("b", tmp_path / "b", url, n=3)
            peer_up(cluster)
            kept, gone = _sha(), _sha()
            with owner.client() as c:
                r = c.post("/api/v1/lists", json={"name": "a/pulled", "label": "baseline"})
                assert r.status_code == 201, r.text
                hashes = [{"type": "sha256", "value": v, "category": "A1"} for v in (kept, gone)]
                r = c.post("/api/v1/lists/a/pulled/hashes", json={"hashes": hashes})
                assert r.status_code == 200, r.text
                assert c.post("/api/v1/lists/a/pulled/publish").status_code == 200
            clients = [p.client() for p in cluster.processes]
            try:
                cluster.start()
                # One process pulls (the scheduler holder, 1 s interval); every
                # process must answer from what it wrote.
                wait_until(
                    lambda: all(
                        hit_lists(c, "sha256", v) == [("a/pulled", "A1")]
                        for c in clients
                        for v in (kept, gone)
                    ),
                    20.0,
                )
                with owner.client() as c:
                    r = c.post(
                        "/api/v1/lists/a/pulled/remove",
                        json={"hashes": [{"type": "sha256", "value": gone}]},
                    )
                    assert r.status_code == 200, r.text
                    assert c.post("/api/v1/lists/a/pulled/publish").status_code == 200
                wait_until(lambda: all(hit_lists(c, "sha256", gone) == [] for c in clients), 20.0)
                assert all(hit_lists(c, "sha256", kept) == [("a/pulled", "A1")] for c in clients)
            finally:
                for c in clients:
                    c.close()
                cluster.stop()
    finally:
        owner.stop()
