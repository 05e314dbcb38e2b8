"""The audit buffer never loses a record silently.

While the database refuses writes (SQLite's real SQLITE_FULL, the database
capped at its size) records are kept and retried in order; past the bound the
oldest are dropped and a chained gap record says how many; at shutdown the
count is saved and becomes a gap record at the next start.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crypto.errors import StorageFullError
from node.identity.audit import (
    GAP_ACTION,
    LOST_FILE,
    AuditBuffer,
    lost_on_file,
    verify_audit_chain,
)
from node.store import AuditRow, Store

PAD = "x" * 5000  # bigger than a database page: every record needs new pages


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'audit.db'}")
    s.append_audit(actor="setup", action="node.start", detail={})
    yield s
    s.close()


def _rows(store: Store) -> list[AuditRow]:
    return store.audit_records(after_id=0, limit=100_000)


def _add(buffer: AuditBuffer, first: int, last: int) -> None:
    for i in range(first, last):
        buffer.add(actor="partner-a", action="match", count=1, hits=1, n=i, pad=PAD)


def _numbers(rows: list[AuditRow]) -> list[int]:
    return [json.loads(r.detail)["n"] for r in rows if r.action == "match" and '"n"' in r.detail]


def test_records_refused_by_a_full_disk_are_kept_and_written_in_order(
    store: Store, full_disk: Any
) -> None:
    buffer = AuditBuffer(store)  # not started: flushed by hand
    with full_disk(store):
        _add(buffer, 0, 300)
        with pytest.raises(StorageFullError):
            buffer.flush()
        _add(buffer, 300, 400)  # newer records queue behind the kept ones
        for _ in range(3):  # queries that hit nothing keep summing while it is down
            buffer.add(actor="partner-a", action="match", count=5, aggregate=True, hits=0)
            with pytest.raises(StorageFullError):
                buffer.flush()
        assert buffer.pending == 401
        assert len(_rows(store)) == 1  # nothing written, nothing half-written
    buffer.flush()  # space freed: the next interval writes everything

    rows = _rows(store)
    assert _numbers(rows) == list(range(400))
    [summed] = [r for r in rows if '"requests"' in r.detail]
    assert (summed.count, json.loads(summed.detail)["requests"]) == (15, 3)
    result = verify_audit_chain(store)
    assert (result.ok, result.records, result.gaps, result.lost) == (True, 402, 0, 0)
    assert buffer.pending == 0


def test_bound_hit_drops_the_oldest_and_a_gap_record_comes_first(
    store: Store, full_disk: Any
) -> None:
    buffer = AuditBuffer(store, max_pending=50)
    with full_disk(store):
        _add(buffer, 0, 30)
        with pytest.raises(StorageFullError):
            buffer.flush()
        _add(buffer, 30, 120)  # past the bound: the oldest go, counted
        assert (buffer.pending, buffer.lost) == (50, 70)
    buffer.flush()

    rows = _rows(store)[1:]
    gap = rows[0]
    assert (gap.action, gap.count) == (GAP_ACTION, 70)
    detail = json.loads(gap.detail)
    assert 0 < detail["first_ms"] <= detail["last_ms"]
    assert "buffer full" in detail["reason"]
    assert _numbers(rows[1:]) == list(range(70, 120))
    result = verify_audit_chain(store)
    assert (result.ok, result.gaps, result.lost) == (True, 1, 70)
    assert buffer.lost == 0


def test_gap_record_is_chained_like_any_other(store: Store, full_disk: Any) -> None:
    from sqlalchemy import text

    buffer = AuditBuffer(store, max_pending=5)
    with full_disk(store):
        _add(buffer, 0, 20)
    buffer.flush()
    buffer.add(actor="partner-a", action="match", count=1)
    buffer.flush()
    gap = next(r for r in _rows(store) if r.action == GAP_ACTION)
    with store.engine.begin() as conn:  # hiding the loss breaks the chain
        conn.execute(text("UPDATE audit SET count = 0 WHERE id = :id"), {"id": gap.id})
    result = verify_audit_chain(store)
    assert (result.ok, result.first_bad_id) == (False, gap.id)


def test_close_while_refused_saves_the_count_and_the_next_start_records_the_gap(
    store: Store, full_disk: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lost_file = tmp_path / LOST_FILE
    buffer = AuditBuffer(store, lost_file=lost_file, interval=0.05).start()
    with full_disk(store), caplog.at_level(logging.WARNING, logger="hashfed.audit"):
        _add(buffer, 0, 100)
        buffer.add(actor="partner-a", action="match", count=3, aggregate=True, hits=0)
        buffer.close()
    assert "101 records could not be written and are lost" in caplog.text
    assert PAD not in caplog.text
    assert lost_on_file(lost_file) == 101
    assert len(_rows(store)) == 1

    AuditBuffer(store, lost_file=lost_file).flush()  # the next start
    [gap] = [r for r in _rows(store) if r.action == GAP_ACTION]
    assert gap.count == 101
    assert "shutdown" in json.loads(gap.detail)["reason"]
    assert lost_on_file(lost_file) == 0  # recorded; the file stays as the reserve
    result = verify_audit_chain(store)
    assert (result.ok, result.gaps, result.lost) == (True, 1, 101)


def test_adding_never_raises_and_the_writer_retries_by_itself(store: Store, full_disk: Any) -> None:
    buffer = AuditBuffer(store, interval=0.02, max_pending=40).start()
    try:
        with full_disk(store):
            _add(buffer, 0, 100)  # through failing back-pressure flushes and the bound
            time.sleep(0.1)
            assert buffer.pending == 40
        deadline = time.monotonic() + 5
        while buffer.pending and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        buffer.close()
    result = verify_audit_chain(store)
    assert (result.ok, result.gaps, result.lost) == (True, 1, 60)
    assert _numbers(_rows(store)) == list(range(60, 100))


def test_count_of_lost_records_is_saved_even_when_the_disk_is_full(
    store: Store, full_disk: Any, tmp_path: Path
) -> None:
    # The file's space is reserved at start; at shutdown it is rewritten in place.
    lost_file = tmp_path / LOST_FILE
    buffer = AuditBuffer(store, lost_file=lost_file).start()
    reserved = lost_file.stat().st_size
    assert reserved > 0
    assert lost_on_file(lost_file) == 0
    with full_disk(store):
        _add(buffer, 0, 100)
        buffer.close()
    assert lost_on_file(lost_file) == 100
    assert lost_file.stat().st_size <= reserved
