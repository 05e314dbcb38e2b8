"""Federation in a running node: per-peer pulls, notify, heartbeat, status.

An APScheduler 3 ``BackgroundScheduler`` runs, in one process per node:

* one job per peer we pull from, on its ``interval_seconds`` with ±10 %
  jitter (so a federation's nodes do not pull in lockstep); after a failed
  pull the next attempt is pushed out exponentially (2×, 4×, … the
  interval, at most 16× and at most an hour), and a success resets it;
* a watcher of newly accepted checkpoints (published here, re-signed by the
  heartbeat, or received and relayed) that notifies every peer cleared for
  the list's label, so they pull at once;
* the owner's heartbeat (federation/heartbeat.py);
* submitting our new checkpoints to the peers that witness them
  (federation/witness_submit.py), before the notify, and every 30 s for
  those that failed.

A notify from a peer (``POST /federation/v1/notify``) runs that peer's job
now, even while backed off (a peer that notifies is back); a notify that
arrives during a pull queues exactly one more pull, which rate-limits them.

Exactly one process per node runs the scheduler (federation/scheduler_lock.py:
a file lock with SQLite, a session advisory lock with PostgreSQL), so that
several serve processes can share one database. A notify that reaches a
process without the lock is handed to the holder through the database
(node/store/pull_requests.py); the holder's checkpoint watcher takes it
within 0.25 s and pulls, rate-limited like its own notifies. A process
without the lock retries it at half the shortest peer interval (at most
15 s), so a holder that dies is replaced, and its peers pulled, within one
interval. A process that takes over picks up node.toml changes made since it
started within seconds (the config watcher).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from apscheduler.executors.pool import ThreadPoolExecutor as JobExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from config import NODE_TOML, NodeSettings, PeerSettings, load_settings
from crypto.errors import ConfigError, HashfedError, InputError
from crypto.keys import NoteVerifier
from federation.client import PeerClient
from federation.health import peer_status
from federation.heartbeat import resign_due
from federation.peers import check_peer, find_peer
from federation.policy import PRIVATE_LABEL
from federation.scheduler_lock import SchedulerLock, retry_seconds
from federation.sync import PullReport, Syncer
from federation.witness_submit import WitnessSubmitter
from node.log.proofs import ProofCache
from node.node import Node
from node.overlaps import OverlapDetector
from node.store import now_ms

__all__ = ["JITTER", "FederationRuntime", "max_backoff", "next_delay"]

log = logging.getLogger("hashfed.scheduler")

JITTER = 0.1
MAX_BACKOFF_SECONDS = 3600.0
BACKOFF_FACTOR_CAP = 16
NOTIFY_WATCH_SECONDS = 0.25
CONFIG_WATCH_SECONDS = 2.0
# Submissions to witnesses that failed are tried again this often.
WITNESS_RETRY_SECONDS = 30.0
# Triggered pulls of one peer start at most this often.
MIN_TRIGGER_GAP_SECONDS = 0.2


def max_backoff(interval: float) -> float:
    """The longest wait after failures: 16 intervals, at most an hour (never below one)."""
    return max(interval, min(MAX_BACKOFF_SECONDS, BACKOFF_FACTOR_CAP * interval))


def next_delay(interval: float, failures: int, rnd: random.Random) -> float:
    """Seconds to the next pull: the interval with jitter, or exponential backoff."""
    base = interval if failures <= 0 else min(interval * 2**failures, max_backoff(interval))
    return base * (1 + rnd.uniform(-JITTER, JITTER))


class _StateLike(Protocol):
    node: Node
    proofs: ProofCache
    peer_status: Callable[[], list[dict[str, Any]]] | None
    overlaps: OverlapDetector | None


@dataclass
class _Run:
    running: bool = False
    pending: bool = False
    last_start: float = 0.0


class FederationRuntime:
    """Starts and stops federation inside ``hashfed serve`` (the app's ``on_start`` hook)."""

    def __init__(self, *, seed: int | None = None) -> None:
        self.node: Node | None = None
        self.syncer: Syncer | None = None
        self.witnesses: WitnessSubmitter | None = None
        self.scheduler: BackgroundScheduler | None = None
        self._runs: dict[str, _Run] = {}
        self._guard = threading.Lock()
        self._rnd = random.Random(seed)
        self._cursor = 0
        self._notifier = ThreadPoolExecutor(max_workers=4, thread_name_prefix="notify")
        self._lock: SchedulerLock | None = None
        self._stop = threading.Event()
        self._jobs_guard = threading.Lock()
        self._retry: threading.Thread | None = None
        self._toml_mtime = 0.0

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, state: _StateLike) -> Callable[[], None]:
        """Wire into the app state and start the scheduler if this process gets the lock."""
        _check_config(state.node.settings)  # fail at start, not at every pull
        self.node = state.node
        self.syncer = Syncer(state.node)
        self.witnesses = WitnessSubmitter(state.node, state.proofs)
        state.peer_status = self.status
        self._runs = {p.node_id: _Run() for p in state.node.settings.peers}
        self._lock = SchedulerLock(state.node)
        if state.overlaps is not None:
            # Overlap detection is the node's work, done once: where the scheduler runs.
            state.overlaps.active = lambda: self.holds_scheduler
        # Set here, not at takeover: peers changed since this process started
        # are then picked up by the config watcher of a process that takes over.
        self._toml_mtime = _mtime(state.node.settings.data_dir / NODE_TOML)
        if not self._try_start():
            every = retry_seconds(state.node.settings.peers)
            log.info("another process runs this node's scheduler; retrying every %.1fs", every)
            self._retry = threading.Thread(
                target=self._retry_loop, args=(every,), name="scheduler-lock", daemon=True
            )
            self._retry.start()
        return self.stop

    def _retry_loop(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                if self._try_start():
                    return
            except Exception:  # the database may be down for a while; keep trying
                log.exception("taking the scheduler lock failed")

    @property
    def holds_scheduler(self) -> bool:
        """Whether this process runs the node's scheduler."""
        return self.scheduler is not None

    def _try_start(self) -> bool:
        if self._stop.is_set() or self._lock is None or not self._lock.acquire():
            return False
        node = self._require_node()
        settings = node.settings
        # APScheduler reports every run at INFO; the notify watcher runs 4×/s.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
        pulled = [p for p in settings.peers if p.subscribe]
        sched = BackgroundScheduler(
            executors={"default": JobExecutor(max(4, len(pulled) + 3))},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=dt.UTC,
        )
        now = dt.datetime.now(dt.UTC)
        for peer in pulled:
            self._add_pull_job(sched, peer, now)
        sched.add_job(
            self._heartbeat,
            IntervalTrigger(seconds=min(60.0, settings.heartbeat_seconds / 4)),
            id="heartbeat",
            next_run_time=now,
        )
        self._cursor = node.store.max_checkpoint_id()
        sched.add_job(
            self._watch_checkpoints,
            IntervalTrigger(seconds=NOTIFY_WATCH_SECONDS),
            id="notify-watch",
            next_run_time=now,
        )
        sched.add_job(
            self._submit_to_witnesses,
            IntervalTrigger(seconds=WITNESS_RETRY_SECONDS),
            id="witness-submit",
            next_run_time=now,
        )
        sched.add_job(
            self._watch_config,
            IntervalTrigger(seconds=CONFIG_WATCH_SECONDS),
            id="config-watch",
        )
        # Started before it is published: a stop() racing a takeover would
        # otherwise shut down a scheduler whose thread has not begun.
        sched.start()
        self.scheduler = sched
        log.info("federation scheduler started: %d peer(s) to pull", len(pulled))
        return True

    def _add_pull_job(
        self, sched: BackgroundScheduler, peer: PeerSettings, now: dt.datetime
    ) -> None:
        # Pull soon after start, spread a little so peers are not all hit at once.
        first = now + dt.timedelta(
            seconds=self._rnd.uniform(0, min(1.0, peer.interval_seconds * JITTER))
        )
        sched.add_job(
            self._run_pull,
            IntervalTrigger(seconds=peer.interval_seconds, jitter=peer.interval_seconds * JITTER),
            # A tick during a long pull returns at once (_run_pull), without a warning.
            max_instances=2,
            args=[peer.node_id],
            id=_job_id(peer.node_id),
            name=f"pull {peer.node_id}",
            next_run_time=first,
            replace_existing=True,
        )

    def _watch_config(self) -> None:
        """Apply ``hashfed peer add/rm/trust`` to the running node within seconds.

        Only the peers and trusted owners are reloaded; every other setting
        needs a restart. An invalid node.toml is logged and ignored.
        """
        node, sched = self._require_node(), self.scheduler
        path = node.settings.data_dir / NODE_TOML
        mtime = _mtime(path)
        if mtime == self._toml_mtime or sched is None:
            return
        self._toml_mtime = mtime
        try:
            fresh = load_settings(node.settings.data_dir)
            _check_config(fresh)
        except HashfedError as exc:
            log.error("node.toml changed but cannot be used, keeping the old peers: %s", exc)
            return
        with self._changing_jobs() as sched:
            if sched is None:
                return
            old = {p.node_id: p for p in node.settings.peers}
            node.settings = node.settings.model_copy(
                update={"peers": fresh.peers, "trusted_owners": fresh.trusted_owners}
            )
            now = dt.datetime.now(dt.UTC)
            new_ids = set()
            for peer in fresh.peers:
                new_ids.add(peer.node_id)
                with self._guard:
                    self._runs.setdefault(peer.node_id, _Run())
                before = old.get(peer.node_id)
                if not peer.subscribe:
                    if before is not None and before.subscribe:
                        _remove_job(sched, peer.node_id)
                elif before is None or before != peer:
                    self._add_pull_job(sched, peer, now)
            for gone in set(old) - new_ids:
                _remove_job(sched, gone)
            if any(
                p.cosigns and not (p.node_id in old and old[p.node_id].cosigns) for p in fresh.peers
            ):
                # A new witness gets the checkpoints signed before it was added now.
                sched.modify_job("witness-submit", next_run_time=now)
        log.info("peers reloaded from node.toml: %s", ", ".join(sorted(new_ids)) or "none")

    @contextlib.contextmanager
    def _changing_jobs(self) -> Iterator[BackgroundScheduler | None]:
        """The scheduler, to add, move or remove jobs on; None once stopping.

        APScheduler's shutdown holds its job-store lock while it waits for the
        running jobs, so a job that changed a job then would wait for ever:
        stop() sets its flag under this guard, and no change starts after it.
        """
        with self._jobs_guard:
            yield None if self._stop.is_set() else self.scheduler

    def stop(self) -> None:
        """Stop the jobs: a pull in flight ends at its next page, applying nothing."""
        with self._jobs_guard:
            self._stop.set()
        if self.syncer is not None:
            self.syncer.stopping.set()
        if self.scheduler is not None:
            # Wait, so no job still uses the database when the node closes it.
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        if self._retry is not None:
            self._retry.join(timeout=10)  # a takeover in progress finishes before the release
        self._notifier.shutdown(wait=True, cancel_futures=True)
        if self.scheduler is not None:  # taken over while stopping
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        if self._lock is not None:
            self._lock.release()

    def _require_node(self) -> Node:
        if self.node is None:
            raise RuntimeError("the federation runtime has not been started")
        return self.node

    # --- pulls ----------------------------------------------------------------------------------

    def _run_pull(self, peer_id: str) -> None:
        """The per-peer job: pull, unless a pull of this peer is running already."""
        with self._guard:
            run = self._runs.setdefault(peer_id, _Run())
            if run.running:
                return  # the running pull reschedules when it ends
            run.running, run.pending, run.last_start = True, False, time.monotonic()
        self._pull_and_reschedule(peer_id, run)

    def _pull_and_reschedule(self, peer_id: str, run: _Run) -> PullReport | None:
        syncer, node = self.syncer, self._require_node()
        assert syncer is not None
        report: PullReport | None = None
        try:
            report = syncer.pull(peer_id)
        except HashfedError as exc:
            log.warning("pull %s: %s", peer_id, exc.message)
        except Exception:  # the job must survive anything, or the peer is never pulled again
            log.exception("pull %s failed unexpectedly", peer_id)
        finally:
            with self._guard:
                run.running = False
                again, run.pending = run.pending, False
        peer = find_peer(node.settings, peer_id)
        if peer is None:
            return report
        health = node.store.peer_health(peer=peer_id)
        failures = health[0]["failures"] if health else (0 if report and report.ok else 1)
        delay = 0.0 if again else next_delay(peer.interval_seconds, failures, self._rnd)
        self._reschedule(peer, delay)
        return report

    def _reschedule(self, peer: PeerSettings, delay: float) -> None:
        node = self._require_node()
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        with self._changing_jobs() as sched:
            if sched is not None:
                try:
                    sched.modify_job(_job_id(peer.node_id), next_run_time=when)
                except JobLookupError:  # removed from node.toml meanwhile
                    return
        node.store.save_peer_health(peer=peer.node_id, next_attempt_ms=int(when.timestamp() * 1000))

    def trigger(self, peer_id: str) -> bool:
        """Pull ``peer_id`` now (a notify): False if it is not a peer we pull from.

        In a process without the scheduler the request goes to the holder
        through the database.

        Raises:
            StoreError: the request could not be written.
        """
        node = self.node
        if node is None:
            return False
        peer = find_peer(node.settings, peer_id)
        if peer is None or not peer.subscribe:
            return False
        if self.scheduler is None:
            node.store.request_pull(peer=peer_id)
            return True
        with self._guard:
            run = self._runs.setdefault(peer_id, _Run())
            if run.running:
                run.pending = True
                return True
            gap = MIN_TRIGGER_GAP_SECONDS - (time.monotonic() - run.last_start)
        self._reschedule(peer, max(0.0, gap))
        return True

    def pull_now(self, peer_id: str) -> PullReport:
        """Pull ``peer_id`` in the calling thread (admin ``sync``), waiting for a running pull.

        Raises:
            InputError: not a configured peer.
        """
        node = self.node
        if self.syncer is None or node is None:
            raise InputError("federation is not running in this process", where="peer")
        if find_peer(node.settings, peer_id) is None:
            raise InputError(f"no peer named {peer_id!r} in node.toml", where="peer")
        if self.scheduler is None:  # another process holds the scheduler
            return self.syncer.pull(peer_id)
        while True:  # wait for a scheduled pull of this peer to finish, then take its turn
            with self._guard:
                run = self._runs.setdefault(peer_id, _Run())
                if not run.running:
                    run.running, run.pending, run.last_start = True, False, time.monotonic()
                    break
            time.sleep(0.05)
        report = self._pull_and_reschedule(peer_id, run)
        if report is None:
            raise InputError(f"the pull of {peer_id!r} failed; see the node's log", where="peer")
        return report

    # --- heartbeat and notify ---------------------------------------------------------------------

    def _heartbeat(self) -> None:
        try:
            done = resign_due(self._require_node(), now=int(time.time()))
        except Exception:
            log.exception("heartbeat failed")
            return
        if done:
            log.info("heartbeat: re-signed %d list(s)", len(done))

    def _watch_checkpoints(self) -> None:
        node = self._require_node()
        store = node.store
        try:
            # Notifies that reached the node's other processes.
            for peer_id in store.take_pull_requests():
                self.trigger(peer_id)
        except Exception:
            log.exception("reading pull requests failed")
        try:
            rows = store.accepted_checkpoints_after(after_id=self._cursor)
        except Exception:
            log.exception("reading new checkpoints failed")
            return
        if not rows:
            return
        self._cursor = rows[-1].id
        newest: dict[int, int] = {}
        for cp in rows:
            newest[cp.list_id] = max(newest.get(cp.list_id, 0), cp.size)
        # Witnesses first, so that peers notified next find their cosignatures.
        self._submit_to_witnesses(newest)
        for list_id, size in newest.items():
            row = store.get_list_by_id(list_id)
            if row is None or row.frozen_reason is not None or row.label == PRIVATE_LABEL:
                continue
            for peer in node.settings.peers:
                if row.label not in peer.labels or peer.node_id in (row.owner, row.source_peer):
                    continue
                self._notifier.submit(self._notify, peer, row.owner, row.name, size)

    def _submit_to_witnesses(self, list_ids: Iterable[int] | None = None) -> None:
        if self.witnesses is None:
            return
        try:
            added = self.witnesses.run(list_ids)
        except Exception:
            log.exception("submitting checkpoints to witnesses failed")
            return
        if added:
            log.info("witnesses: %d cosignature(s) added", added)

    def _notify(self, peer: PeerSettings, owner: str, name: str, size: int) -> None:
        node = self._require_node()
        try:
            with PeerClient.for_peer(node.settings, peer) as client:
                client.notify(owner, name, size)
        except HashfedError as exc:
            log.info("notify %s of %s/%s: %s", peer.node_id, owner, name, exc.message)
        except Exception:
            log.exception("notify %s failed", peer.node_id)

    # --- status --------------------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """Per-peer health for ``GET /api/v1/status``, each with its lists' alerts."""
        node = self._require_node()
        with self._guard:
            running = {p for p, r in self._runs.items() if r.running}
        return peer_status(node, now_ms=now_ms(), running=running, now_s=int(time.time()))


def _job_id(peer_id: str) -> str:
    return f"pull:{peer_id}"


def _remove_job(sched: BackgroundScheduler, peer_id: str) -> None:
    with contextlib.suppress(JobLookupError):
        sched.remove_job(_job_id(peer_id))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _check_config(settings: NodeSettings) -> None:
    """Every peer entry and trusted owner key is usable.

    Raises:
        ConfigError: naming the peer and the field.
    """
    for peer in settings.peers:
        try:
            check_peer(peer)
        except InputError as exc:
            raise ConfigError(f"[[peers]] {peer.node_id}: {exc.message}") from None
    for owner in settings.trusted_owners:
        for key in owner.signing_keys:
            NoteVerifier.from_verifier_key(key)
