"""The path a feed takes through the one list verifier: one test per attack, named after it.

``hashfed pull`` reads a feed stream (a header with the owner's signed
checkpoint, then entries) and hands every check to ``ListUpdate``. These
tests feed it streams built in memory, signed with throwaway keys, against a
saved state as a previous pull leaves it. The end-to-end pulls over TLS are
in tests/integration/test_pull.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from crypto.checkpoint import Checkpoint, CheckpointSigner, list_origin
from crypto.errors import (
    ForkError,
    FutureCheckpointError,
    NoTrustedSignatureError,
    PeerProtocolError,
    RollbackError,
    RootMismatchError,
    StaleError,
    UnknownOriginError,
)
from crypto.merkle import CompactRange
from federation.feed_pull import FeedVerifier, ListState, PullState
from federation.feed_pull.verify import Verified
from node.log.entry import leaf_hashes

OWNER = CheckpointSigner.generate("au-argos")
OTHER = CheckpointSigner.generate("au-argos")
NAME = "au-argos/series-2041"
ORIGIN = list_origin("au-argos", "series-2041")
NOW = 1_800_000_000
MAX_AGE = 7 * 86_400

Entry = tuple[int, str, str, str, str, int]


def entries(n: int, start: int = 0, salt: str = "") -> list[Entry]:
    return [
        (i, "add", "sha256", hashlib.sha256(f"{salt}{i}".encode()).hexdigest(), "A1", 1_000 + i)
        for i in range(start, start + n)
    ]


def root(es: Sequence[Entry]) -> bytes:
    cr = CompactRange()
    cr.extend(leaf_hashes(es))
    return cr.root()


def note(
    es: Sequence[Entry], *, ts: int = NOW - 60, by: CheckpointSigner = OWNER, origin: str = ORIGIN
) -> str:
    return by.sign(Checkpoint(origin, len(es), root(es)), ts)


def line(e: Entry, name: str = NAME) -> bytes:
    seq, op, t, v, c, ts = e
    # Exactly as node/feeds/feed.py writes it (the fast path).
    return (
        f'{{"list":"{name}","seq":{seq},"op":"{op}","type":"{t}",'
        f'"value":"{v}","category":"{c}","timestamp_ms":{ts}}}'
    ).encode()


def stream(signed: str, size: int, served: Sequence[Entry], start: int = 0) -> list[bytes]:
    header = {"list": NAME, "start": start, "size": size, "checkpoint": signed}
    return [
        json.dumps(header).encode(),
        *(line(e) for e in served),
        json.dumps({"cursor": "c"}).encode(),
    ]


def verify(
    lines: Sequence[bytes],
    old: PullState | None = None,
    tmp: Path | None = None,
    *,
    max_age: int = MAX_AGE,
    signers: Sequence[CheckpointSigner] = (OWNER,),
) -> dict[str, Verified]:
    v = FeedVerifier(
        old=old,
        trust={"au-argos": [v for s in signers for v in s.verifiers()]},
        peer="feed-server",
        tmp=tmp or Path("/nonexistent/tmp"),  # small pulls never spill
        max_age_seconds=max_age,
        now=NOW,
    )
    for raw in lines:
        v.line(raw)
    return v.finish()


def accepted(es: Sequence[Entry], *, ts: int = NOW - 3600) -> PullState:
    """The state a pull of ``es`` (signed at ``ts``) leaves behind."""
    got = verify(stream(note(es, ts=ts), len(es), es), max_age=0)[NAME]
    ls = ListState(got.size, got.compact_range, got.checkpoint, got.timestamp)
    return PullState("https://feed.example", "baseline", "c", 1, {NAME: ls})


# --- honest feeds ---------------------------------------------------------------------------------


def test_first_pull_of_an_honest_feed_is_accepted() -> None:
    es = entries(50)
    got = verify(stream(note(es), 50, es))[NAME]
    assert (got.size, got.apply_from) == (50, 0)
    assert CompactRange.from_bytes(got.compact_range).root() == root(es)
    assert sorted(got.changes["sha256"].items()) == [
        (e[3].encode(), True) for e in sorted(es, key=lambda e: e[3])
    ]


def test_incremental_feed_extending_the_accepted_tree_is_accepted() -> None:
    es = entries(80)
    old = accepted(es[:30])
    got = verify(stream(note(es), 80, es[30:], start=30), old)[NAME]
    assert (got.size, got.apply_from) == (80, 30)
    assert len(got.changes["sha256"]) == 50  # only the new entries change the files


def test_full_feed_after_a_resync_is_checked_against_the_accepted_tree() -> None:
    es = entries(80)
    old = accepted(es[:30])
    got = verify(stream(note(es), 80, es, start=0), old)[NAME]
    assert (got.size, got.apply_from) == (80, 30)
    assert len(got.changes["sha256"]) == 50


def test_unchanged_feed_is_accepted() -> None:
    es = entries(10)
    old = accepted(es)
    assert verify(stream(old.lists[NAME].checkpoint, 10, [], start=10), old)[NAME].size == 10
    # ... and served in full after a resync: checked again, nothing to apply.
    got = verify(stream(old.lists[NAME].checkpoint, 10, es), old)[NAME]
    assert (got.size, got.changes) == (10, {})


def test_max_age_0_turns_the_age_check_off() -> None:
    es = entries(5)
    assert verify(stream(note(es, ts=0), 5, es), max_age=0)[NAME].size == 5


# --- rollback -------------------------------------------------------------------------------------


def test_rolled_back_feed_is_refused() -> None:
    es = entries(20)
    old = accepted(es)
    with pytest.raises(RollbackError):
        verify(stream(note(es[:10], ts=NOW), 10, es[:10]), old)


# --- fork -----------------------------------------------------------------------------------------


def test_forked_feed_same_size_another_root_is_refused() -> None:
    old = accepted(entries(10))
    forked = entries(10, salt="fork")
    with pytest.raises(ForkError):
        verify(stream(note(forked, ts=NOW), 10, forked), old)


def test_forked_feed_replayed_from_the_start_is_refused() -> None:
    # The owner's key signs a larger tree over another history; served in
    # full, the entries up to the accepted size prove the fork.
    old = accepted(entries(10))
    forked = [*entries(10, salt="fork"), *entries(10, start=10)]
    with pytest.raises(ForkError):
        verify(stream(note(forked), 20, forked), old)


def test_forked_feed_extending_another_history_is_refused() -> None:
    # Served from the accepted size on, no entries can reach the forked root.
    old = accepted(entries(10))
    forked = [*entries(10, salt="fork"), *entries(10, start=10)]
    with pytest.raises(RootMismatchError):
        verify(stream(note(forked), 20, forked[10:], start=10), old)


# --- freeze (stale) and never-stale (future-dated) ------------------------------------------------


def test_frozen_feed_with_an_old_checkpoint_is_refused() -> None:
    es = entries(10)
    with pytest.raises(StaleError):
        verify(stream(note(es, ts=NOW - MAX_AGE - 1), 10, es))


def test_frozen_feed_replaying_the_accepted_checkpoint_is_refused() -> None:
    # Nothing new and nothing re-signed for longer than --max-age: the copy
    # is out of date, and the pull must say so rather than report success.
    es = entries(10)
    old = accepted(es, ts=NOW - MAX_AGE - 1)
    with pytest.raises(StaleError):
        verify(stream(old.lists[NAME].checkpoint, 10, [], start=10), old)


def test_future_dated_feed_checkpoint_is_refused() -> None:
    es = entries(10)
    with pytest.raises(FutureCheckpointError):
        verify(stream(note(es, ts=NOW + 86_400), 10, es))


# --- root mismatch: entries altered, dropped or reordered on the way ------------------------------


def test_tampered_feed_entry_is_refused() -> None:
    es = entries(20)
    bad = list(es)
    bad[7] = (7, "add", "sha256", "0" * 64, "A1", es[7][5])
    with pytest.raises(RootMismatchError):
        verify(stream(note(es), 20, bad))


def test_hidden_removal_in_a_feed_is_refused() -> None:
    es = [*entries(10), (10, "remove", "sha256", entries(1)[0][3], "A1", 5)]
    bad = [*es[:10], (10, "add", *es[10][2:])]
    with pytest.raises(RootMismatchError):
        verify(stream(note(es), 11, bad))


def test_tampered_entry_in_a_replayed_prefix_is_refused_as_tampering() -> None:
    es = entries(20)
    old = accepted(es[:10])
    bad = list(es)
    bad[3] = (3, "add", "sha256", "0" * 64, "A1", es[3][5])
    with pytest.raises(RootMismatchError):
        verify(stream(note(es), 20, bad), old)


def test_dropped_feed_entry_is_refused() -> None:
    es = entries(20)
    with pytest.raises(PeerProtocolError):
        verify(stream(note(es), 20, [*es[:5], *es[6:]]))


# --- keys and framing -----------------------------------------------------------------------------


def test_feed_signed_by_a_key_not_trusted_is_refused() -> None:
    es = entries(5)
    with pytest.raises(NoTrustedSignatureError):
        verify(stream(note(es, by=OTHER), 5, es))


def test_feed_of_an_owner_with_no_trusted_key_is_refused() -> None:
    es = entries(5)
    with pytest.raises(NoTrustedSignatureError):
        verify(stream(note(es), 5, es), signers=())


def test_owners_checkpoint_for_another_list_is_refused() -> None:
    es = entries(5)
    other = note(es, origin=list_origin("au-argos", "other"))
    with pytest.raises(UnknownOriginError):
        verify(stream(other, 5, es))


def test_header_size_other_than_the_signed_size_is_refused() -> None:
    es = entries(5)
    with pytest.raises(PeerProtocolError):
        verify(stream(note(es), 4, es[:4]))


def test_feed_starting_past_what_we_hold_is_refused() -> None:
    es = entries(20)
    old = accepted(es[:10])
    with pytest.raises(PeerProtocolError):
        verify(stream(note(es), 20, es[12:], start=12), old)
