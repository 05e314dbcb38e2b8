"""Owning lists: create, add, remove, publish, verify — on every configured backend.

The tamper tests edit the database behind the node's back, the way an
attacker or a broken restore would, and check that verification names the
list. Tests are named after what they stop.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from crypto.checkpoint import list_origin, verify_checkpoint
from crypto.errors import (
    InputError,
    ListExistsError,
    NotInListError,
    NotOwnerError,
    UnknownListError,
)
from crypto.merkle import CompactRange
from node.log import lists, writer
from node.log.entry import encode_leaf
from node.log.verify import VerifyResult
from node.node import Node

NodeFactory = Callable[..., Node]
LIST = "au-argos/series-2041"


def md5(i: int) -> str:
    return hashlib.md5(f"test value {i}".encode()).hexdigest()  # noqa: S324  (test data)


def naive_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, recursively, straight from the definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + naive_root(leaves[:k]) + naive_root(leaves[k:])).digest()


def log_leaves(node: Node, full_name: str) -> list[bytes]:
    row = node.get_list(full_name)
    return [encode_leaf(*e) for e in node.store.iter_entries(list_id=row.id)]


def content_table(node: Node, full_name: str) -> dict[tuple[str, str], str]:
    return {(t, v): c for t, v, c in node.content(full_name)}


def audit_count(node: Node) -> int:
    return node.store.count_rows("audit")


def sql(node: Node, statement: str, **params: Any) -> int:
    with node.store.engine.begin() as conn:
        return conn.execute(text(statement), params).rowcount


@pytest.fixture
def node(node_factory: NodeFactory) -> Node:
    n = node_factory("au-argos")
    n.create_list(LIST, label="baseline", description="test list", actor="tester")
    return n


# --- create ----------------------------------------------------------------------------------


def test_create_list(node: Node) -> None:
    row = node.get_list(LIST)
    assert (row.owner, row.name, row.label, row.local) == (
        "au-argos",
        "series-2041",
        "baseline",
        True,
    )
    state = node.store.get_state(list_id=row.id)
    assert (state.size, state.live_count) == (0, 0)
    assert CompactRange.from_bytes(state.compact_range).root() == naive_root([])


def test_create_duplicate_list_is_refused(node: Node) -> None:
    with pytest.raises(ListExistsError):
        node.create_list(LIST, label="restricted", actor="tester")
    assert node.get_list(LIST).label == "baseline"
    assert len(node.store.all_lists()) == 1


def test_create_list_for_another_owner_is_refused(node: Node) -> None:
    with pytest.raises(NotOwnerError):
        node.create_list("nl-politie/series-1", label="baseline", actor="tester")
    assert len(node.store.all_lists()) == 1


@pytest.mark.parametrize(
    "name",
    [
        "series",
        "au-argos/",
        "/series",
        "AU-argos/series",
        "au-argos/Series",
        "au-argos/a b",
        "au-argos/a/b",
        "au-argos/" + "x" * 101,
        "au-argos/-x",
        "au-argos/x\n",
    ],
)
def test_bad_list_names_are_refused(node: Node, name: str) -> None:
    with pytest.raises(InputError):
        node.create_list(name, label="baseline", actor="tester")
    assert len(node.store.all_lists()) == 1


@pytest.mark.parametrize(
    "label", ["", "Baseline", "base line", "x" * 33, "-x", "lab/el", "baseline\n"]
)
def test_bad_labels_are_refused(node: Node, label: str) -> None:
    with pytest.raises(InputError):
        node.create_list("au-argos/other", label=label, actor="tester")
    assert len(node.store.all_lists()) == 1


def test_unknown_list(node: Node) -> None:
    with pytest.raises(UnknownListError):
        node.add_raw("au-argos/none", [("md5", md5(1), "")], actor="tester")


# --- add ------------------------------------------------------------------------------------------


def test_duplicate_adds_within_a_batch_are_one_entry(node: Node) -> None:
    result = node.add_raw(
        LIST,
        [("md5", md5(1), "A1"), ("MD5", md5(1).upper(), "B2"), ("md5", md5(2), "")],
        actor="tester",
    )
    assert (result.appended, result.skipped, result.size) == (2, 1, 2)
    assert content_table(node, LIST) == {("md5", md5(1)): "A1", ("md5", md5(2)): ""}


def test_duplicate_adds_across_calls_are_no_ops(node: Node) -> None:
    node.add_raw(LIST, [("md5", md5(1), "A1")], actor="tester")
    audits = audit_count(node)
    result = node.add_raw(LIST, [("md5", md5(1), "B2")], actor="tester")
    assert (result.appended, result.skipped, result.size) == (0, 1, 1)
    assert node.store.get_state(list_id=node.get_list(LIST).id).size == 1
    assert content_table(node, LIST) == {("md5", md5(1)): "A1"}  # first category kept
    assert audit_count(node) == audits  # nothing happened, nothing to audit
    mixed = node.add_raw(LIST, [("md5", md5(1), ""), ("md5", md5(2), "")], actor="tester")
    assert (mixed.appended, mixed.skipped, mixed.size) == (1, 1, 2)


def test_same_value_under_two_types_is_two_hashes(node: Node) -> None:
    value = "ab" * 32
    result = node.add_raw(LIST, [("sha256", value, ""), ("pdq", value, "")], actor="tester")
    assert result.appended == 2


def test_bad_hash_in_a_batch_adds_nothing(node: Node) -> None:
    with pytest.raises(InputError) as info:
        node.add_raw(LIST, [("md5", md5(1), ""), ("md5", "abc", "")], actor="tester")
    assert info.value.where == "hashes[1].value"
    assert node.store.get_state(list_id=node.get_list(LIST).id).size == 0


def test_change_listeners_see_exactly_the_new_hashes(node: Node) -> None:
    seen: list[Any] = []
    node.on_change(lambda batch: seen.extend(batch.changes))
    node.add_raw(LIST, [("md5", md5(1), "A1"), ("md5", md5(1), "A1")], actor="tester")
    node.add_raw(LIST, [("md5", md5(1), "A1")], actor="tester")
    node.remove(LIST, [("md5", md5(1))], actor="tester")
    assert [(c.op, c.value, c.category) for c in seen] == [
        ("add", md5(1), "A1"),
        ("remove", md5(1), "A1"),
    ]


# --- remove ---------------------------------------------------------------------------------------


def test_remove_appends_a_tombstone(node: Node) -> None:
    node.add_raw(LIST, [("md5", md5(1), "A1"), ("md5", md5(2), "B2")], actor="tester")
    result = node.remove(LIST, [("md5", md5(1).upper())], actor="tester")
    assert (result.appended, result.size) == (1, 3)
    row = node.get_list(LIST)
    entries = list(node.store.iter_entries(list_id=row.id))
    assert [(e[0], e[1], e[3], e[4]) for e in entries] == [
        (0, "add", md5(1), "A1"),
        (1, "add", md5(2), "B2"),
        (2, "remove", md5(1), "A1"),  # carries the category it revokes
    ]
    assert content_table(node, LIST) == {("md5", md5(2)): "B2"}
    assert node.store.get_state(list_id=row.id).live_count == 1


def test_remove_then_add_again_appends_a_new_add(node: Node) -> None:
    node.add_raw(LIST, [("md5", md5(1), "A1")], actor="tester")
    node.remove(LIST, [("md5", md5(1))], actor="tester")
    again = node.add_raw(LIST, [("md5", md5(1), "C3")], actor="tester")
    assert (again.appended, again.size) == (1, 3)
    assert content_table(node, LIST) == {("md5", md5(1)): "C3"}


def test_removing_an_absent_hash_changes_nothing(node: Node) -> None:
    node.add_raw(LIST, [("md5", md5(1), "A1")], actor="tester")
    row = node.get_list(LIST)
    state, audits = node.store.get_state(list_id=row.id), audit_count(node)

    with pytest.raises(NotInListError) as info:
        node.remove(LIST, [("md5", md5(1)), ("md5", md5(99))], actor="tester")

    assert info.value.where == "hashes[1]"
    assert md5(99) not in str(info.value)
    assert node.store.get_state(list_id=row.id) == state
    assert audit_count(node) == audits
    assert content_table(node, LIST) == {("md5", md5(1)): "A1"}


def test_removing_twice_is_refused(node: Node) -> None:
    node.add_raw(LIST, [("md5", md5(1), "")], actor="tester")
    node.remove(LIST, [("md5", md5(1))], actor="tester")
    with pytest.raises(NotInListError):
        node.remove(LIST, [("md5", md5(1))], actor="tester")
    assert node.store.get_state(list_id=node.get_list(LIST).id).size == 2


# --- the fold of the log is the content -----------------------------------------------------------

POOL = [md5(i) for i in range(6)]
steps = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove"]),
        st.lists(
            st.tuples(st.sampled_from(POOL), st.sampled_from(["", "A1", "B2"])),
            min_size=1,
            max_size=4,
        ),
    ),
    min_size=1,
    max_size=8,
)
_counter = itertools.count()


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # a new list per example
@given(ops=steps)
def test_fold_of_log_equals_content_table(node: Node, ops: list[Any]) -> None:
    name = f"au-argos/fold-{next(_counter)}"
    node.create_list(name, label="baseline", actor="tester")
    model: dict[tuple[str, str], str] = {}
    for op, items in ops:
        if op == "add":
            node.add_raw(name, [("md5", v, c) for v, c in items], actor="tester")
            for v, c in items:
                model.setdefault(("md5", v), c)
        else:
            keys = [("md5", v) for v, _c in items]
            if all(k in model for k in keys):
                node.remove(name, keys, actor="tester")
                for k in keys:
                    model.pop(k, None)
            else:
                with pytest.raises(NotInListError):
                    node.remove(name, keys, actor="tester")

    row = node.get_list(name)
    entries = list(node.store.iter_entries(list_id=row.id))
    folded = {k: c for k, (c, _seq) in lists.fold(entries).items()}
    assert folded == content_table(node, name) == model
    state = node.store.get_state(list_id=row.id)
    assert state.live_count == len(model)
    assert state.size == len(entries)
    assert [e[0] for e in entries] == list(range(len(entries)))
    stored = CompactRange.from_bytes(state.compact_range)
    assert stored.root() == naive_root([encode_leaf(*e) for e in entries])


def test_fold_keeps_first_add_and_forgets_removed() -> None:
    log = [
        (0, "add", "md5", "a", "A1", 0),
        (1, "add", "md5", "a", "B2", 0),
        (2, "add", "md5", "b", "", 0),
        (3, "remove", "md5", "b", "", 0),
        (4, "remove", "md5", "zzz", "", 0),
    ]
    assert lists.fold(log) == {("md5", "a"): ("A1", 0)}


# --- publish --------------------------------------------------------------------------------------


def test_publish_signs_the_naive_root(node: Node) -> None:
    node.add_raw(LIST, [("md5", md5(i), "A1") for i in range(13)], actor="tester")
    node.remove(LIST, [("md5", md5(3))], actor="tester")

    cp = node.publish(LIST, actor="tester")

    assert cp.size == 14
    assert cp.root_hash == naive_root(log_leaves(node, LIST))
    body = verify_checkpoint(
        cp.note,
        origin=list_origin("au-argos", "series-2041"),
        verifiers=node.checkpoint_signer.verifiers(),
    )
    assert (body.size, body.root_hash, body.timestamp) == (cp.size, cp.root_hash, cp.timestamp)


def test_publish_empty_list(node: Node) -> None:
    cp = node.publish(LIST, actor="tester")
    assert (cp.size, cp.root_hash) == (0, hashlib.sha256(b"").digest())
    assert all(r.ok for r in node.verify(LIST))


def test_republishing_unchanged_list_is_a_fresh_heartbeat(node: Node) -> None:
    node.add_raw(LIST, [("md5", md5(1), "")], actor="tester")
    row = node.get_list(LIST)
    first = writer.publish(
        node.store,
        node_id=node.node_id,
        row=row,
        signer=node.checkpoint_signer,
        actor="tester",
        timestamp=1_800_000_000,
    )
    second = writer.publish(
        node.store,
        node_id=node.node_id,
        row=row,
        signer=node.checkpoint_signer,
        actor="tester",
        timestamp=1_800_000_060,
    )
    assert (second.size, second.root_hash) == (first.size, first.root_hash)
    assert second.timestamp == 1_800_000_060
    assert second.note != first.note
    assert node.store.latest_checkpoint(list_id=row.id) == second
    # And through the node, with the clock.
    third = node.publish(LIST, actor="tester")
    assert (third.size, third.root_hash) == (first.size, first.root_hash)
    assert len(node.store.checkpoints(list_id=row.id)) == 3


def test_publish_received_list_is_refused(node: Node) -> None:
    row = node.store.create_list(
        owner="nl-politie",
        name="s",
        label="baseline",
        local=False,
        source_peer="nl-politie",
        empty_range=CompactRange().to_bytes(),
    )
    with pytest.raises(NotOwnerError):
        writer.publish(
            node.store, node_id=node.node_id, row=row, signer=node.checkpoint_signer, actor="t"
        )
    with pytest.raises(NotOwnerError):
        node.add_raw("nl-politie/s", [("md5", md5(1), "")], actor="tester")


# --- verify ---------------------------------------------------------------------------------------


def _published(node: Node, n: int = 6) -> None:
    node.add_raw(LIST, [("md5", md5(i), "A1") for i in range(n)], actor="tester")
    node.remove(LIST, [("md5", md5(0))], actor="tester")
    node.publish(LIST, actor="tester")


def _only(results: list[VerifyResult], full_name: str) -> VerifyResult:
    [r] = [r for r in results if r.row.full_name == full_name]
    return r


def test_verify_passes(node: Node) -> None:
    _published(node)
    node.add_raw(LIST, [("md5", md5(100), "")], actor="tester")  # unpublished tail is fine
    [result] = node.verify(LIST)
    assert result.ok
    assert (result.size, result.checkpoint_size) == (8, 7)


def test_verify_unpublished_list_passes(node: Node) -> None:
    node.add_raw(LIST, [("md5", md5(1), "")], actor="tester")
    [result] = node.verify(LIST)
    assert result.ok
    assert result.checkpoint_size is None


@pytest.mark.parametrize(
    ("column", "new"),
    [
        ("value", md5(1000)),
        ("category", "B2"),
        ("op", "remove"),
        ("hash_type", "pdq"),
        ("timestamp_ms", 1),
    ],
)
def test_tampered_entry_fails_verification(node: Node, column: str, new: Any) -> None:
    _published(node)
    node.create_list("au-argos/untouched", label="baseline", actor="tester")
    node.add_raw("au-argos/untouched", [("md5", md5(1), "")], actor="tester")
    node.publish("au-argos/untouched", actor="tester")
    row = node.get_list(LIST)

    changed = sql(
        node,
        f"UPDATE log_entry SET {column} = :new "  # noqa: S608  (fixed names)
        "WHERE list_id = :l AND seq = 2",
        new=new,
        l=row.id,
    )
    assert changed == 1

    results = node.verify()
    assert not _only(results, LIST).ok
    assert _only(results, "au-argos/untouched").ok
    assert not node.verify(LIST)[0].ok


@pytest.mark.parametrize("seq", [0, 3, 6])
def test_deleted_entry_fails_verification(node: Node, seq: int) -> None:
    _published(node)
    node.create_list("au-argos/untouched", label="baseline", actor="tester")
    row = node.get_list(LIST)
    assert sql(node, "DELETE FROM log_entry WHERE list_id = :l AND seq = :s", l=row.id, s=seq) == 1
    results = node.verify()
    assert not _only(results, LIST).ok
    assert _only(results, "au-argos/untouched").ok


def test_swapped_entries_fail_verification(node: Node) -> None:
    _published(node)
    row = node.get_list(LIST)
    sql(node, "UPDATE log_entry SET seq = 1000 WHERE list_id = :l AND seq = 1", l=row.id)
    sql(node, "UPDATE log_entry SET seq = 1 WHERE list_id = :l AND seq = 2", l=row.id)
    sql(node, "UPDATE log_entry SET seq = 2 WHERE list_id = :l AND seq = 1000", l=row.id)
    assert not node.verify(LIST)[0].ok


def test_tampered_checkpoint_root_fails_verification(node: Node) -> None:
    _published(node)
    row = node.get_list(LIST)
    sql(node, "UPDATE checkpoint SET root_hash = :r WHERE list_id = :l", r=b"\x00" * 32, l=row.id)
    assert not node.verify(LIST)[0].ok


def test_checkpoint_signed_by_another_key_fails_verification(
    node: Node, node_factory: NodeFactory
) -> None:
    _published(node)
    other = node_factory("au-argos-2")
    row = node.get_list(LIST)
    forged = writer.publish(
        node.store,
        node_id=node.node_id,
        row=row,
        signer=other.checkpoint_signer,
        actor="attacker",
        timestamp=2_000_000_000,
    )
    assert node.store.latest_checkpoint(list_id=row.id) == forged
    assert not node.verify(LIST)[0].ok


def test_rewritten_history_with_matching_state_fails_against_checkpoint(node: Node) -> None:
    """An attacker who also recomputes list_state is still caught by the signature."""
    _published(node)
    row = node.get_list(LIST)
    sql(
        node,
        "UPDATE log_entry SET value = :v WHERE list_id = :l AND seq = 1",
        v=md5(1000),
        l=row.id,
    )
    entries = list(node.store.iter_entries(list_id=row.id))
    cr = CompactRange()
    for e in entries:
        cr.append(hashlib.sha256(b"\x00" + encode_leaf(*e)).digest())
    sql(
        node,
        "UPDATE list_state SET compact_range = :c WHERE list_id = :l",
        c=cr.to_bytes(),
        l=row.id,
    )
    [result] = node.verify(LIST)
    assert not result.ok


def test_hash_inserted_into_content_only_fails_verification(node: Node) -> None:
    _published(node)
    row = node.get_list(LIST)
    sql(
        node,
        "INSERT INTO content (list_id, hash_type, value, category, seq) "
        "VALUES (:l, 'md5', :v, '', 0)",
        l=row.id,
        v=md5(5000),
    )
    assert not node.verify(LIST)[0].ok


# --- concurrency ----------------------------------------------------------------------------------
