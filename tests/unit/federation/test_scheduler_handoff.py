"""Several processes of one node: notifies handed to the scheduler's holder, lock takeover."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from config import PeerSettings
from federation.scheduler import FederationRuntime
from federation.scheduler_lock import (
    LOCK_RETRY_SECONDS,
    MIN_LOCK_RETRY_SECONDS,
    retry_seconds,
)
from node.log.proofs import ProofCache
from node.node import Node
from node.store import Store

# serial: it measures time (see tests/conftest.py).
pytestmark = pytest.mark.serial

NodeFactory = Callable[..., Node]


class _State:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.peer_status: Any = None
        self.proofs = ProofCache()
        self.overlaps: Any = None


def _peer(node_id: str, interval: float, *, pull: bool = True) -> PeerSettings:
    return PeerSettings(
        node_id=node_id,
        url="https://127.0.0.1:9",
        fingerprint="sha256:" + "0" * 64,
        subscribe=["*"] if pull else [],
        interval_seconds=interval,
    )


def _pending(store: Store) -> list[str]:
    table = store._pull_table()
    with store.read() as conn:
        return [r.peer for r in conn.execute(table.select())]


def test_pull_requests_coalesce_per_peer_and_are_taken_once(store: Store) -> None:
    store.request_pull(peer="nl-nca")
    store.request_pull(peer="nl-nca")
    store.request_pull(peer="au-argos")
    assert store.take_pull_requests() == ["au-argos", "nl-nca"]
    assert store.take_pull_requests() == []


def test_a_request_newer_than_the_one_read_is_not_lost(store: Store) -> None:
    store.request_pull(peer="nl-nca")
    table = store._pull_table()
    with store.write() as conn:  # as if a notify arrived between the read and the delete
        conn.execute(table.update().values(requested_ms=table.c.requested_ms + 1))
    # take_pull_requests reads, then deletes only rows no newer than it read.
    with store.read() as conn:
        before = conn.execute(table.select()).all()
    assert len(before) == 1
    assert store.take_pull_requests() == ["nl-nca"]
    assert store.take_pull_requests() == []


def test_retry_is_half_the_shortest_pulled_interval_within_bounds() -> None:
    assert retry_seconds([]) == LOCK_RETRY_SECONDS
    assert retry_seconds([_peer("a", 60), _peer("b", 8)]) == 4.0
    assert retry_seconds([_peer("a", 60), _peer("b", 2, pull=False)]) == LOCK_RETRY_SECONDS
    assert retry_seconds([_peer("a", 0.5)]) == MIN_LOCK_RETRY_SECONDS


def test_notify_to_a_process_without_the_scheduler_reaches_the_holder(
    node_factory: NodeFactory,
) -> None:
    first = node_factory("nl-nca")
    settings = first.settings.model_copy(update={"peers": [_peer("au-argos", 3600)]})
    first.settings = settings
    second = Node.open(settings)
    holder, other = FederationRuntime(), FederationRuntime()
    stop_holder = holder.start(_State(first))
    stop_other = other.start(_State(second))
    try:
        assert holder.holds_scheduler
        assert not other.holds_scheduler
        assert not other.trigger("nobody")  # not a peer: nothing handed over
        assert _pending(second.store) == []
        assert other.trigger("au-argos")
        assert _pending(second.store) == ["au-argos"]
        deadline = time.monotonic() + 5  # the holder's watcher takes it within 0.25 s
        while _pending(second.store) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _pending(second.store) == []
    finally:
        stop_other()
        stop_holder()
        second.close()


def test_a_second_process_takes_over_when_the_holder_stops(node_factory: NodeFactory) -> None:
    first = node_factory("nl-nca")
    settings = first.settings.model_copy(update={"peers": [_peer("au-argos", 2.0)]})
    first.settings = settings
    second = Node.open(settings)
    holder, other = FederationRuntime(), FederationRuntime()
    stop_holder = holder.start(_State(first))
    stop_other = other.start(_State(second))
    try:
        assert not other.holds_scheduler
        stop_holder()
        t0 = time.monotonic()
        while not other.holds_scheduler and time.monotonic() - t0 < 5:
            time.sleep(0.05)
        assert other.holds_scheduler
        assert time.monotonic() - t0 < 2.0  # retried at half the 2 s interval
    finally:
        stop_other()
        second.close()


def test_nodes_in_separate_schemas_do_not_share_the_scheduler_lock(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("the advisory lock is PostgreSQL's; SQLite locks a file per data folder")
    other_schema = "t_" + secrets.token_hex(6)
    base, _, _ = db_url.partition("?")
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {other_schema}"))
    ours = Store.open(db_url)
    theirs = Store.open(f"{base}?options=-csearch_path%3D{other_schema}")
    held = []
    try:
        held.append(ours.try_advisory_lock(key=1))
        assert held[0] is not None
        assert ours.try_advisory_lock(key=1) is None  # another process of the same node
        held.append(theirs.try_advisory_lock(key=1))
        assert held[1] is not None  # another node in the same database
    finally:
        for conn in held:
            if conn is not None:
                conn.close()
        ours.close()
        theirs.close()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {other_schema} CASCADE"))
        admin.dispose()


def test_a_pull_ending_during_stop_does_not_hang_the_shutdown(node_factory: NodeFactory) -> None:
    # A pull that ends while the scheduler shuts down reschedules its job;
    # APScheduler's shutdown holds the job store while waiting for that job.
    node = node_factory("nl-nca")
    node.settings = node.settings.model_copy(update={"peers": [_peer("au-argos", 3600)]})
    for i in range(20):
        runtime = FederationRuntime()
        stop = runtime.start(_State(node))
        runtime.trigger("au-argos")  # refused at once: the pull ends and reschedules
        time.sleep(0.002 * i)
        stopper = threading.Thread(target=stop, daemon=True)
        stopper.start()
        stopper.join(timeout=15)
        assert not stopper.is_alive(), "stop() hung"
