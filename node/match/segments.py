"""Index segments for a serving process: start from one, merge new ones, swap to them.

Start-up opens the newest segment in the data folder that verifies
(:mod:`node.match.index.segment`) and catches up on the log past its
watermarks; with none usable, it loads from the database as before and
writes a segment in the background, so the next start is fast.

A background thread checks every few seconds:

- a newer generation on disk than the one this process maps: swap to it
  (the log this process applied past its watermarks is replayed onto it);
- the log past the mapped segment's watermarks has grown by
  ``merge_entries``: take the merge lock, write the next generation from
  this process's own (exact, caught-up) state, rename it into place, remove
  older ones, swap to it. Other processes swap at their next check.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from node.background import BackgroundJob
from node.match.follower import LogFollower
from node.match.index.segment import (
    Segment,
    SegmentError,
    StepHook,
    generations,
    open_segment,
    segment_name,
    write_segment,
)
from node.match.index.segment_merge import merge_lock, remove_leftovers, remove_older
from node.store import Store

log = logging.getLogger("hashfed.match")

SEGMENT_FOLDER = "segments"
# Log entries past the mapped segment before a merge writes the next one:
# the private delta each process holds stays around this size.
MERGE_ENTRIES = 65_536
CHECK_SECONDS = 2.0


class SegmentManager(BackgroundJob):
    """Keeps one process's matcher on the newest segment of ``folder``."""

    thread_name = "index-segments"
    stop_timeout = 10.0

    def __init__(
        self,
        folder: Path,
        store: Store,
        follower: LogFollower,
        *,
        merge_entries: int = MERGE_ENTRIES,
        check_seconds: float = CHECK_SECONDS,
        on_step: StepHook | None = None,
    ) -> None:
        self.folder = folder
        self.store = store
        self.follower = follower
        self.merge_entries = merge_entries
        self.check_seconds = check_seconds
        self.on_step = on_step
        self._database_id: str | None = None
        self._segment: Segment | None = None
        self._tick_lock = threading.Lock()
        super().__init__()
        self.stats: dict[str, Any] = {
            "started_from": "",
            "generation": 0,
            "merges": 0,
            "swaps": 0,
            "rejected": 0,
            "last_rejected": "",
        }

    @property
    def database_id(self) -> str:
        if self._database_id is None:
            self._database_id = self.store.database_id()
        return self._database_id

    @property
    def generation(self) -> int:
        return self._segment.generation if self._segment is not None else 0

    # --- start-up ---------------------------------------------------------------------

    def load(self) -> int:
        """Start the matcher from the newest usable segment, else from the database."""
        for gen in generations(self.folder):
            seg = self._open(gen)
            if seg is None:
                continue
            if self.follower.adopt(seg):
                self._segment = seg
                self.stats.update(started_from="segment", generation=seg.generation)
                return self.follower.matcher_size()
            self._reject(seg.path.name, "too old for this database")
            break
        self.stats["started_from"] = "database"
        return self.follower.load()

    def _open(self, gen: int) -> Segment | None:
        try:
            return open_segment(self.folder / segment_name(gen), database_id=self.database_id)
        except SegmentError as exc:
            self._reject(exc.path.name, exc.reason)
            return None

    def _reject(self, name: str, reason: str) -> None:
        self.stats["rejected"] += 1
        self.stats["last_rejected"] = f"{name}: {reason}"
        log.warning("index segment %s not used: %s; rebuilding from the database", name, reason)

    # --- checks -------------------------------------------------------------------------

    def tick(self) -> None:
        """Swap to a newer generation if there is one, else merge if the delta is big."""
        with self._tick_lock:
            found = generations(self.folder)
            if found and found[0] > self.generation:
                for gen in found:
                    if gen <= self.generation:
                        break
                    seg = self._open(gen)
                    if seg is not None:
                        self._swap(seg)
                        return
            if self._backlog() >= self.merge_entries:
                self.merge()

    def _backlog(self) -> int:
        """Log entries applied here past the mapped segment (all of them with none)."""
        if self._segment is None:
            return max(self.merge_entries, 1)
        marks = self._segment.watermarks
        return sum(
            max(0, x["applied"] - marks.get(x["list_id"], 0))
            for x in self.follower.status()["lists"]
        )

    def _swap(self, seg: Segment) -> None:
        self.follower.swap(seg)
        self._segment = seg
        self.stats["swaps"] += 1
        self.stats["generation"] = seg.generation

    def merge(self) -> bool:
        """Write the next generation from this process's state; False if skipped."""
        with merge_lock(self.folder) as held:
            if not held:
                return False
            remove_leftovers(self.folder)
            found = generations(self.folder)
            newest = found[0] if found else 0
            if newest > self.generation and self._open(newest) is not None:
                return False  # someone else's is newer: swap to it first
            view = self.follower.segment_view()
            if view is None:
                return False
            watermarks, frozen = view
            names, parts = frozen.segment_parts()
            path = write_segment(
                self.folder,
                newest + 1,
                database_id=self.database_id,
                watermarks=watermarks,
                categories=names,
                indexes=parts,
                on_step=self.on_step,
            )
            remove_older(self.folder, newest + 1)
        self.stats["merges"] += 1
        seg = open_segment(path, database_id=self.database_id)
        self._swap(seg)
        return True

    # --- the background thread ---------------------------------------------------------

    def _run(self) -> None:
        # The first check soon: a start from the database writes a segment at once.
        wait = 0.0
        failed = ""
        while not self._stop.wait(wait):
            wait = self.check_seconds
            try:
                self.tick()
                failed = ""
            except OSError as exc:
                # Full disk, read-only folder: matching goes on from what is
                # mapped or in memory; say so once per cause, not every check.
                if exc.strerror != failed:
                    failed = exc.strerror or type(exc).__name__
                    log.warning("index segments: cannot write a segment (%s); retrying", failed)
            except Exception:
                log.exception("index segments: check failed; retrying")

    def status(self) -> dict[str, Any]:
        out = dict(self.stats)
        out["pid"] = os.getpid()  # which worker answered (hashfed serve --workers)
        out["mapped_bytes"] = self._segment.mapped_bytes if self._segment is not None else 0
        return out
