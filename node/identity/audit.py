"""The audit log: who did what, when, to what, how many — never hash values.

Records are appended by the store inside the transaction of the action they
describe, each chained to the previous one by SHA-256
(:func:`node.store.audit_record_hash`), so deleting or editing a record breaks
the chain at that point and :func:`verify_audit_chain` names it.

Records that could not be written at all (the database refused writes for
longer than the buffer holds, or at shutdown) are never dropped silently: a
chained ``audit.gap`` record says how many were lost and when, and
:func:`verify_audit_chain` reports the gaps.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from node.store import AUDIT_GENESIS, AuditRow, Store, audit_record_hash, now_ms

log = logging.getLogger("hashfed.audit")


GAP_ACTION = "audit.gap"
GAP_ACTOR = "hashfed"
# Written at shutdown when the last flush failed; turned into a gap record at the next start.
LOST_FILE = "audit-lost.json"


@dataclass(frozen=True)
class ChainResult:
    """``records`` intact (before ``first_bad_id`` if broken); ``head``: the last good hash.

    ``gaps``: gap records among them; ``lost``: the records those say were lost.
    """

    ok: bool
    records: int
    first_bad_id: int | None
    head: bytes
    gaps: int = 0
    lost: int = 0


def check_chain(rows: list[AuditRow], prev: bytes = AUDIT_GENESIS) -> tuple[int | None, bytes]:
    """Pure check of consecutive records; returns (first bad id or None, last hash)."""
    for r in rows:
        want = audit_record_hash(prev, r.ts_ms, r.actor, r.action, r.target, r.count, r.detail)
        if r.prev_hash != prev or r.record_hash != want:
            return r.id, prev
        prev = r.record_hash
    return None, prev


def verify_audit_chain(store: Store, *, page: int = 10_000) -> ChainResult:
    """Walk the whole audit log and check every link."""
    prev, after, count, gaps, lost = AUDIT_GENESIS, 0, 0, 0, 0
    while True:
        rows = store.audit_records(after_id=after, limit=page)
        if not rows:
            return ChainResult(True, count, None, prev, gaps, lost)
        bad, prev = check_chain(rows, prev)
        good = len(rows) if bad is None else next(i for i, r in enumerate(rows) if r.id == bad)
        good_rows = rows[:good]
        for r in good_rows:
            if r.action == GAP_ACTION:
                gaps, lost = gaps + 1, lost + r.count
        if bad is not None:
            # ``records`` counts the good records before the first bad one.
            return ChainResult(False, count + len(good_rows), bad, prev, gaps, lost)
        count += len(rows)
        after = rows[-1].id


def record(
    store: Store, *, actor: str, action: str, target: str = "", count: int = 0, **detail: object
) -> None:
    """Append one audit record in its own transaction."""
    store.append_audit(actor=actor, action=action, target=target, count=count, detail=dict(detail))


Record = tuple[str, str, str, int, dict[str, object]]
AggregateKey = tuple[str, str, str, tuple[tuple[str, object], ...]]


@dataclass
class _Lost:
    """Records given up on: how many, between which times (ms), and why."""

    count: int = 0
    first_ms: int = 0
    last_ms: int = 0
    reasons: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.count or self.reasons)

    def add(self, count: int, first_ms: int, last_ms: int, reason: str | None = None) -> None:
        if reason is not None:
            self.reasons.add(reason)
        if count > 0:
            self.first_ms = min(self.first_ms, first_ms) if self.count else first_ms
            self.last_ms = max(self.last_ms, last_ms)
            self.count += count

    def merge(self, other: _Lost) -> None:
        self.add(other.count, other.first_ms, other.last_ms)
        self.reasons |= other.reasons

    def record(self) -> Record:
        detail: dict[str, object] = {
            "first_ms": self.first_ms,
            "last_ms": self.last_ms,
            "reason": ", ".join(sorted(self.reasons)),
        }
        return (GAP_ACTOR, GAP_ACTION, "", self.count, detail)


class AuditBuffer:
    """Buffers high-rate audit records (match queries) and appends them in batches.

    One write transaction per match request would serialise every query on
    the database's write lock; batching writes a few times a second. Records
    added with ``aggregate=True`` (match queries that hit nothing) are summed
    per flush: identical ones become one record whose ``count`` is their total
    and whose ``requests`` detail says how many they were. Every other record
    (every query with a hit) is kept on its own. At thousands of single-hash
    lookups a second, one record per lookup would be the node's main write load
    and tell an auditor nothing more.

    When the database refuses a write (disk full, database down) the batch is
    kept, in order, in front of newer records, and retried every ``interval``;
    aggregated records go on summing. At most ``max_pending`` separate records
    are held: beyond that the oldest are dropped and counted, and the next
    successful flush writes a chained ``audit.gap`` record (count, time range)
    before the records that were kept. If the flush at :meth:`close` fails, the
    number lost is logged and saved to ``lost_file`` (space for it is reserved
    at :meth:`start`, so a full disk does not stop it), which the next buffer
    on that data folder turns into a gap record. Records still in the buffer when
    the process is killed are lost without a trace: at most ``interval``
    seconds' worth while the database accepts writes.
    """

    def __init__(
        self,
        store: Store,
        *,
        interval: float = 0.2,
        max_pending: int = 100_000,
        lost_file: Path | None = None,
    ) -> None:
        self.store = store
        self.interval = interval
        self.max_pending = max_pending
        self.lost_file = lost_file
        # (time added in ms, record), oldest first
        self._pending: list[tuple[int, Record]] = []
        # (actor, action, target, detail items) -> [count, requests, first added ms]
        self._aggregated: dict[AggregateKey, list[int]] = {}
        self._lost = _Lost()
        self._failing = False
        # (separate, aggregated, lost) records taken by a flush that has not finished
        self._in_flight = (0, 0, 0)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time keeps the order
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._load_lost_file()

    def start(self) -> AuditBuffer:
        """Start the writer; reserve ``lost_file``'s space for a shutdown on a full disk."""
        if self.lost_file is not None and not self.lost_file.exists():
            self._save_lost_file(_Lost())
        self._thread.start()
        return self

    @property
    def pending(self) -> int:
        """Records waiting to be written (aggregated ones count once each)."""
        with self._lock:
            return len(self._pending) + len(self._aggregated) + sum(self._in_flight[:2])

    @property
    def lost(self) -> int:
        """Records given up on and not yet reported by a gap record."""
        with self._lock:
            return self._lost.count + self._in_flight[2]

    def add(
        self,
        *,
        actor: str,
        action: str,
        target: str = "",
        count: int = 0,
        aggregate: bool = False,
        **detail: object,
    ) -> None:
        """Queue a record; with ``aggregate``, sum it into its identical siblings. Never raises."""
        ts = now_ms()
        with self._lock:
            if aggregate:
                key = (actor, action, target, tuple(sorted(detail.items())))
                totals = self._aggregated.get(key)
                if totals is None:
                    self._aggregated[key] = [count, 1, ts]
                else:
                    totals[0] += count
                    totals[1] += 1
            else:
                self._pending.append((ts, (actor, action, target, count, dict(detail))))
            full = len(self._pending) + self._in_flight[0] >= self.max_pending
            if full and self._failing:
                self._trim()  # the database refuses writes: bounded memory, losses counted
                full = False
        if full:  # back-pressure rather than unbounded memory
            self._flush_quietly()

    def flush(self) -> None:
        """Append everything queued, in one transaction.

        On failure everything is kept for the next flush and the error is raised.
        """
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
                aggregated, self._aggregated = self._aggregated, {}
                lost, self._lost = self._lost, _Lost()
                self._in_flight = (len(batch), len(aggregated), lost.count)
            records: list[Record] = [lost.record()] if lost else []
            records += [r for _, r in batch]
            for (actor, action, target, items), (count, requests, _ts) in aggregated.items():
                detail = {**dict(items), "requests": requests}
                records.append((actor, action, target, count, detail))
            try:
                if records:
                    self.store.append_audit_many(records)
            except Exception:
                with self._lock:
                    self._in_flight = (0, 0, 0)
                    self._requeue(batch, aggregated, lost)
                    self._failing = True
                raise
            with self._lock:
                self._in_flight = (0, 0, 0)
                self._failing = False
            if lost:
                self._save_lost_file(_Lost())  # now a gap record in the chain

    def _requeue(
        self,
        batch: list[tuple[int, Record]],
        aggregated: dict[AggregateKey, list[int]],
        lost: _Lost,
    ) -> None:
        """Put a batch that was not written back in front of what came since (lock held)."""
        self._pending[:0] = batch
        for key, (count, requests, ts) in aggregated.items():
            totals = self._aggregated.get(key)
            if totals is None:
                self._aggregated[key] = [count, requests, ts]
            else:
                totals[0] += count
                totals[1] += requests
                totals[2] = min(totals[2], ts)
        lost.merge(self._lost)  # the older losses first
        self._lost = lost
        self._trim()

    def _trim(self) -> None:
        """Drop the oldest separate records beyond ``max_pending``, counting them (lock held)."""
        # Records being written count towards the bound; only queued ones can go.
        over = min(len(self._pending) + self._in_flight[0] - self.max_pending, len(self._pending))
        if over > 0:
            dropped = self._pending[:over]
            del self._pending[:over]
            reason = "buffer full while the database refused writes"
            self._lost.add(over, dropped[0][0], dropped[-1][0], reason)

    def _flush_quietly(self) -> bool:
        was_failing = self._failing
        try:
            self.flush()
        except Exception as exc:
            if not was_failing:  # once per outage, not every interval
                log.warning(
                    "audit records could not be written (%s); %d kept, retrying every %.1fs",
                    getattr(exc, "code", type(exc).__name__),
                    self.pending,
                    self.interval,
                )
            return False
        if was_failing:
            log.warning("audit records are being written again")
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._flush_quietly()

    def close(self) -> None:
        """Stop the writer and flush; if that fails, say how many records were lost."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._flush_quietly():
            return
        with self._lock:
            lost = self._lost
            times = [ts for ts, _ in self._pending] + [t[2] for t in self._aggregated.values()]
            if times:
                n = len(self._pending) + len(self._aggregated)
                lost.add(n, min(times), max(times), "not written at shutdown")
            self._pending, self._aggregated, self._lost = [], {}, _Lost()
        log.error("audit: %d records could not be written and are lost", lost.count)
        self._save_lost_file(lost)

    def _save_lost_file(self, lost: _Lost) -> None:
        if self.lost_file is None:
            return
        try:
            _write_lost_file(self.lost_file, lost)
        except OSError as exc:
            log.error("audit: could not save the count of lost records (%s)", exc.strerror)
        else:
            if lost:
                log.error("audit: the count is saved in %s for a gap record", self.lost_file)

    def _load_lost_file(self) -> None:
        if self.lost_file is None or not self.lost_file.exists():
            return
        try:
            body = json.loads(self.lost_file.read_bytes().strip() or b"{}")
            count, first, last = int(body["count"]), int(body["first_ms"]), int(body["last_ms"])
            reasons = [str(r) for r in body.get("reasons", [])]
        except (OSError, ValueError, KeyError, TypeError):
            log.error("audit: %s is unreadable; recording a gap of unknown size", self.lost_file)
            count, first, last, reasons = 0, 0, 0, ["lost records, count unreadable"]
        if count or reasons:
            self._lost.add(count, first, last)
            self._lost.reasons.update(reasons or ["not written at shutdown"])


# The lost-records file keeps this many bytes allocated while the node runs, so
# that the count can be written at shutdown even when the disk is full.
_LOST_FILE_RESERVE = 512


def _write_lost_file(path: Path, lost: _Lost) -> None:
    body = {
        "count": lost.count,
        "first_ms": lost.first_ms,
        "last_ms": lost.last_ms,
        "reasons": sorted(lost.reasons),
    }
    data = json.dumps(body).encode().ljust(_LOST_FILE_RESERVE)
    # In place when it exists: its blocks are allocated already, a full disk allows that.
    with path.open("r+b" if path.exists() else "wb") as fh:
        fh.write(data)
        fh.truncate()
        fh.flush()
        os.fsync(fh.fileno())


def lost_on_file(path: Path) -> int:
    """Records a node lost at its last shutdown and has not yet written a gap record for."""
    try:
        body = json.loads(path.read_bytes().strip() or b"{}")
        return int(body.get("count", 0)) or (1 if body.get("reasons") else 0)
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, TypeError):
        return 1  # unreadable: something was lost
