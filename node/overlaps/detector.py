"""Finding overlaps: entries of one list equal or near to entries of another owner's list.

The detector trails the log follower (:mod:`node.match.follower`): for each
list it keeps a persisted watermark, the log size it has checked, and
checks the entries between it and the follower's watermark, a batch at a
time, against the in-memory indexes, which by then hold every entry the
follower applied. Exact types compare by equality, PDQ within
``pdq_distance``. An overlap found when either side's entry arrives is the
same overlap (pairs are stored ``list_a < list_b``), so two lists growing
at once still meet: whichever batch runs second sees the other's entries.

Allow-lists are never checked and never a side of an overlap; a new entry
that is on an allow-list (exact, or PDQ within that list's own distance)
overlaps nothing. The batch's overlaps and the watermark are one
transaction: a restart resumes after the last batch, and no list is ever
rescanned. Hash values are never logged; only counts are.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from crypto.errors import WriteLockTimeoutError
from node.background import BackgroundJob
from node.log.hashes import REGISTRY
from node.log.kinds import ALLOW_KIND
from node.match.matcher import Matcher
from node.store import EntryTuple, ListRow, OverlapRow, Store, now_ms

log = logging.getLogger("hashfed.overlaps")

# Entries per batch: one log read, one index search, one transaction.
BATCH = 65_536
POLL_SECONDS = 0.5

# Called with each batch of overlaps this process recorded first, and the
# list rows they name (by id), after the transaction committed.
OverlapListener = Callable[[Sequence[OverlapRow], Mapping[int, ListRow]], None]


@dataclass
class DetectorStats:
    entries_checked: int = 0
    overlaps_found: int = 0
    batches: int = 0
    last_batch_us: int = 0
    max_batch_us: int = 0
    errors: int = 0
    last_error: str = ""


class OverlapDetector(BackgroundJob):
    """Checks every newly applied entry against every other owner's lists."""

    thread_name = "overlaps"

    def __init__(
        self,
        store: Store,
        matcher: Matcher,
        *,
        lists: Callable[[], Mapping[int, ListRow]],
        applied: Callable[[int], int],
        pdq_distance: int = 31,
        batch: int = BATCH,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.store = store
        self.matcher = matcher
        self._lists = lists
        self._applied = applied
        self.pdq_distance = pdq_distance
        self.batch = batch
        self.poll_seconds = poll_seconds
        # Where a webhook (or anything else) hears of new overlaps.
        self.listeners: list[OverlapListener] = []
        # Whether this process's thread detects now. Several serving processes
        # would each do the same work: the one that runs the node's scheduler
        # detects (the serve command sets this); the others follow its marks.
        self.active: Callable[[], bool] = lambda: True
        self._marks: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stats = DetectorStats()
        super().__init__()

    def load(self) -> None:
        """Read the persisted watermarks (where the last run stopped)."""
        with self._lock:
            self._marks = self.store.overlap_marks()

    # --- one pass ----------------------------------------------------------------------

    def step(self) -> int:
        """Check up to one batch of every list that is behind; returns entries checked."""
        with self._lock:
            rows = self._lists()
            done = 0
            for lid, row in list(rows.items()):
                mark = self._marks.get(lid, 0)
                end = self._applied(lid)
                if end <= mark:
                    continue
                upto = min(end, mark + self.batch)
                done += self._run_batch(row, rows, mark, upto)
            return done

    def run_until_idle(self, *, timeout: float = 60.0) -> int:
        """Step until nothing is behind (tests, the CLI, benchmarks)."""
        total = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = self.step()
            total += n
            if not n:
                break
        return total

    def _run_batch(self, row: ListRow, rows: Mapping[int, ListRow], start: int, end: int) -> int:
        started = time.perf_counter()
        found: list[OverlapRow] = []
        covered: list[tuple[int, int]] = []
        if row.kind == ALLOW_KIND:
            covered = self.covered(row, self._read(row, start, end), rows)
        elif _another_owners_list(row, rows):
            found = self.detect(row, self._read(row, start, end), rows)
        # Else nothing is read: a list of another owner that arrives later
        # checks its own entries against these, which the index holds.
        new = self.store.record_overlaps(overlaps=found, marks={row.id: end}, suppressed=covered)
        self._marks[row.id] = end
        took = int(1e6 * (time.perf_counter() - started))
        st = self._stats
        st.batches += 1
        st.entries_checked += end - start
        st.overlaps_found += len(new)
        st.last_batch_us = took
        st.max_batch_us = max(st.max_batch_us, took)
        if new:
            log.info("overlaps: %d new for list %d", len(new), row.id)
            for listener in self.listeners:
                try:
                    listener(new, rows)
                except Exception:  # one listener's failure must not stop detection
                    log.exception("overlap listener failed")
        return end - start

    def _read(self, row: ListRow, start: int, end: int) -> list[EntryTuple]:
        entries: list[EntryTuple] = []
        for page in self.store.iter_entry_pages(list_id=row.id, start=start, end=end):
            entries.extend(page)
        return entries

    # --- detection ---------------------------------------------------------------------

    def detect(
        self, row: ListRow, entries: Sequence[EntryTuple], rows: Mapping[int, ListRow]
    ) -> list[OverlapRow]:
        """The overlaps of ``row``'s ``entries`` (adds) with other owners' lists now indexed."""
        adds = [e for e in entries if e[1] == "add"]
        if not adds or not _another_owners_list(row, rows):
            return []
        # Comprehensions, not one append per entry: this loop is the hot part.
        by_type: dict[str, tuple[list[int], list[str]]] = {}
        types = {e[2] for e in adds}
        for htype in types:
            part = adds if len(types) == 1 else [e for e in adds if e[2] == htype]
            by_type[htype] = ([e[0] for e in part], [e[3] for e in part])
        top = max(rows) + 1
        other = np.zeros(top + 1, bool)  # lists of another owner that can overlap
        allow = np.full(top + 1, -1, np.int64)  # allow-lists: their PDQ distance
        for lid, r in rows.items():
            if r.kind == ALLOW_KIND:
                allow[lid] = r.allow_distance
            elif r.owner != row.owner:
                other[lid] = True
        found: list[OverlapRow] = []
        for htype, (seqs, values) in by_type.items():
            found.extend(self._detect_type(row, htype, seqs, values, other, allow))
        return found

    def _detect_type(
        self,
        row: ListRow,
        htype_name: str,
        seqs: list[int],
        values: list[str],
        other: NDArray[np.bool_],
        allow: NDArray[np.int64],
    ) -> list[OverlapRow]:
        near = REGISTRY[htype_name].match == "hamming"
        keys = _keys(htype_name, values)
        radius = self.pdq_distance if near else 0
        reach = max(radius, int(allow.max())) if near else 0
        qpos, lids, dists, stored = self.matcher.search_keys(htype_name, keys, reach)
        if not len(qpos):
            return []
        # A list created after the rows were read is neither side yet.
        known = lids < len(other)
        lids_c = np.where(known, lids, 0)
        on_allow = known & (dists <= allow[lids_c])
        suppressed = np.zeros(len(values), bool)
        suppressed[qpos[on_allow]] = True
        keep = known & other[lids_c] & (dists <= radius) & ~suppressed[qpos]
        idx = np.nonzero(keep)[0]
        if near and len(idx) and stored is not None and (allow >= 0).any():
            # The other side's code may be on an allow-list while this one is not.
            theirs_on_allow = self._on_allow(htype_name, stored[idx], allow)
            idx = idx[~theirs_on_allow]
        if not len(idx):
            return []
        # The other side's seq: its content row for the value it holds.
        wanted: dict[int, list[tuple[int, str, int]]] = {}
        for k in idx.tolist():
            qp = int(qpos[k])
            theirs = stored[k].tobytes().hex() if near and stored is not None else values[qp]
            wanted.setdefault(int(lids[k]), []).append((qp, theirs, int(dists[k])))
        found_ms = now_ms()
        out: list[OverlapRow] = []
        for other_id, hits in wanted.items():
            held = self.store.content_of(
                list_id=other_id, keys={(htype_name, v): None for _, v, _ in hits}
            )
            for qp, theirs, dist in hits:
                got = held.get((htype_name, theirs))
                if got is None:
                    continue  # removed since the index was read
                mine = (row.id, seqs[qp])
                their = (other_id, got[1])
                (la, sa), (lb, sb) = sorted((mine, their))
                out.append(OverlapRow(la, sa, lb, sb, htype_name, dist, found_ms))
        return out

    def covered(
        self, row: ListRow, entries: Sequence[EntryTuple], rows: Mapping[int, ListRow]
    ) -> list[tuple[int, int]]:
        """``(list_id, seq)`` of the block-list entries an allow-list's new ``entries`` cover.

        An allow-list that arrives after an overlap was recorded takes it
        back: overlaps are suppressed whichever came first.
        """
        out: list[tuple[int, int]] = []
        by_type: dict[str, list[str]] = {}
        for _seq, op, type_name, value, _cat, _ts in entries:
            if op == "add":
                by_type.setdefault(type_name, []).append(value)
        for htype_name, values in by_type.items():
            near = REGISTRY[htype_name].match == "hamming"
            keys = _keys(htype_name, values)
            qpos, lids, _d, stored = self.matcher.search_keys(
                htype_name, keys, row.allow_distance if near else 0
            )
            held: dict[int, set[str]] = {}
            for k in range(len(qpos)):
                lid = int(lids[k])
                other = rows.get(lid)
                if other is None or other.kind == ALLOW_KIND:
                    continue
                code = stored[k].tobytes().hex() if near and stored is not None else None
                held.setdefault(lid, set()).add(code or values[int(qpos[k])])
            for lid, vals in held.items():
                got = self.store.content_of(list_id=lid, keys=[(htype_name, v) for v in vals])
                out.extend((lid, seq) for _cat, seq in got.values())
        return out

    def _on_allow(
        self, htype_name: str, keys: NDArray[np.uint8], allow: NDArray[np.int64]
    ) -> NDArray[np.bool_]:
        """Which of ``keys`` are on an allow-list (within its own distance)."""
        qpos, lids, dists, _stored = self.matcher.search_keys(htype_name, keys, int(allow.max()))
        known = lids < len(allow)
        hit = known & (dists <= allow[np.where(known, lids, 0)])
        out = np.zeros(len(keys), bool)
        out[qpos[hit]] = True
        return out

    # --- status ------------------------------------------------------------------------

    def backlog(self) -> int:
        """Entries applied to the indexes that detection has not checked yet."""
        marks = dict(self._marks)
        return sum(max(0, self._applied(lid) - marks.get(lid, 0)) for lid in self._lists())

    def status(self) -> dict[str, Any]:
        """Backlog, counts and timings (no hash values)."""
        st = self._stats
        return {
            "running": self._thread is not None and self._thread.is_alive(),
            "detecting": self.active(),  # False: another process of this node detects
            "backlog_entries": self.backlog(),
            "pdq_distance": self.pdq_distance,
            "entries_checked": st.entries_checked,
            "overlaps_found": st.overlaps_found,
            "batches": st.batches,
            "last_batch_us": st.last_batch_us,
            "max_batch_us": st.max_batch_us,
            "errors": st.errors,
            "last_error": st.last_error,
        }

    # --- the background thread ---------------------------------------------------------

    def _run(self) -> None:
        loaded = False
        while not self._stop.is_set():
            try:
                if not self.active():
                    self.load()  # the detecting process's progress: the backlog shown stays true
                    loaded = False
                else:
                    if not loaded:
                        self.load()
                        loaded = True
                    if self.step():
                        continue  # behind: the next batch at once
            except WriteLockTimeoutError:
                # A long apply holds the one write lock: detection trails it.
                self._stats.errors += 1
                self._stats.last_error = "WriteLockTimeoutError"
                log.warning("overlap detection waits for the write lock; retrying")
                loaded = False
            except Exception as exc:
                # The thread must outlive a database outage: log, retry.
                self._stats.errors += 1
                self._stats.last_error = type(exc).__name__
                log.exception("overlap detection failed; retrying")
                loaded = False  # re-read the watermarks: a batch may not have committed
            self._stop.wait(self.poll_seconds)


def _keys(htype_name: str, values: Sequence[str]) -> NDArray[np.uint8]:
    """Canonical values as the index's key rows (one ``fromhex`` for hex types)."""
    htype = REGISTRY[htype_name]
    if htype.hex_bytes is not None:
        raw = bytes.fromhex("".join(values))
    else:
        raw = b"".join(htype.key(v) for v in values)
    return np.frombuffer(raw, np.uint8).reshape(len(values), htype.key_width)


def _another_owners_list(row: ListRow, rows: Mapping[int, ListRow]) -> bool:
    """Whether any block-list of another owner is held: only such a list can overlap ``row``."""
    return any(r.owner != row.owner and r.kind != ALLOW_KIND for r in rows.values())
