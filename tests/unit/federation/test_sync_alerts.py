"""Pulls raise alerts: a refused fork once per offer, a failing peer once per episode."""

from __future__ import annotations

import json
from typing import Any

from test_syncer import BASE, Loopback, pair, syncer  # noqa: F401  (the fixture)

from crypto.checkpoint import Checkpoint, list_origin
from federation.protocol import Catalog, CatalogList
from node.node import Node


def _alerts(node: Node) -> list[tuple[str, dict[str, Any]]]:
    rows = node.store.claim_deliveries(now=2**62, lease_ms=1)
    return [(r["event_type"], json.loads(r["payload"])) for r in rows]


def test_refused_fork_raises_one_alert(pair: tuple[Node, Node]) -> None:  # noqa: F811
    receiver, owner = pair
    receiver.store.add_webhook(
        url="http://127.0.0.1:9/x", events="fork_refused", include_hashes=False, secret="s" * 32
    )
    syncer(receiver, Loopback(owner)).pull("au-argos")
    good = owner.store.latest_checkpoint(list_id=owner.get_list(BASE).id)
    assert good is not None
    bad = owner.checkpoint_signer.sign(
        Checkpoint(list_origin("au-argos", "base"), good.size, b"\x07" * 32),
        good.timestamp + 1,
    )

    class Equivocate(Loopback):
        def catalog(self) -> Catalog:
            cat = super().catalog()
            lists = [CatalogList(**{**c.model_dump(), "checkpoint": bad}) for c in cat.lists]
            return Catalog(node_id=cat.node_id, lists=lists)

    syncer(receiver, Equivocate(owner)).pull("au-argos")
    assert _alerts(receiver) == [
        ("fork_refused", {"list": BASE, "offered_size": good.size, "peer": "au-argos"})
    ]


def test_peer_failing_raises_one_alert_per_episode(pair: tuple[Node, Node]) -> None:  # noqa: F811
    receiver, owner = pair
    receiver.store.add_webhook(
        url="http://127.0.0.1:9/x", events="peer_failing", include_hashes=False, secret="s" * 32
    )

    class Down(Loopback):
        def catalog(self) -> Catalog:
            from crypto.errors import PeerUnreachableError

            raise PeerUnreachableError(peer="au-argos", reason="down")

    for _ in range(5):  # never succeeded: an alert after the third failure, then no more
        syncer(receiver, Down(owner)).pull("au-argos")
    got = _alerts(receiver)
    assert [t for t, _ in got] == ["peer_failing"]
    assert got[0][1]["peer"] == "au-argos"
