"""Verifying one pull of one list: a guarded state machine with no I/O.

Modelled on python-tuf's ``TrustedMetadataSet``: the caller does the I/O and
feeds what it fetched, in order; each step either passes or raises the one
exception that names the attack it stopped; nothing is trusted until every
step passed, and then the caller gets an :class:`Accepted` checkpoint to
persist (together with the entries, in one transaction).

::

    update = ListUpdate(origin=..., verifiers=..., trusted=..., stored=..., now=...,
                        max_age_seconds=..., max_skew_seconds=...)
    outcome = update.offer(note)          # signature → syntax → origin → date → size → age
    if update.needs_consistency_proof:
        update.verify_consistency(proof)  # the new tree extends the trusted one
    # or, from a source that serves entries but no proofs (a feed):
    #   update.prove_with_entries(start)  # the entries themselves prove it
    while update.remaining:
        update.add_leaves(leaf_hashes)    # entries from update.next_seq on, in order
    accepted = update.finish()            # recomputed root == signed root

An unchanged checkpoint is a normal outcome (``UNCHANGED``), and so is the
same tree re-signed later (``REFRESH``, the owner's heartbeat). Calling a step
out of order, or any step after one failed, is a programming error and raises
``RuntimeError``, never a verification error.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from crypto.checkpoint import SignedCheckpoint, verify_checkpoint
from crypto.cosignature import CosignatureVerifier
from crypto.errors import (
    ConsistencyProofError,
    ForkError,
    FutureCheckpointError,
    HashfedError,
    LimitExceededError,
    MissingWitnessError,
    RollbackError,
    RootMismatchError,
    StaleError,
)
from crypto.keys import NoteVerifier
from crypto.merkle import CompactRange, verify_consistency

__all__ = ["Accepted", "ListUpdate", "Outcome"]


@dataclass(frozen=True)
class Accepted:
    """A checkpoint that passed every check, with the note that proves it."""

    size: int
    root_hash: bytes
    timestamp: int
    note: str


class Outcome(enum.Enum):
    """What an offered checkpoint means for the trusted one."""

    UNCHANGED = "unchanged"  # same tree, not newer: nothing to do
    REFRESH = "refresh"  # same tree re-signed later (heartbeat): keep the newer note
    GROW = "grow"  # a larger tree: fetch and verify the new entries


class _Step(enum.Enum):
    NEW = "new"
    OFFERED = "offered"  # grow: waiting for a consistency proof or leaves
    PROVEN = "proven"  # grow: consistency checked, taking leaves
    READY = "ready"  # unchanged or refresh: nothing more to fetch
    DONE = "done"
    FAILED = "failed"


class ListUpdate:
    """The checks of one pull of one list, from an offered note to an accepted checkpoint."""

    def __init__(
        self,
        *,
        origin: str,
        verifiers: Sequence[NoteVerifier],
        trusted: Accepted | None,
        stored: CompactRange,
        now: int,
        max_age_seconds: int,
        max_skew_seconds: int = 300,
        refuse_stale_unchanged: bool = False,
        witnesses: Sequence[CosignatureVerifier] = (),
        witness_quorum: int = 0,
    ) -> None:
        """Start from what the receiver trusts now.

        Args:
            origin: The list's checkpoint origin, ``crypto.checkpoint.list_origin``.
            verifiers: The list owner's keys (never the relaying peer's): its
                log keys and its cosigner keys, whose dated cosignature is
                the checkpoint's time for every freshness check below.
            trusted: The newest checkpoint accepted for this list, if any.
            stored: The right edge of the stored tree; its size and root must
                be those of ``trusted`` (empty without one).
            now: The current time, Unix seconds.
            max_age_seconds: An offered checkpoint older than this is stale.
            max_skew_seconds: An offered checkpoint dated further ahead of
                ``now`` than this is refused.
            refuse_stale_unchanged: Also refuse an unchanged checkpoint when the
                newest one trusted is older than ``max_age_seconds``: for a
                receiver with no other alarm for a list its owner stopped
                re-signing (``hashfed pull``); a node flags those in its
                health report instead.
            witnesses: Cosigner keys of the witnesses named in the owner's policy.
            witness_quorum: How many distinct ones of them must have cosigned
                a checkpoint that changes the trusted state (split views).

        Raises:
            ValueError: ``stored`` does not describe the trusted tree.
        """
        want_size = trusted.size if trusted else 0
        if stored.size != want_size or (trusted and stored.root() != trusted.root_hash):
            raise ValueError(
                f"{origin}: the stored tree (size {stored.size}) is not the trusted checkpoint's"
            )
        self.origin = origin
        self._verifiers = list(verifiers)
        self.trusted = trusted
        self._range = stored.copy()
        self._stored_size = stored.size
        self._now = now
        self._max_age = max_age_seconds
        self._max_skew = max_skew_seconds
        self._refuse_stale_unchanged = refuse_stale_unchanged
        self._witnesses = list(witnesses)
        self._quorum = witness_quorum
        self._step = _Step.NEW
        self._by_entries = False
        self._replay_until = 0  # replaying from 0: the trusted size whose root is checked
        self._replay_diverged = False
        self.offered: SignedCheckpoint | None = None
        self.offered_note: str | None = None

    # --- guards ---------------------------------------------------------------------------

    def _expect(self, *steps: _Step, call: str) -> None:
        if self._step not in steps:
            raise RuntimeError(
                f"{call}() called in step {self._step.value}; "
                f"expected {' or '.join(s.value for s in steps)}"
            )

    def _fail(self, exc: HashfedError) -> HashfedError:
        self._step = _Step.FAILED
        return exc

    # --- steps ------------------------------------------------------------------------------

    def offer(self, note: str) -> Outcome:
        """Check an offered checkpoint against the owner's keys and the trusted one.

        Order: signature, checkpoint syntax, origin (``verify_checkpoint``);
        then a date in the future, rollback, same-size fork, freshness.

        Raises:
            LimitExceededError: the note is too large or has too many signatures.
            MalformedNoteError: the note is not a signed note.
            BadSignatureError: an owner key's signature does not verify.
            NoTrustedSignatureError: no owner key signed it (another node's key,
                e.g. a relay signing a list it does not own).
            MissingCosignatureError: the owner's cosigner key did not cosign
                it, so it has no trusted date (a note from before cosignatures).
            MalformedCheckpointError: the signed text is not a checkpoint.
            UnknownOriginError: a checkpoint for another list.
            FutureCheckpointError: dated more than ``max_skew_seconds`` ahead:
                accepted, it would outrank every honest heartbeat and keep
                the list from ever going stale.
            RollbackError: smaller than the trusted checkpoint.
            ForkError: the trusted size with another root.
            StaleError: older than ``max_age_seconds`` (unless it is the trusted
                tree, unchanged; with ``refuse_stale_unchanged``, then the
                trusted checkpoint's age counts).
            MissingWitnessError: fewer than ``witness_quorum`` of ``witnesses``
                cosigned a checkpoint that would change the trusted state.
            RuntimeError: called twice.
        """
        self._expect(_Step.NEW, call="offer")
        try:
            cp = verify_checkpoint(
                note, origin=self.origin, verifiers=self._verifiers, witnesses=self._witnesses
            )
        except HashfedError as exc:
            raise self._fail(exc) from None
        self.offered, self.offered_note = cp, note
        ahead = cp.timestamp - self._now
        if ahead > self._max_skew:
            raise self._fail(
                FutureCheckpointError(
                    origin=self.origin, ahead_seconds=ahead, max_skew_seconds=self._max_skew
                )
            )
        trusted = self.trusted
        if trusted is not None:
            if cp.size < trusted.size:
                raise self._fail(
                    RollbackError(origin=self.origin, trusted_size=trusted.size, new_size=cp.size)
                )
            if cp.size == trusted.size and cp.root_hash != trusted.root_hash:
                raise self._fail(
                    ForkError(
                        origin=self.origin,
                        size=cp.size,
                        reason="the owner signed two different roots for this size",
                    )
                )
            if cp.size == trusted.size and cp.timestamp <= trusted.timestamp:
                age = self._now - trusted.timestamp
                if self._refuse_stale_unchanged and age > self._max_age:
                    raise self._fail(
                        StaleError(
                            origin=self.origin, age_seconds=age, max_age_seconds=self._max_age
                        )
                    )
                self._step = _Step.READY
                return Outcome.UNCHANGED
        age = self._now - cp.timestamp
        if age > self._max_age:
            raise self._fail(
                StaleError(origin=self.origin, age_seconds=age, max_age_seconds=self._max_age)
            )
        if len(cp.witnessed_by) < self._quorum:
            # An owner (or its stolen key) showing us a tree no independent
            # witness has seen: it may be showing others another one.
            raise self._fail(
                MissingWitnessError(
                    origin=self.origin, have=len(cp.witnessed_by), need=self._quorum
                )
            )
        if trusted is not None and cp.size == trusted.size:
            self._step = _Step.READY
            return Outcome.REFRESH
        self._step = _Step.PROVEN if not self.needs_consistency_proof_for(cp) else _Step.OFFERED
        return Outcome.GROW

    def needs_consistency_proof_for(self, cp: SignedCheckpoint) -> bool:
        return self.trusted is not None and 0 < self.trusted.size < cp.size

    @property
    def needs_consistency_proof(self) -> bool:
        """Whether :meth:`verify_consistency` must run before any leaves."""
        return self._step is _Step.OFFERED

    def verify_consistency(self, proof: Sequence[bytes]) -> None:
        """Check that the offered tree extends the trusted one (RFC 9162 §2.1.4.2).

        Done before any entry is fetched, so a forked history is caught by
        its O(log n) proof, whoever relays it.

        Raises:
            ForkError: the proof does not verify; the two signed checkpoints
                are kept as evidence by the caller.
            RuntimeError: not after a growing ``offer``, or not needed.
        """
        self._expect(_Step.OFFERED, call="verify_consistency")
        assert self.offered is not None
        assert self.trusted is not None
        try:
            verify_consistency(
                self.trusted.size,
                self.offered.size,
                proof,
                self.trusted.root_hash,
                self.offered.root_hash,
            )
        except ConsistencyProofError as exc:
            raise self._fail(
                ForkError(
                    origin=self.origin,
                    size=self.offered.size,
                    reason=f"not consistent with the accepted size {self.trusted.size}: "
                    f"{exc.fields.get('reason', exc.message)}",
                )
            ) from None
        self._step = _Step.PROVEN

    def prove_with_entries(self, start: int) -> None:
        """Let the entries from ``start`` on prove that the offered tree extends the trusted one.

        For a source that serves entries but no consistency proofs (a feed).
        ``start`` is the stored size: the new entries extend the stored right
        edge, so only an extension of the trusted tree can reach the signed
        root in :meth:`finish` (a fork is then refused as altered entries,
        which without a proof it cannot be told from). ``start`` 0 (a source
        that starts over): the entries are replayed from seq 0, and those up
        to the trusted size must rebuild the trusted root.

        Raises:
            ValueError: ``start`` is neither 0 nor the stored size.
            RuntimeError: not right after an ``offer`` that passed, or called twice.
        """
        self._expect(_Step.OFFERED, _Step.PROVEN, _Step.READY, call="prove_with_entries")
        assert self.offered is not None
        stored = self._range.size
        if self._by_entries or (self._step is _Step.PROVEN and stored != self._stored_size):
            raise RuntimeError("prove_with_entries() after leaves were fed, or twice")
        if start not in (0, stored):
            raise ValueError(f"{self.origin}: entries from {start}; the stored size is {stored}")
        self._by_entries = True
        if start == stored:
            if self._step is _Step.OFFERED:
                self._step = _Step.PROVEN
            return
        self._range = CompactRange()
        self._replay_until = stored
        self._step = _Step.PROVEN

    @property
    def next_seq(self) -> int:
        """The seq of the next entry to feed (the stored size plus what was fed)."""
        return self._range.size

    @property
    def remaining(self) -> int:
        """Entries still to feed before :meth:`finish`."""
        if self._step is not _Step.PROVEN or self.offered is None:
            return 0
        return self.offered.size - self._range.size

    def add_leaves(self, leaf_hashes: Sequence[bytes]) -> None:
        """Feed the leaf hashes of the next entries, in seq order.

        Raises:
            LimitExceededError: more entries than the checkpoint covers.
            RuntimeError: before ``offer``/``verify_consistency``, or after ``finish``.
        """
        self._expect(_Step.PROVEN, call="add_leaves")
        assert self.offered is not None
        if len(leaf_hashes) > self.remaining:
            raise self._fail(
                LimitExceededError(
                    limit="entries beyond the signed checkpoint",
                    value=self._range.size + len(leaf_hashes),
                    maximum=self.offered.size,
                )
            )
        at = self._replay_until
        if at and self._range.size + len(leaf_hashes) >= at:
            cut = at - self._range.size
            self._range.extend(leaf_hashes[:cut])
            leaf_hashes = leaf_hashes[cut:]
            self._replay_until = 0
            assert self.trusted is not None
            # Judged in finish(): a signed root reached over another prefix is
            # the owner's fork; otherwise the entries were altered on the way.
            self._replay_diverged = self._range.root() != self.trusted.root_hash
        self._range.extend(leaf_hashes)

    def finish(self) -> Accepted:
        """Compare the recomputed root with the signed one and return the new trusted state.

        Raises:
            RootMismatchError: the entries do not hash to the signed root
                (altered, dropped, duplicated or reordered).
            ForkError: replayed entries (``prove_with_entries(0)``) reach the
                signed root but not the trusted root at the trusted size.
            RuntimeError: entries are missing, or called out of order.
        """
        self._expect(_Step.PROVEN, _Step.READY, call="finish")
        cp, note = self.offered, self.offered_note
        assert cp is not None
        assert note is not None
        if self._step is _Step.PROVEN:
            if self._range.size != cp.size:
                raise RuntimeError(f"finish() with {self.remaining} entries still to feed")
            root = self._range.root()
            if root != cp.root_hash:
                raise self._fail(
                    RootMismatchError(
                        origin=self.origin,
                        size=cp.size,
                        expected=cp.root_hash.hex(),
                        got=root.hex(),
                    )
                )
            if self._replay_diverged:
                assert self.trusted is not None
                raise self._fail(
                    ForkError(
                        origin=self.origin,
                        size=self.trusted.size,
                        reason="the signed tree does not contain the one accepted before",
                    )
                )
        self._step = _Step.DONE
        return Accepted(cp.size, cp.root_hash, cp.timestamp, note)

    @property
    def compact_range(self) -> CompactRange:
        """The right edge after :meth:`finish` (a copy).

        Raises:
            RuntimeError: before a successful ``finish``.
        """
        self._expect(_Step.DONE, call="compact_range")
        return self._range.copy()
