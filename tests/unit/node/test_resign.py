"""Owned lists signed before cosignatures (or with older keys) are re-signed by their owner."""

from __future__ import annotations

import base64
from collections.abc import Callable

from crypto.checkpoint import list_origin, verify_checkpoint
from crypto.note import sign_note
from node.node import Node

LIST = "au-argos/series-1"
NodeFactory = Callable[..., Node]


def _legacy(node: Node) -> None:
    """Store the newest checkpoint the way versions before cosignatures signed it."""
    row = node.get_list(LIST)
    latest = node.store.latest_checkpoint(list_id=row.id)
    assert latest is not None
    text = (
        f"{list_origin('au-argos', 'series-1')}\n{latest.size}\n"
        f"{base64.b64encode(latest.root_hash).decode()}\ntimestamp {latest.timestamp + 1}\n"
    )
    node.store.add_checkpoint(
        list_id=row.id,
        size=latest.size,
        root_hash=latest.root_hash,
        timestamp=latest.timestamp + 1,
        note=sign_note(text, [node.signer]),
    )


def _published(node_factory: NodeFactory) -> Node:
    n = node_factory("au-argos")
    n.create_list(LIST, label="baseline", actor="tester")
    n.add_raw(LIST, [("md5", "0" * 31 + str(i), "A1") for i in range(3)], actor="tester")
    n.publish(LIST, actor="tester")
    return n


def test_heartbeat_resigns_a_legacy_note_at_once(node_factory: NodeFactory) -> None:
    node = _published(node_factory)
    _legacy(node)
    row = node.get_list(LIST)
    old = node.store.latest_checkpoint(list_id=row.id)
    assert old is not None
    assert not node.signed_with_current_keys(row, old.note)
    # Well within the heartbeat interval: only the old format makes it due.
    assert node.heartbeat(now=old.timestamp + 1) == [LIST]
    new = node.store.latest_checkpoint(list_id=row.id)
    assert new is not None
    assert (new.size, new.root_hash) == (old.size, old.root_hash)
    got = verify_checkpoint(
        new.note,
        origin=list_origin("au-argos", "series-1"),
        verifiers=node.checkpoint_signer.verifiers(),
    )
    assert got.timestamp == old.timestamp + 1
    assert "timestamp" not in new.note
    assert node.heartbeat(now=old.timestamp + 2) == []  # current now: not due again


def test_resign_command_path_resigns_now(node_factory: NodeFactory) -> None:
    node = _published(node_factory)
    row = node.get_list(LIST)
    before = node.store.latest_checkpoint(list_id=row.id)
    assert before is not None
    cp = node.resign(LIST, actor="tester", now=before.timestamp + 5)
    assert (cp.size, cp.timestamp) == (before.size, before.timestamp + 5)
    assert node.signed_with_current_keys(row, cp.note)
