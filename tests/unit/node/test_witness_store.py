"""The witness table: one row per origin, moved only by compare-and-swap."""

from __future__ import annotations

from node.store import Store

A, B, C = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32


def test_first_cosigned_checkpoint_is_stored(store: Store) -> None:
    assert store.witnessed(origin="o") is None
    assert store.advance_witnessed(
        origin="o", old=None, size=3, root_hash=A, note="n3", cosigned_at=10
    )
    got = store.witnessed(origin="o")
    assert got is not None
    assert (got.size, got.root_hash, got.note, got.cosigned_at) == (3, A, "n3", 10)


def test_witness_race_second_writer_from_the_same_view_loses(store: Store) -> None:
    # Two add-checkpoint requests both checked consistency against size 3:
    # only the first may move the row; the second must re-read and re-check.
    store.advance_witnessed(origin="o", old=None, size=3, root_hash=A, note="n3", cosigned_at=1)
    assert store.advance_witnessed(
        origin="o", old=(3, A), size=5, root_hash=B, note="n5", cosigned_at=2
    )
    assert not store.advance_witnessed(
        origin="o", old=(3, A), size=6, root_hash=C, note="n6", cosigned_at=3
    )
    got = store.witnessed(origin="o")
    assert got is not None
    assert (got.size, got.root_hash) == (5, B)


def test_second_first_insert_loses(store: Store) -> None:
    store.advance_witnessed(origin="o", old=None, size=3, root_hash=A, note="n", cosigned_at=1)
    assert not store.advance_witnessed(
        origin="o", old=None, size=4, root_hash=B, note="m", cosigned_at=2
    )


def test_origins_are_independent(store: Store) -> None:
    store.advance_witnessed(origin="o1", old=None, size=3, root_hash=A, note="n", cosigned_at=1)
    assert store.witnessed(origin="o2") is None
