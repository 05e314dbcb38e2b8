"""Keeping a process's matcher current with the database: the log is the change feed.

Whoever commits to a list — this process, the CLI, another serve process on
the same database, a pull — appends entries to its log and raises its size
in ``list_state``. The :class:`LogFollower` keeps, per list, the log size
its matcher reflects (the *watermark*); on each check it reads every list's
size (one query) and applies the entries ``[watermark, size)`` of each list
that grew. One background thread per process wakes on the store's change
watch (SQLite ``PRAGMA data_version`` every 50 ms, PostgreSQL ``LISTEN``)
and polls the sizes every second regardless.

Applying a range is idempotent: for each touched ``(type, value)`` the state
before is read from the index itself, the range's entries are folded over it
(add on present keeps the old category; remove on absent does nothing), and
only the difference goes to the index. So a range applied twice, or applied
from a watermark older than what the index already holds (the start-up
load, whose watermark is read before the content), ends where the fold of
the whole log ends. Every application runs under one lock, so the index is
never behind one writer while ahead of another.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crypto.errors import StoreError
from node.background import BackgroundJob
from node.log.kinds import ALLOW_KIND
from node.log.lists import ContentChange
from node.match.index.segment import Segment
from node.match.matcher import Matcher
from node.store import ChangeWatch, ListRow, Store, now_ms

log = logging.getLogger("hashfed.match")

# A backlog beyond this many entries (and beyond what the index holds) is
# cheaper to rebuild from the content table than to replay entry by entry.
REBUILD_FROM = 1_000_000
# Fallback poll of every list's size, whatever the change watch says.
POLL_SECONDS = 1.0
# Longest wait on the change watch, so a stop is noticed promptly.
_WAIT_SLICE = 0.25
_ENTRY_PAGE = 65_536

# (op, hash_type, value, category): an entry or a content change, in log order.
Op = tuple[str, str, str, str]


def net_changes(matcher: Matcher, list_id: int, ops: Iterable[Op]) -> list[ContentChange]:
    """What ``ops`` change in the matcher for ``list_id``, given what it holds now.

    The result, applied with :meth:`Matcher.apply`, leaves every touched key
    as the fold of ``ops`` over the index's current state for it.
    """
    order: dict[tuple[str, str], None] = {}
    seq: list[Op] = []
    for op in ops:
        seq.append(op)
        order.setdefault((op[1], op[2]), None)
    by_type: dict[str, list[str]] = {}
    for htype, value in order:
        by_type.setdefault(htype, []).append(value)
    before: dict[tuple[str, str], list[str]] = {}
    for htype, values in by_type.items():
        for value, cats in zip(values, matcher.categories_of(list_id, htype, values), strict=True):
            before[(htype, value)] = cats
    after: dict[tuple[str, str], str | None] = {k: (c[0] if c else None) for k, c in before.items()}
    for kind, htype, value, category in seq:
        key = (htype, value)
        if kind == "add":
            if after[key] is None:
                after[key] = category
        else:
            after[key] = None
    removes: list[ContentChange] = []
    adds: list[ContentChange] = []
    for key, cats in before.items():
        now = after[key]
        if cats == ([] if now is None else [now]):
            continue
        # Every ref the list has for the key goes, so an index that somehow
        # held two categories for one key heals to one.
        removes.extend(ContentChange("remove", list_id, key[0], key[1], c) for c in cats)
        if now is not None:
            adds.append(ContentChange("add", list_id, key[0], key[1], now))
    return removes + adds


@dataclass
class FollowerStats:
    checks: int = 0
    last_check_ms: int = 0
    entries_applied: int = 0
    apply_calls: int = 0
    last_apply_us: int = 0
    max_apply_us: int = 0
    # Commit (the entry's timestamp) to applied here, for entries seen in the log.
    last_commit_to_applied_ms: int = 0
    max_commit_to_applied_ms: int = 0
    rebuilds: int = 0
    errors: int = 0
    last_error: str = ""
    database_sizes: dict[int, int] = field(default_factory=dict)


class LogFollower(BackgroundJob):
    """Follows every list's log by watermark and applies it to one :class:`Matcher`."""

    thread_name = "log-follower"

    def __init__(
        self,
        store: Store,
        matcher: Matcher,
        *,
        poll_seconds: float = POLL_SECONDS,
        rebuild_from: int = REBUILD_FROM,
    ) -> None:
        self.store = store
        self.matcher = matcher
        self.poll_seconds = poll_seconds
        self.rebuild_from = rebuild_from
        self._applied: dict[int, int] = {}
        self._ahead: dict[int, int] = {}
        # Every list's row, read with the sizes: matching names a hit's list
        # and decides who may see it without a query, so a hit in a list the
        # caller may not see costs what a miss costs.
        self._lists: dict[int, ListRow] = {}
        self._by_name: dict[tuple[str, str], ListRow] = {}
        self._lock = threading.RLock()  # one application at a time, any thread
        self._stats = FollowerStats()
        super().__init__()
        self._watch: ChangeWatch | None = None  # the thread's, while it runs

    # --- loading ----------------------------------------------------------------------------

    def load(self) -> int:
        """Load the matcher from the content table; returns the count of hashes.

        The watermarks are read first: whatever commits during the load is
        replayed by the next check, harmlessly if the load already saw it.
        """
        with self._lock:
            sizes = self.store.list_sizes()
            self._read_lists()
            total = self.matcher.load(self.store)
            after = self.store.list_sizes()
            self._applied = dict(sizes)
            # A list that grew during the load may hold more in the index than
            # its watermark says, until the follower has caught up past it.
            self._ahead = {lid: n for lid, n in after.items() if n != sizes.get(lid, 0)}
            self._stats.database_sizes = dict(sizes)
            return total

    # --- segments (node/match/segments.py) ------------------------------------------------

    def adopt(self, segment: Segment) -> bool:
        """Start from ``segment`` and catch up from its watermarks; False if it is too old.

        Too old: some list's log is shorter than the segment says (another
        database behind the same URL), or the backlog past it is bigger than
        a rebuild. The caller then loads from the database.
        """
        with self._lock:
            sizes = self.store.list_sizes()
            if any(sizes.get(lid, 0) < mark for lid, mark in segment.watermarks.items()):
                return False
            rows = sum(len(spec["arrays"]["refs"]) for spec in segment.indexes.values())
            backlog = sum(max(0, n - segment.watermarks.get(lid, 0)) for lid, n in sizes.items())
            if backlog > self.rebuild_from and backlog > rows:
                return False
            self._read_lists()
            self.matcher.adopt_segment(segment)
            self._applied = dict(segment.watermarks)
            self._ahead = {}
            self._stats.database_sizes = dict(sizes)
        self.check()
        return True

    def swap(self, segment: Segment) -> None:
        """Replace the matcher's state with ``segment`` plus the log this process applied past it.

        The new state is built aside and replaces the old one in one
        assignment, so a query sees one or the other.
        """
        with self._lock:
            fresh = Matcher(pdq_min_quality=self.matcher.pdq_min_quality)
            fresh.adopt_segment(segment)
            for lid, mark in self._applied.items():
                start = segment.watermarks.get(lid, 0)
                if mark > start:
                    self._replay(fresh, lid, start, mark)
            for lid, mark in segment.watermarks.items():
                self._applied[lid] = max(mark, self._applied.get(lid, 0))
            self._ahead = {}
            self.matcher.take_state(fresh)

    def segment_view(self) -> tuple[dict[int, int], Matcher] | None:
        """Watermarks and a frozen copy of the matcher that is exactly their fold.

        None while the index may hold more than its watermarks say (just
        after a load from the content table): a segment must be exact.
        """
        with self._lock:
            if self._ahead:
                return None
            return dict(self._applied), self.matcher.frozen()

    def _replay(self, matcher: Matcher, list_id: int, start: int, end: int) -> None:
        for page in self.store.iter_entry_pages(
            list_id=list_id, start=start, end=end, page=_ENTRY_PAGE
        ):
            ops = [(e[1], e[2], e[3], e[4]) for e in page]
            changes = net_changes(matcher, list_id, ops)
            if changes:
                matcher.apply(changes)

    # --- following ----------------------------------------------------------------------------

    def check(self) -> int:
        """Read every list's size and apply what it has not applied; returns entries applied."""
        with self._lock:
            sizes = self.store.list_sizes()
            self._read_lists()
            st = self._stats
            st.checks += 1
            st.last_check_ms = now_ms()
            st.database_sizes = sizes
            behind = {lid: (self._applied.get(lid, 0), size) for lid, size in sizes.items()}
            behind = {lid: ws for lid, ws in behind.items() if ws[1] > ws[0]}
            for lid, size in sizes.items():
                if size < self._applied.get(lid, 0):
                    # A log never shrinks; a smaller size is another database
                    # behind the same URL (restored backup): start over.
                    log.warning(
                        "list %d shrank from %d to %d entries; rebuilding",
                        lid,
                        self._applied[lid],
                        size,
                    )
                    return self._rebuild()
            backlog = sum(s - w for w, s in behind.values())
            if backlog > self.rebuild_from and backlog > self.matcher_size():
                return self._rebuild()
            applied = 0
            for lid, (start, end) in behind.items():
                try:
                    applied += self._catch_up(lid, start, end)
                except StoreError as exc:
                    # One list's broken log must not hold back every other list.
                    st.errors += 1
                    st.last_error = type(exc).__name__
                    log.error("log follower: list %d: %s", lid, exc)
            return applied

    def lists(self) -> Mapping[int, ListRow]:
        """Every list's row as of the last check (a snapshot; replaced, never changed)."""
        return self._lists

    def find(self, owner: str, name: str) -> ListRow | None:
        """The row of ``owner/name`` as of the last check, or None; no database read."""
        return self._by_name.get((owner, name))

    def _read_lists(self) -> None:
        rows = self.store.all_lists()
        self._lists = {r.id: r for r in rows}
        self._by_name = {(r.owner, r.name): r for r in rows}
        self.matcher.allow = {r.id: r.allow_distance for r in rows if r.kind == ALLOW_KIND}

    def note_commit(
        self,
        list_id: int,
        start: int,
        end: int,
        changes: Sequence[ContentChange] | None = None,
    ) -> None:
        """This process committed entries ``[start, end)`` of a list: apply them now.

        With ``changes`` (the commit's content changes, in order) and no gap
        before ``start``, they are applied without reading the log back;
        otherwise the log is read from the watermark to ``end``.
        """
        with self._lock:
            if list_id not in self._lists:  # created by this process since the last check
                self._read_lists()
            mark = self._applied.get(list_id, 0)
            if end <= mark:
                return
            if changes is not None and start == mark and list_id not in self._ahead:
                # The index is the fold up to ``mark`` and the writer's changes
                # are exact against it: no index lookups before applying them.
                started = time.perf_counter()
                self.matcher.apply(changes)
                self._count(len(changes), started, None)
                self._applied[list_id] = end
                return
            self._catch_up(list_id, mark, end)

    def _catch_up(self, list_id: int, start: int, end: int) -> int:
        pos = start
        for page in self.store.iter_entry_pages(
            list_id=list_id, start=start, end=end, page=_ENTRY_PAGE
        ):
            self._apply(list_id, ((e[1], e[2], e[3], e[4]) for e in page), page[-1][5])
            pos += len(page)
            self._applied[list_id] = pos
        if pos >= self._ahead.get(list_id, pos + 1):
            del self._ahead[list_id]
        return pos - start

    def _apply(self, list_id: int, ops: Iterable[Op], last_ts_ms: int | None) -> None:
        started = time.perf_counter()
        counted: list[Op] = list(ops)
        changes = net_changes(self.matcher, list_id, counted)
        if changes:
            self.matcher.apply(changes)
        self._count(len(counted), started, last_ts_ms)

    def _count(self, entries: int, started: float, last_ts_ms: int | None) -> None:
        took = int(1e6 * (time.perf_counter() - started))
        st = self._stats
        st.apply_calls += 1
        st.entries_applied += entries
        st.last_apply_us = took
        st.max_apply_us = max(st.max_apply_us, took)
        if last_ts_ms is not None:
            lag = max(0, now_ms() - last_ts_ms)
            st.last_commit_to_applied_ms = lag
            st.max_commit_to_applied_ms = max(st.max_commit_to_applied_ms, lag)

    def _rebuild(self) -> int:
        before = sum(self._applied.values())
        self.load()
        self._stats.rebuilds += 1
        return max(0, sum(self._applied.values()) - before)

    def matcher_size(self) -> int:
        return sum(s["codes"] for s in self.matcher.stats().values())

    def watermark(self, list_id: int) -> int:
        with self._lock:
            return self._applied.get(list_id, 0)

    # --- the background thread ---------------------------------------------------------

    def _run(self) -> None:
        watch: ChangeWatch | None = None
        last_poll = 0.0
        while not self._stop.is_set():
            try:
                if watch is None:
                    watch = self._watch = self.store.watch_changes()
                    changed = True  # what was committed before the watch began
                else:
                    changed = watch.wait(min(_WAIT_SLICE, self.poll_seconds))
                if changed or time.monotonic() - last_poll >= self.poll_seconds:
                    last_poll = time.monotonic()
                    self.check()
            except Exception as exc:
                # The thread must outlive a database outage: log, retry.
                self._stats.errors += 1
                self._stats.last_error = type(exc).__name__
                log.exception("log follower: check failed; retrying")
                if watch is not None:
                    with contextlib.suppress(Exception):  # already broken
                        watch.close()
                    watch = self._watch = None
                self._stop.wait(0.5)
        if watch is not None:
            watch.close()
        self._watch = None

    # --- status ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Applied vs database sizes per list, lag, and timings (no hash values)."""
        # No lock: a status page must answer while a long apply runs.
        st = self._stats
        sizes, applied = dict(st.database_sizes), dict(self._applied)
        lists = [
            {"list_id": lid, "applied": applied.get(lid, 0), "database": size}
            for lid, size in sorted(sizes.items())
        ]
        return {
            "running": self._thread is not None and self._thread.is_alive(),
            "lag_entries": sum(max(0, x["database"] - x["applied"]) for x in lists),
            "lists": lists,
            "checks": st.checks,
            "last_check_ms": st.last_check_ms,
            "entries_applied": st.entries_applied,
            "apply_calls": st.apply_calls,
            "last_apply_us": st.last_apply_us,
            "max_apply_us": st.max_apply_us,
            "last_commit_to_applied_ms": st.last_commit_to_applied_ms,
            "max_commit_to_applied_ms": st.max_commit_to_applied_ms,
            "rebuilds": st.rebuilds,
            "errors": st.errors,
            "last_error": st.last_error,
        }
