"""The audit log: who did what, when, to what, how many — never hash values.

Records are appended by the store inside the transaction of the action they
describe, each chained to the previous one by SHA-256
(:func:`node.store.audit_record_hash`), so deleting or editing a record breaks
the chain at that point and :func:`verify_audit_chain` names it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from node.store import AUDIT_GENESIS, AuditRow, Store, audit_record_hash

log = logging.getLogger("hashfed.audit")


@dataclass(frozen=True)
class ChainResult:
    """``records`` intact (before ``first_bad_id`` if broken); ``head``: the last good hash."""

    ok: bool
    records: int
    first_bad_id: int | None
    head: bytes


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
    prev, after, count = AUDIT_GENESIS, 0, 0
    while True:
        rows = store.audit_records(after_id=after, limit=page)
        if not rows:
            return ChainResult(True, count, None, prev)
        bad, prev = check_chain(rows, prev)
        if bad is not None:
            # ``records`` counts the good records before the first bad one.
            good = next(i for i, r in enumerate(rows) if r.id == bad)
            return ChainResult(False, count + good, bad, prev)
        count += len(rows)
        after = rows[-1].id


def record(
    store: Store, *, actor: str, action: str, target: str = "", count: int = 0, **detail: object
) -> None:
    """Append one audit record in its own transaction."""
    store.append_audit(actor=actor, action=action, target=target, count=count, detail=dict(detail))


class AuditBuffer:
    """Buffers high-rate audit records (match queries) and appends them in batches.

    One write transaction per match request would serialise every query on
    the database's write lock; batching writes a few times a second. Records
    added with ``aggregate=True`` (match queries that hit nothing) are summed
    per flush: identical ones become one record whose ``count`` is their total
    and whose ``requests`` detail says how many they were. Every other record
    (every query with a hit) is kept on its own. At thousands of single-hash
    lookups a second, one record per lookup would be the node's main write load
    and tell an auditor nothing more. Records still in the buffer when the
    process is killed are lost: at most ``interval`` seconds' worth.
    """

    def __init__(self, store: Store, *, interval: float = 0.2, max_pending: int = 100_000) -> None:
        self.store = store
        self.interval = interval
        self.max_pending = max_pending
        self._pending: list[tuple[str, str, str, int, dict[str, object]]] = []
        # (actor, action, target, detail items) -> [count, requests]
        self._aggregated: dict[tuple[str, str, str, tuple[tuple[str, object], ...]], list[int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)

    def start(self) -> AuditBuffer:
        self._thread.start()
        return self

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
        """Queue a record; with ``aggregate``, sum it into its identical siblings."""
        with self._lock:
            if aggregate:
                key = (actor, action, target, tuple(sorted(detail.items())))
                totals = self._aggregated.get(key)
                if totals is None:
                    self._aggregated[key] = [count, 1]
                else:
                    totals[0] += count
                    totals[1] += 1
            else:
                self._pending.append((actor, action, target, count, dict(detail)))
            full = len(self._pending) >= self.max_pending
        if full:  # back-pressure rather than unbounded memory
            self.flush()

    def flush(self) -> None:
        """Append everything queued, in one transaction."""
        with self._lock:
            batch, self._pending = self._pending, []
            aggregated, self._aggregated = self._aggregated, {}
        for (actor, action, target, items), (count, requests) in aggregated.items():
            batch.append((actor, action, target, count, {**dict(items), "requests": requests}))
        self.store.append_audit_many(batch)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # pragma: no cover - logged; the next flush retries
                log.exception("audit flush failed")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()
