"""The per-list pull state machine: one test per attack it stops, named after the attack.

No I/O: trees are built in memory, checkpoints signed with throwaway keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest

from crypto.checkpoint import Checkpoint, CheckpointSigner, format_checkpoint, list_origin
from crypto.cosignature import CosignatureSigner
from crypto.errors import (
    BadSignatureError,
    ForkError,
    FutureCheckpointError,
    LimitExceededError,
    MalformedNoteError,
    MissingCosignatureError,
    MissingWitnessError,
    NoTrustedSignatureError,
    RollbackError,
    RootMismatchError,
    StaleError,
    UnknownOriginError,
)
from crypto.merkle import CompactRange, TreeLevels, leaf_hash
from crypto.note import sign_note
from federation.trusted_state import Accepted, ListUpdate, Outcome
from node.log.entry import encode_leaf

OWNER = CheckpointSigner.generate("au-argos")
RELAY = CheckpointSigner.generate("be-fccu")
ORIGIN = list_origin("au-argos", "series-2041")
NOW = 1_800_000_000
MAX_AGE = 6 * 3600

Entry = tuple[int, str, str, str, str, int]


def entries(n: int, start: int = 0, salt: str = "") -> list[Entry]:
    return [
        (
            i,
            "add",
            "sha256",
            hashlib.sha256(f"{salt}{i}".encode()).hexdigest(),
            "A1",
            1_700_000_000_000 + i,
        )
        for i in range(start, start + n)
    ]


def leaves(es: Sequence[Entry]) -> list[bytes]:
    return [leaf_hash(encode_leaf(*e)) for e in es]


def tree(es: Sequence[Entry]) -> TreeLevels:
    return TreeLevels(leaves(es))


def note(
    size: int,
    root: bytes,
    *,
    ts: int = NOW - 60,
    origin: str = ORIGIN,
    by: CheckpointSigner = OWNER,
) -> str:
    return by.sign(Checkpoint(origin, size, root), ts)


def accepted(es: Sequence[Entry], ts: int = NOW - 3600) -> tuple[Accepted, CompactRange]:
    t = tree(es)
    n = note(len(es), t.root(), ts=ts)
    return Accepted(len(es), t.root(), ts, n), t.compact_range()


def update(
    trusted: Accepted | None = None,
    stored: CompactRange | None = None,
    *,
    verifiers: Sequence[CheckpointSigner] = (OWNER,),
    origin: str = ORIGIN,
    refuse_stale_unchanged: bool = False,
) -> ListUpdate:
    return ListUpdate(
        origin=origin,
        verifiers=[v for s in verifiers for v in s.verifiers()],
        trusted=trusted,
        stored=stored if stored is not None else CompactRange(),
        now=NOW,
        max_age_seconds=MAX_AGE,
        refuse_stale_unchanged=refuse_stale_unchanged,
    )


def pull(u: ListUpdate, es: Sequence[Entry], page: int = 7) -> Accepted:
    for i in range(0, len(es), page):
        u.add_leaves(leaves(es[i : i + page]))
    return u.finish()


# --- honest pulls ------------------------------------------------------------------------------


def test_first_pull_of_an_honest_list_is_accepted() -> None:
    es = entries(100)
    t = tree(es)
    u = update()
    assert u.offer(note(100, t.root())) is Outcome.GROW
    assert not u.needs_consistency_proof
    assert u.next_seq == 0
    assert u.remaining == 100
    got = pull(u, es)
    assert (got.size, got.root_hash) == (100, t.root())
    assert u.compact_range == t.compact_range()


def test_growth_with_a_valid_consistency_proof_is_accepted() -> None:
    es = entries(70)
    trusted, stored = accepted(es[:30])
    t = tree(es)
    u = update(trusted, stored)
    assert u.offer(note(70, t.root())) is Outcome.GROW
    assert u.needs_consistency_proof
    u.verify_consistency(t.consistency_proof(30, 70))
    assert u.next_seq == 30
    got = pull(u, es[30:])
    assert got.size == 70


def test_the_same_checkpoint_again_is_unchanged_not_an_error() -> None:
    trusted, stored = accepted(entries(10))
    u = update(trusted, stored)
    assert u.offer(trusted.note) is Outcome.UNCHANGED
    assert u.remaining == 0
    u.finish()


def test_the_same_tree_resigned_later_is_a_refresh() -> None:
    es = entries(10)
    trusted, stored = accepted(es)
    u = update(trusted, stored)
    fresh = note(10, trusted.root_hash, ts=NOW - 5)
    assert u.offer(fresh) is Outcome.REFRESH
    assert u.finish().note == fresh


def test_an_older_note_of_the_same_tree_is_unchanged_even_if_stale() -> None:
    # A relay that lags behind our own fresher copy is not an attack on us.
    es = entries(10)
    trusted, stored = accepted(es, ts=NOW - 10)
    u = update(trusted, stored)
    assert u.offer(note(10, trusted.root_hash, ts=NOW - 2 * MAX_AGE)) is Outcome.UNCHANGED


def test_an_empty_published_list_is_accepted() -> None:
    u = update()
    assert u.offer(note(0, CompactRange().root())) is Outcome.GROW
    assert u.remaining == 0
    assert u.finish().size == 0


# --- 1. entries altered, dropped, duplicated or reordered ----------------------------------------


def _tampered_pull(served: list[Entry], signed: list[Entry]) -> None:
    u = update()
    u.offer(note(len(signed), tree(signed).root()))
    with pytest.raises(RootMismatchError):
        pull(u, served)


def test_altered_entry_is_refused() -> None:
    es = entries(20)
    bad = list(es)
    bad[5] = (5, "add", "sha256", "0" * 64, "A1", es[5][5])
    _tampered_pull(bad, es)


def test_altered_category_is_refused() -> None:
    es = entries(20)
    bad = list(es)
    bad[5] = (*es[5][:4], "B2", es[5][5])
    _tampered_pull(bad, es)


def test_dropped_entry_is_refused() -> None:
    es = entries(20)
    # Entry 7 dropped, later ones renumbered, one made up at the end to fill the count.
    bad = [*es[:7], *[(i - 1, *e[1:]) for i, e in enumerate(es[8:], start=8)]]
    bad.append((19, "add", "sha256", "f" * 64, "A1", 0))
    _tampered_pull(bad, es)


def test_duplicated_entry_is_refused() -> None:
    es = entries(20)
    bad = list(es)
    bad[9] = (9, *es[8][1:])
    _tampered_pull(bad, es)


def test_reordered_entries_are_refused() -> None:
    es = entries(20)
    bad = list(es)
    bad[3], bad[4] = (3, *es[4][1:]), (4, *es[3][1:])
    _tampered_pull(bad, es)


def test_hidden_removal_is_refused() -> None:
    # A relay turning a remove into an add keeps a revoked hash alive downstream.
    es = entries(10)
    es.append((10, "remove", "sha256", es[2][3], "A1", 1))
    bad = [*es[:10], (10, "add", *es[10][2:])]
    _tampered_pull(bad, es)


def test_entries_beyond_the_checkpoint_are_refused() -> None:
    es = entries(20)
    u = update()
    u.offer(note(10, tree(es[:10]).root()))
    with pytest.raises(LimitExceededError):
        u.add_leaves(leaves(es))


# --- 2. wrong key, or the owner's checkpoint for another list -------------------------------------


def test_checkpoint_signed_by_a_relay_not_the_owner_is_refused() -> None:
    es = entries(5)
    u = update()
    with pytest.raises(NoTrustedSignatureError):
        u.offer(note(5, tree(es).root(), by=RELAY))


def test_relay_claiming_to_own_the_owners_list_is_refused() -> None:
    # The relay's catalog names itself as owner: we check its keys for its
    # origin, and the note carries the real owner's origin and signature.
    es = entries(5)
    u = update(verifiers=[RELAY], origin=list_origin("be-fccu", "series-2041"))
    with pytest.raises(NoTrustedSignatureError):
        u.offer(note(5, tree(es).root()))


def test_relay_resigning_under_its_own_origin_is_refused() -> None:
    es = entries(5)
    u = update(verifiers=[RELAY], origin=list_origin("be-fccu", "series-2041"))
    with pytest.raises(UnknownOriginError):
        u.offer(note(5, tree(es).root(), by=RELAY))


def test_owners_checkpoint_for_another_list_is_refused() -> None:
    es = entries(5)
    other = list_origin("au-argos", "other-list")
    u = update()
    with pytest.raises(UnknownOriginError):
        u.offer(note(5, tree(es).root(), origin=other))


def test_note_body_altered_under_a_valid_signature_is_refused() -> None:
    es = entries(5)
    good = note(5, tree(es).root())
    text = format_checkpoint(Checkpoint(ORIGIN, 5, tree(es).root()))
    forged = good.replace(text, text.replace("\n5\n", "\n6\n", 1))
    u = update()
    with pytest.raises(BadSignatureError):
        u.offer(forged)


def test_checkpoint_without_the_owners_dated_cosignature_is_refused() -> None:
    # Signed by the log key alone: nothing says when, so a replay could not be told.
    es = entries(5)
    text = format_checkpoint(Checkpoint(ORIGIN, 5, tree(es).root()))
    u = update()
    with pytest.raises(MissingCosignatureError):
        u.offer(sign_note(text, [OWNER.log]))


def test_cosignature_time_rewritten_under_the_owners_signature_is_refused() -> None:
    # A relay moving the cosignature's timestamp forward to defeat the freshness check.
    import base64

    es = entries(5)
    good = note(5, tree(es).root(), ts=NOW - 2 * MAX_AGE)
    head, _, last = good.rstrip("\n").rpartition("\n")
    prefix, _, b64 = last.rpartition(" ")
    blob = bytearray(base64.b64decode(b64))
    blob[4:12] = (NOW - 60).to_bytes(8, "big")
    forged = f"{head}\n{prefix} {base64.b64encode(bytes(blob)).decode()}\n"
    u = update()
    with pytest.raises(BadSignatureError):
        u.offer(forged)


def test_garbage_instead_of_a_note_is_refused() -> None:
    u = update()
    with pytest.raises(MalformedNoteError):
        u.offer("not a note")


# --- 3. rollback ----------------------------------------------------------------------------------


def test_rollback_to_a_smaller_checkpoint_is_refused() -> None:
    es = entries(20)
    trusted, stored = accepted(es)
    u = update(trusted, stored)
    with pytest.raises(RollbackError):
        u.offer(note(10, tree(es[:10]).root(), ts=NOW))


def test_rollback_to_the_empty_tree_is_refused() -> None:
    trusted, stored = accepted(entries(3))
    u = update(trusted, stored)
    with pytest.raises(RollbackError):
        u.offer(note(0, CompactRange().root(), ts=NOW))


# --- 4. fork --------------------------------------------------------------------------------------


def test_fork_same_size_another_root_is_refused() -> None:
    trusted, stored = accepted(entries(10))
    u = update(trusted, stored)
    other = tree(entries(10, salt="fork")).root()
    with pytest.raises(ForkError):
        u.offer(note(10, other, ts=NOW))
    assert u.offered is not None
    assert u.offered.root_hash == other  # kept for the evidence


def test_fork_larger_tree_that_rewrites_history_is_refused() -> None:
    es = entries(10)
    trusted, stored = accepted(es)
    forked = [*entries(10, salt="fork"), *entries(10, start=10)]
    ft = tree(forked)
    u = update(trusted, stored)
    assert u.offer(note(20, ft.root())) is Outcome.GROW
    with pytest.raises(ForkError):
        u.verify_consistency(ft.consistency_proof(10, 20))


def test_fork_with_a_forged_consistency_proof_is_refused() -> None:
    es = entries(10)
    trusted, stored = accepted(es)
    forked = [*entries(10, salt="fork"), *entries(13, start=10)]
    ft = tree(forked)
    honest_shape = tree([*es, *entries(13, start=10)]).consistency_proof(10, 23)
    u = update(trusted, stored)
    u.offer(note(23, ft.root()))
    with pytest.raises(ForkError):
        u.verify_consistency(honest_shape)


def test_fork_with_a_truncated_consistency_proof_is_refused() -> None:
    es = entries(23)
    trusted, stored = accepted(es[:10])
    t = tree(es)
    u = update(trusted, stored)
    u.offer(note(23, t.root()))
    with pytest.raises(ForkError):
        u.verify_consistency(t.consistency_proof(10, 23)[:-1])


# --- 5. freeze (stale checkpoint) -----------------------------------------------------------------


def test_freeze_attack_with_an_old_checkpoint_is_refused() -> None:
    es = entries(10)
    u = update()
    with pytest.raises(StaleError):
        u.offer(note(10, tree(es).root(), ts=NOW - MAX_AGE - 1))


def test_freeze_attack_with_an_old_larger_checkpoint_is_refused() -> None:
    es = entries(20)
    trusted, stored = accepted(es[:10], ts=NOW - 2 * MAX_AGE)
    u = update(trusted, stored)
    with pytest.raises(StaleError):
        u.offer(note(20, tree(es).root(), ts=NOW - MAX_AGE - 1))


def test_stale_resign_of_the_same_tree_is_refused() -> None:
    es = entries(10)
    trusted, stored = accepted(es, ts=NOW - 3 * MAX_AGE)
    u = update(trusted, stored)
    with pytest.raises(StaleError):
        u.offer(note(10, trusted.root_hash, ts=NOW - 2 * MAX_AGE))


# --- 6. never stale (a checkpoint dated in the future) -------------------------------------------

SKEW = 300  # the default max_clock_skew_seconds


def test_future_dated_checkpoint_is_refused() -> None:
    es = entries(10)
    u = update()
    with pytest.raises(FutureCheckpointError):
        u.offer(note(10, tree(es).root(), ts=NOW + 10 * 365 * 86_400))


def test_future_dated_resign_of_the_trusted_tree_is_refused() -> None:
    # Accepted, it would make every later honest heartbeat "unchanged" for good.
    es = entries(10)
    trusted, stored = accepted(es)
    u = update(trusted, stored)
    with pytest.raises(FutureCheckpointError):
        u.offer(note(10, trusted.root_hash, ts=NOW + SKEW + 1))


def test_future_dated_checkpoint_keeps_its_note_for_evidence() -> None:
    es = entries(10)
    u = update()
    signed = note(10, tree(es).root(), ts=NOW + 3600)
    with pytest.raises(FutureCheckpointError):
        u.offer(signed)
    assert u.offered_note == signed  # the caller records the signed note as evidence


def test_checkpoint_within_the_clock_skew_is_accepted() -> None:
    es = entries(10)
    u = update()
    assert u.offer(note(10, tree(es).root(), ts=NOW + SKEW)) is Outcome.GROW


# --- guards: programming errors are RuntimeError --------------------------------------------------


def test_leaves_before_an_offer_raise_runtime_error() -> None:
    with pytest.raises(RuntimeError):
        update().add_leaves(leaves(entries(1)))


def test_finish_before_an_offer_raises_runtime_error() -> None:
    with pytest.raises(RuntimeError):
        update().finish()


def test_offering_twice_raises_runtime_error() -> None:
    es = entries(3)
    u = update()
    u.offer(note(3, tree(es).root()))
    with pytest.raises(RuntimeError):
        u.offer(note(3, tree(es).root()))


def test_leaves_before_the_needed_consistency_proof_raise_runtime_error() -> None:
    es = entries(20)
    trusted, stored = accepted(es[:10])
    u = update(trusted, stored)
    u.offer(note(20, tree(es).root()))
    with pytest.raises(RuntimeError):
        u.add_leaves(leaves(es[10:]))


def test_consistency_proof_when_none_is_needed_raises_runtime_error() -> None:
    es = entries(3)
    u = update()
    u.offer(note(3, tree(es).root()))
    with pytest.raises(RuntimeError):
        u.verify_consistency([])


def test_finish_with_entries_missing_raises_runtime_error() -> None:
    es = entries(10)
    u = update()
    u.offer(note(10, tree(es).root()))
    u.add_leaves(leaves(es[:5]))
    with pytest.raises(RuntimeError):
        u.finish()


def test_any_step_after_a_refusal_raises_runtime_error() -> None:
    es = entries(10)
    u = update()
    with pytest.raises(StaleError):
        u.offer(note(10, tree(es).root(), ts=0))
    with pytest.raises(RuntimeError):
        u.add_leaves(leaves(es))
    with pytest.raises(RuntimeError):
        u.finish()


def test_finishing_twice_raises_runtime_error() -> None:
    es = entries(2)
    u = update()
    u.offer(note(2, tree(es).root()))
    pull(u, es)
    with pytest.raises(RuntimeError):
        u.finish()


def test_new_state_is_not_readable_before_finish() -> None:
    es = entries(2)
    u = update()
    u.offer(note(2, tree(es).root()))
    with pytest.raises(RuntimeError):
        _ = u.compact_range


def test_a_stored_tree_that_is_not_the_trusted_one_is_refused_at_construction() -> None:
    trusted, _ = accepted(entries(10))
    with pytest.raises(ValueError, match="stored tree"):
        update(trusted, tree(entries(9)).compact_range())
    with pytest.raises(ValueError, match="stored tree"):
        update(trusted, tree(entries(10, salt="x")).compact_range())


# --- entries instead of a consistency proof (a feed serves no proofs) ----------------------------


def test_growth_proven_by_the_entries_after_the_stored_edge_is_accepted() -> None:
    es = entries(70)
    trusted, stored = accepted(es[:30])
    u = update(trusted, stored)
    assert u.offer(note(70, tree(es).root())) is Outcome.GROW
    u.prove_with_entries(30)
    assert not u.needs_consistency_proof
    assert (u.next_seq, u.remaining) == (30, 40)
    assert pull(u, es[30:]).size == 70
    assert u.compact_range == tree(es).compact_range()


def test_growth_replayed_from_seq_0_is_accepted() -> None:
    es = entries(70)
    trusted, stored = accepted(es[:30])
    u = update(trusted, stored)
    u.offer(note(70, tree(es).root()))
    u.prove_with_entries(0)
    assert (u.next_seq, u.remaining) == (0, 70)
    assert pull(u, es, page=11).size == 70  # a page straddles the trusted size
    assert u.compact_range == tree(es).compact_range()


def test_unchanged_list_replayed_from_seq_0_is_accepted() -> None:
    es = entries(10)
    trusted, stored = accepted(es)
    u = update(trusted, stored)
    assert u.offer(trusted.note) is Outcome.UNCHANGED
    u.prove_with_entries(0)
    assert u.remaining == 10
    assert pull(u, es).size == 10


def test_fork_larger_tree_rewriting_history_without_a_proof_is_refused() -> None:
    # Extending the stored edge, the forked tree's root is out of reach.
    es = entries(10)
    trusted, stored = accepted(es)
    forked = [*entries(10, salt="fork"), *entries(10, start=10)]
    u = update(trusted, stored)
    u.offer(note(20, tree(forked).root()))
    u.prove_with_entries(10)
    with pytest.raises(RootMismatchError):
        pull(u, forked[10:])


def test_fork_replayed_from_seq_0_that_rewrites_history_is_refused() -> None:
    es = entries(10)
    trusted, stored = accepted(es)
    forked = [*entries(10, salt="fork"), *entries(10, start=10)]
    u = update(trusted, stored)
    u.offer(note(20, tree(forked).root()))
    u.prove_with_entries(0)
    with pytest.raises(ForkError):
        pull(u, forked)


def test_altered_entry_in_a_replayed_prefix_is_refused_as_altered_not_as_a_fork() -> None:
    # Only the owner's signature over the other history would prove a fork.
    es = entries(20)
    trusted, stored = accepted(es[:10])
    bad = list(es)
    bad[3] = (3, "add", "sha256", "0" * 64, "A1", es[3][5])
    u = update(trusted, stored)
    u.offer(note(20, tree(es).root()))
    u.prove_with_entries(0)
    with pytest.raises(RootMismatchError):
        pull(u, bad)


def test_entries_from_another_start_raise_value_error() -> None:
    es = entries(20)
    trusted, stored = accepted(es[:10])
    u = update(trusted, stored)
    u.offer(note(20, tree(es).root()))
    with pytest.raises(ValueError, match="stored size"):
        u.prove_with_entries(5)


def test_proving_with_entries_after_leaves_were_fed_raises_runtime_error() -> None:
    es = entries(20)
    u = update()
    u.offer(note(20, tree(es).root()))
    u.add_leaves(leaves(es[:5]))
    with pytest.raises(RuntimeError):
        u.prove_with_entries(0)


def test_proving_with_entries_before_an_offer_raises_runtime_error() -> None:
    with pytest.raises(RuntimeError):
        update().prove_with_entries(0)


# --- a receiver with no other staleness alarm -----------------------------------------------------


def test_freeze_attack_replaying_the_trusted_checkpoint_is_refused_when_asked() -> None:
    # The owner stopped re-signing (or a server hides its heartbeats): the
    # same old note again must not read as "up to date".
    es = entries(10)
    trusted, stored = accepted(es, ts=NOW - MAX_AGE - 1)
    with pytest.raises(StaleError):
        update(trusted, stored, refuse_stale_unchanged=True).offer(trusted.note)
    assert update(trusted, stored).offer(trusted.note) is Outcome.UNCHANGED


def test_lagging_note_of_a_fresh_trusted_tree_is_unchanged_even_when_asked() -> None:
    es = entries(10)
    trusted, stored = accepted(es, ts=NOW - 10)
    u = update(trusted, stored, refuse_stale_unchanged=True)
    assert u.offer(note(10, trusted.root_hash, ts=NOW - 2 * MAX_AGE)) is Outcome.UNCHANGED


# --- witness policy: split views ----------------------------------------------------------------

WITNESS_B = CheckpointSigner.generate("b").cosigner
WITNESS_C = CheckpointSigner.generate("c").cosigner


def witnessed(note_text: str, *by: CosignatureSigner, ts: int = NOW - 30) -> str:
    body = note_text[: note_text.index("\n\n") + 1]
    return note_text + "".join(w.line(body, ts) for w in by)


def policy_update(quorum: int, trusted: Accepted | None = None, **kw: object) -> ListUpdate:
    return ListUpdate(
        origin=ORIGIN,
        verifiers=OWNER.verifiers(),
        trusted=trusted,
        stored=kw.pop("stored", CompactRange()),  # type: ignore[arg-type]
        now=NOW,
        max_age_seconds=MAX_AGE,
        witnesses=[WITNESS_B.verifier(), WITNESS_C.verifier()],
        witness_quorum=quorum,
    )


def test_split_view_without_an_independent_witness_is_refused() -> None:
    # The owner (or its stolen key) shows us a tree no witness has seen.
    es = entries(5)
    u = policy_update(1)
    with pytest.raises(MissingWitnessError):
        u.offer(note(5, tree(es).root()))


def test_checkpoint_cosigned_by_a_named_witness_is_accepted() -> None:
    es = entries(5)
    u = policy_update(1)
    assert u.offer(witnessed(note(5, tree(es).root()), WITNESS_B)) is Outcome.GROW
    assert u.offered is not None
    assert [c.name for c in u.offered.witnessed_by] == ["b"]
    assert u.offered.timestamp == NOW - 60  # witnesses never date the checkpoint


def test_one_witness_cosigning_twice_counts_once() -> None:
    es = entries(5)
    signed = witnessed(note(5, tree(es).root()), WITNESS_B)
    body = signed[: signed.index("\n\n") + 1]
    twice = signed + WITNESS_B.line(body, NOW - 20)
    with pytest.raises(MissingWitnessError):
        policy_update(2).offer(twice)
    assert policy_update(2).offer(witnessed(twice, WITNESS_C)) is Outcome.GROW


def test_unnamed_witness_does_not_count() -> None:
    es = entries(5)
    stranger = CheckpointSigner.generate("b").cosigner  # b's name, another key
    with pytest.raises(MissingWitnessError):
        policy_update(1).offer(witnessed(note(5, tree(es).root()), stranger))


def test_witness_cosignature_of_another_tree_rejects_the_note() -> None:
    # A witness's cosignature of view X pasted under view Y.
    es, other = entries(5), entries(5, salt="y")
    x = witnessed(note(5, tree(es).root()), WITNESS_B)
    line = x[x.rindex("— b ") :]
    y = note(5, tree(other).root()) + line
    with pytest.raises(BadSignatureError):
        policy_update(1).offer(y)


def test_unchanged_tree_needs_no_new_witness() -> None:
    es = entries(5)
    trusted, stored = accepted(es, ts=NOW - 60)
    assert policy_update(1, trusted, stored=stored).offer(trusted.note) is Outcome.UNCHANGED
