"""Pulling lists from peers: fetch, verify, apply.

The one module that mixes network (through ``federation.client``),
verification (through ``federation.trusted_state``) and storage (through
``node.store``). One pull of one peer::

    catalog ─► for each list we subscribe to and whose owner's keys we know:
        offer(note)                       owner's signature, origin, size, age
        consistency proof (old → new)     before any entry is fetched
        entries from the local size on, page by page, each page bounded
        recompute the root from the stored right edge + the new leaves
        writer.apply_verified(entries, checkpoint, new right edge)
                                          one transaction: fold, append, audit
        node.emit(committed)              the index follows the commit

A crash at any point leaves the list at its last applied checkpoint: nothing
is written before the root matched, and the write is one transaction in
which the writer re-reads the list under its lock (another process may have
applied the same pull meanwhile), so running the pull again resumes there
and applying is idempotent. This module never writes a list itself: every
change goes through :mod:`node.log.writer`. A refused list keeps what it had, the refusal is
recorded (audit, ``list_sync``, peer health) and the pull goes on with the
peer's next list; a peer that times out, sends too much or breaks the protocol
ends that peer's pull (nothing of the list in flight is applied), and the
scheduler backs it off. Other peers' pulls are independent.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from config import NodeSettings, PeerSettings
from crypto.checkpoint import list_origin
from crypto.errors import (
    ForkError,
    FrozenListError,
    FutureCheckpointError,
    HashfedError,
    InputError,
    LimitExceededError,
    MissingWitnessError,
    PeerError,
    RollbackError,
    StaleError,
    StoreError,
    VerificationError,
)
from crypto.keys import NoteVerifier
from crypto.merkle import CompactRange
from federation.client import PeerClient
from federation.peers import find_peer, owner_verifiers
from federation.policy import subscribed
from federation.protocol import CatalogList
from federation.sync_alerts import alert_list_outcome, alert_peer_health
from federation.trusted_state import Accepted, ListUpdate, Outcome
from federation.witness import cosign_accepted
from federation.witness_policy import owner_witnesses
from node.log import writer
from node.log.entry import leaf_hashes
from node.log.proofs import ProofCache
from node.node import Node
from node.store import EntryTuple, ListRow, StateRow, now_ms

__all__ = ["ClientFactory", "ListResult", "PullReport", "Syncer"]

log = logging.getLogger("hashfed.sync")

ClientFactory = Callable[[NodeSettings, PeerSettings], PeerClient]

# Outcomes of one list in one pull. "behind": the peer offers a checkpoint we
# accepted before (a relay that lags); not an error.
APPLIED, REFRESHED, UNCHANGED, BEHIND = "applied", "refreshed", "unchanged", "behind"
REFUSED, STALE, FROZEN, SKIPPED = "refused", "stale", "frozen", "skipped"
_PROBLEMS = (REFUSED, STALE)


@dataclass
class ListResult:
    """What became of one offered list."""

    owner: str
    name: str
    outcome: str
    entries: int = 0
    size: int = 0
    offered_size: int = 0
    offered_timestamp: int = 0
    error_code: str | None = None
    detail: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class PullReport:
    """One pull of one peer."""

    peer: str
    started_ms: int
    ok: bool = True
    duration_s: float = 0.0
    error_code: str | None = None
    error: str | None = None
    lag_entries: int = 0
    lists: list[ListResult] = field(default_factory=list)

    @property
    def applied_entries(self) -> int:
        return sum(r.entries for r in self.lists)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Syncer:
    """Pulls peers into a node. Thread-safe: one pull per peer and one writer per list at a time."""

    def __init__(
        self,
        node: Node,
        *,
        client_factory: ClientFactory = PeerClient.for_peer,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self._client_factory = client_factory
        self._clock = clock
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # Set when the node shuts down: pulls stop at the next page, applying nothing.
        self.stopping = threading.Event()
        # ``hashfed sync`` shows a bar per list: (description, total entries) -> advance.
        self.progress_task: Callable[[str, int | None], Callable[[int], None]] | None = None

    @property
    def settings(self) -> NodeSettings:
        return self.node.settings

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    # --- one peer ---------------------------------------------------------------------------

    def pull(self, peer_id: str) -> PullReport:
        """Pull every subscribed list ``peer_id`` offers; never raises for the peer's faults.

        Raises:
            InputError: ``peer_id`` is not a configured peer.
        """
        peer = find_peer(self.settings, peer_id)
        if peer is None:
            raise InputError(f"no peer named {peer_id!r} in node.toml", where="peer")
        with self._lock(f"peer:{peer_id}"):
            report = PullReport(peer=peer_id, started_ms=now_ms())
            t0 = time.monotonic()
            try:
                self._pull(peer, report)
            except (PeerError, LimitExceededError, StoreError) as exc:
                report.ok, report.error_code, report.error = False, exc.code, exc.message
            except HashfedError as exc:  # e.g. ConfigError: our own TLS files or keys
                report.ok, report.error_code, report.error = False, exc.code, exc.message
            problems = [r for r in report.lists if r.outcome in _PROBLEMS]
            if report.ok and problems:
                first = problems[0]
                report.ok = False
                report.error_code = first.error_code
                report.error = f"{first.full_name}: {first.detail}"
            report.duration_s = time.monotonic() - t0
            self._save_health(report)
            level = logging.INFO if report.ok else logging.WARNING
            log.log(
                level,
                "pull %s: %s in %.2fs, %d entries applied%s",
                peer_id,
                "ok" if report.ok else "failed",
                report.duration_s,
                report.applied_entries,
                f" ({report.error_code}: {report.error})" if not report.ok else "",
            )
            return report

    def _pull(self, peer: PeerSettings, report: PullReport) -> None:
        if not peer.subscribe:
            return
        with self._client_factory(self.settings, peer) as client:
            client.deadline = time.monotonic() + self.settings.limits.pull_timeout_seconds
            catalog = client.catalog()
            for item in catalog.lists:
                if not subscribed(peer.subscribe, item.owner, item.name):
                    continue
                result = ListResult(item.owner, item.name, SKIPPED, offered_size=item.size)
                report.lists.append(result)  # also when the peer fails in the middle of it
                self._pull_list(client, peer, item, result)
                report.lag_entries += max(0, result.offered_size - result.size)

    def _save_health(self, report: PullReport) -> None:
        store = self.node.store
        prev = store.peer_health(peer=report.peer)
        failures = prev[0]["failures"] if prev else 0
        values: dict[str, Any] = {
            "last_attempt_ms": report.started_ms,
            "failures": 0 if report.ok else failures + 1,
            "lag_entries": report.lag_entries,
        }
        if report.ok:
            values.update(last_success_ms=now_ms(), last_error_code=None, last_error=None)
        else:
            values.update(last_error_code=report.error_code, last_error=(report.error or "")[:1000])
        store.save_peer_health(peer=report.peer, **values)
        if not report.ok:
            saved = store.peer_health(peer=report.peer)
            alert_peer_health(self.node, peer=report.peer, health=saved[0] if saved else None)

    # --- one list ---------------------------------------------------------------------------

    def _pull_list(
        self, client: PeerClient, peer: PeerSettings, item: CatalogList, result: ListResult
    ) -> None:
        if item.owner == self.node.node_id:
            result.detail = "a list this node owns"
            return  # not recorded: peers may well relay our lists back to us
        verifiers = owner_verifiers(self.settings, item.owner)
        if not verifiers:
            result.detail = f"no signing key configured for owner {item.owner!r}"
            self._record(peer, item, result)
            return
        with self._lock(f"list:{item.owner}/{item.name}"):
            try:
                self._update_list(client, peer, item, verifiers, result)
            except (PeerError, LimitExceededError) as exc:
                result.outcome, result.error_code, result.detail = REFUSED, exc.code, exc.message
                self._record(peer, item, result)
                raise
        self._record(peer, item, result)

    def _update_list(
        self,
        client: PeerClient,
        peer: PeerSettings,
        item: CatalogList,
        verifiers: list[NoteVerifier],
        result: ListResult,
    ) -> None:
        store = self.node.store
        full = f"{item.owner}/{item.name}"
        row = store.get_list(owner=item.owner, name=item.name)
        if row is not None and row.local:
            result.detail = "a local list has this name"
            return
        if row is not None and row.frozen_reason is not None:
            result.outcome, result.detail = FROZEN, row.frozen_reason
            result.size = store.get_state(list_id=row.id).size
            return
        state = store.get_state(list_id=row.id) if row else StateRow(0, _EMPTY_RANGE, 0)
        result.size = state.size
        latest = store.latest_checkpoint(list_id=row.id) if row else None
        trusted = (
            Accepted(latest.size, latest.root_hash, latest.timestamp, latest.note)
            if latest
            else None
        )
        witnesses, quorum = owner_witnesses(self.settings, item.owner)
        try:
            update = ListUpdate(
                origin=list_origin(item.owner, item.name),
                verifiers=verifiers,
                trusted=trusted,
                stored=CompactRange.from_bytes(state.compact_range),
                now=int(self._clock()),
                max_age_seconds=self.settings.max_checkpoint_age_seconds,
                max_skew_seconds=self.settings.max_clock_skew_seconds,
                witnesses=witnesses,
                witness_quorum=quorum,
            )
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        entries: list[EntryTuple] = []
        proven: tuple[int, list[bytes]] | None = None  # (from size, verified consistency proof)
        try:
            try:
                outcome = update.offer(item.checkpoint)
            finally:
                if update.offered is not None:
                    result.offered_timestamp = update.offered.timestamp
            if outcome is Outcome.UNCHANGED:
                result.outcome = UNCHANGED
                self._follow_owner_metadata(peer, item, row)
                return
            if update.needs_consistency_proof:
                assert trusted is not None
                assert update.offered is not None
                proof = client.consistency_proof(
                    item.owner, item.name, trusted.size, update.offered.size
                )
                update.verify_consistency(proof)
                proven = (trusted.size, proof)
            page = self.settings.limits.max_page_entries
            tick = (
                self.progress_task(f"{peer.node_id}: {full}", update.remaining)
                if self.progress_task is not None and update.remaining
                else None
            )
            while update.remaining:
                if self.stopping.is_set():
                    raise PeerError(peer=peer.node_id, reason="the node is shutting down")
                got = client.entries(
                    item.owner, item.name, start=update.next_seq, limit=min(page, update.remaining)
                )
                update.add_leaves(leaf_hashes(got))
                entries.extend(got)
                if tick is not None:
                    tick(len(got))
            accepted = update.finish()
        except (PeerError, LimitExceededError):
            raise
        except ForkError as exc:
            self._refused(peer, row, update, exc, result, freeze=True)
            return
        except RollbackError as exc:
            assert row is not None
            assert update.offered is not None
            seen = store.checkpoint_at(list_id=row.id, size=update.offered.size)
            if seen is not None and seen.root_hash == update.offered.root_hash:
                result.outcome, result.detail = BEHIND, exc.message
                return
            self._refused(peer, row, update, exc, result, freeze=False)
            return
        except StaleError as exc:
            result.outcome, result.error_code, result.detail = STALE, exc.code, exc.message
            return
        except MissingWitnessError as exc:
            # Signed by the owner yet seen by no witness we require: keep the note,
            # take the update once the witnesses have cosigned it.
            self._refused(peer, row, update, exc, result, freeze=False)
            return
        except FutureCheckpointError as exc:
            # Validly signed yet impossible: the owner's clock or key is wrong; keep the note.
            self._refused(peer, row, update, exc, result, freeze=False)
            return
        except VerificationError as exc:
            self._refused(peer, row, update, exc, result, freeze=False, evidence=False)
            return

        verified = (accepted.size, accepted.root_hash, accepted.timestamp, accepted.note)
        if outcome is Outcome.REFRESH:
            assert row is not None
            writer.refresh(store, row=row, peer=peer.node_id, accepted=verified)
            self._cosign(row, accepted, proven)
            result.outcome = REFRESHED
            self._follow_owner_metadata(peer, item, row)
            return
        if row is None:
            # Only now, after every check passed: a refused offer creates nothing.
            row = writer.create_received(
                store,
                owner=item.owner,
                name=item.name,
                label=item.label,
                description=item.description,
                peer=peer.node_id,
                kind=item.kind,
                allow_distance=item.allow_distance,
            )
        else:
            self._follow_owner_metadata(peer, item, row)
        if self.progress_task is not None and entries:
            self.progress_task(f"{peer.node_id}: applying {full}", None)
        try:
            applied = writer.apply_verified(
                store,
                row=row,
                peer=peer.node_id,
                entries=entries,
                from_size=state.size,
                from_range=state.compact_range,
                accepted=verified,
                compact_range=update.compact_range.to_bytes(),
            )
        except FrozenListError as exc:  # another process froze it meanwhile
            result.outcome, result.detail = FROZEN, exc.message
            return
        result.outcome, result.entries, result.size = APPLIED, applied.appended, applied.size
        try:
            self.node.emit(applied.committed)
        except Exception:  # the commit stands; the index catches up on restart
            log.exception("index update after applying %s failed", full)
        self._cosign(row, accepted, proven)

    def _cosign(
        self, row: ListRow, accepted: Accepted, proven: tuple[int, list[bytes]] | None
    ) -> None:
        """Cosign, as a witness, a checkpoint just verified and stored; keep the line with it.

        Whoever pulls the list from us then gets our cosignature with the
        owner's note (and every other witness's it carried), so a receiver
        whose policy names us can tell the tree we saw from another one
        shown to it alone.
        """
        node = self.node

        def consistency(old: int, new: int) -> list[bytes]:
            if proven is not None and proven[0] == old:
                return proven[1]  # the proof this pull verified
            # Rare: the last tree we cosigned is not the one this pull started from.
            return ProofCache().consistency(node.store, list_id=row.id, size1=old, size2=new)

        try:
            line = cosign_accepted(
                node.store,
                note=accepted.note,
                consistency_proof=consistency,
                cosigner=node.cosigner,
                log_keys=node.verifiers_for,
                now=int(self._clock()),
            )
            if line is not None:
                writer.add_cosignatures_to_latest(
                    node.store,
                    row=row,
                    size=accepted.size,
                    root_hash=accepted.root_hash,
                    lines=[line],
                    actor=f"witness:{node.node_id}",
                )
        except HashfedError as exc:
            # The list is stored; only our cosignature is missing, tried again next pull.
            log.warning("witness: cosigning %s failed: %s", row.full_name, exc.message)

    def _follow_owner_metadata(
        self, peer: PeerSettings, item: CatalogList, row: ListRow | None
    ) -> None:
        """Take a new label or description from the owner itself, never from a relay.

        Labels are not signed: a relay could otherwise relabel a restricted
        list ``baseline`` and have us pass it on to partners.
        """
        if row is None or peer.node_id != item.owner:
            return
        if (row.label, row.description) != (item.label, item.description):
            writer.follow_metadata(
                self.node.store,
                row=row,
                peer=peer.node_id,
                label=item.label,
                description=item.description,
            )

    def _refused(
        self,
        peer: PeerSettings,
        row: ListRow | None,
        update: ListUpdate,
        exc: VerificationError,
        result: ListResult,
        *,
        freeze: bool,
        evidence: bool = True,
    ) -> None:
        """Record a refusal; keep a validly signed offer as evidence; freeze on a fork."""
        result.outcome, result.error_code, result.detail = REFUSED, exc.code, exc.message
        full = f"{result.owner}/{result.name}"
        detail = {"peer": peer.node_id, "error": exc.code, "reason": exc.message[:500]}
        cp, note = update.offered, update.offered_note
        if row is None or not evidence or cp is None or note is None:
            self.node.audit(
                actor=f"sync:{peer.node_id}",
                action="federation.refused",
                target=full,
                count=cp.size if cp else 0,
                detail=detail,
            )
            return
        when = dt.datetime.fromtimestamp(self._clock(), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        reason = f"{exc.code} seen via {peer.node_id} at {when}: {exc.message}"
        writer.record_evidence(
            self.node.store,
            row=row,
            checkpoints=[(cp.size, cp.root_hash, cp.timestamp, note)],
            freeze_reason=reason if freeze else None,
            audit=(
                f"sync:{peer.node_id}",
                "federation.fork" if freeze else "federation.refused",
                cp.size,
                detail,
            ),
        )
        if freeze:
            log.error("ALERT list %s frozen: %s", full, reason)

    def _record(self, peer: PeerSettings, item: CatalogList, result: ListResult) -> None:
        self.node.store.save_list_sync(
            owner=item.owner,
            name=item.name,
            peer=peer.node_id,
            outcome=result.outcome,
            error_code=result.error_code,
            detail=result.detail,
            offered_size=item.size,
            offered_timestamp=result.offered_timestamp,
            local_size=result.size,
        )
        alert_list_outcome(
            self.node,
            peer=peer.node_id,
            owner=item.owner,
            name=item.name,
            outcome=result.outcome,
            error_code=result.error_code,
            offered_size=item.size,
            offered_timestamp=result.offered_timestamp,
        )


_EMPTY_RANGE = CompactRange().to_bytes()
