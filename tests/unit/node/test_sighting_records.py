"""Sightings and alerts in one process, on SQLite and PostgreSQL: accept, replay, review, outbox."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from config import TrustedOwner
from crypto.errors import ForbiddenError, NoTrustedSignatureError, UnknownListError
from crypto.keys import NoteSigner, generate_signing_key
from crypto.sighting import Sighting, new_nonce, sign_sighting
from federation.webhooks import deliver_due, render_body
from node.alerts import emit, parse_events, sign_body, verify_signature
from node.identity.principals import Principal
from node.node import Node
from node.sightings import (
    ReplayedSightingError,
    SightingTimeError,
    accept,
    flagged_entries,
    remove_flagged,
    sighting_stats,
)

REPORTERS = ("rep-1", "rep-2", "rep-3")


@pytest.fixture
def owner(node_factory: Any) -> tuple[Node, dict[str, NoteSigner]]:
    node: Node = node_factory("owner")
    signers = {r: NoteSigner(r, generate_signing_key()) for r in REPORTERS}
    node.settings = node.settings.model_copy(
        update={
            "trusted_owners": [
                TrustedOwner(node_id=r, signing_keys=[s.verifier_key]) for r, s in signers.items()
            ]
        }
    )
    node.create_list("owner/base", label="baseline", actor="t")
    node.add("owner/base", [("sha256", f"{i:064x}", "A1") for i in range(5)], actor="t")
    return node, signers


def _note(signer: NoteSigner, seq: int = 0, disposition: str = "seen", **kw: Any) -> str:
    s = Sighting(
        list_name=kw.pop("list_name", "owner/base"),
        seq=seq,
        when=kw.pop("when", int(time.time())),
        reporter=signer.name,
        disposition=disposition,
        nonce=new_nonce(),
    )
    return sign_sighting(s, signer)


def test_recorded_and_counted(owner: tuple[Node, dict[str, NoteSigner]]) -> None:
    node, signers = owner
    for r in REPORTERS[:2]:
        assert accept(node, _note(signers[r], 1, "confirmed"), via=r).status == "recorded"
    accept(node, _note(signers["rep-1"], 2), via="rep-1")
    stats = sighting_stats(node)["lists"][0]
    assert (stats["total"], stats["reporters"]) == (3, ["rep-1", "rep-2"])
    top = stats["entries"][0]
    assert (top["seq"], top["reporters"]) == (1, {"rep-1": 1, "rep-2": 1})


def test_replayed_sighting_refused(owner: tuple[Node, dict[str, NoteSigner]]) -> None:
    node, signers = owner
    note = _note(signers["rep-1"])
    accept(node, note, via="rep-1")
    with pytest.raises(ReplayedSightingError):
        accept(node, note, via="rep-2")
    assert sighting_stats(node)["lists"][0]["total"] == 1


def test_forged_sighting_refused(owner: tuple[Node, dict[str, NoteSigner]]) -> None:
    node, _ = owner
    forger = NoteSigner("rep-1", generate_signing_key())
    with pytest.raises(NoTrustedSignatureError):
        accept(node, _note(forger), via="rep-1")
    assert sighting_stats(node)["lists"] == []


def test_stale_and_future_sightings_refused(owner: tuple[Node, dict[str, NoteSigner]]) -> None:
    node, signers = owner
    with pytest.raises(SightingTimeError):
        accept(node, _note(signers["rep-1"], when=int(time.time()) + 3600), via="x")
    with pytest.raises(SightingTimeError):
        accept(node, _note(signers["rep-1"], when=1), via="x")


def test_principal_not_opted_in_or_not_cleared(owner: tuple[Node, dict[str, NoteSigner]]) -> None:
    node, signers = owner
    peer = Principal(name="rep-1", role="peer", labels=frozenset({"restricted"}), via="cert")
    with pytest.raises(ForbiddenError):
        accept(node, _note(signers["rep-1"]), via="rep-1", principal=peer)
    node.store.set_sighting_optin(principal="rep-1", enabled=True)
    with pytest.raises(UnknownListError):  # cleared for restricted only: baseline is unknown
        accept(node, _note(signers["rep-1"]), via="rep-1", principal=peer)


def test_false_positives_flag_then_one_command_removes(
    owner: tuple[Node, dict[str, NoteSigner]],
) -> None:
    node, signers = owner
    for r in REPORTERS:
        accept(node, _note(signers[r], 3, "false_positive"), via=r)
    accept(node, _note(signers["rep-1"], 4, "false_positive"), via="rep-1")
    assert [f["seq"] for f in flagged_entries(node, "owner/base")] == [3]  # threshold 3
    result = remove_flagged(node, "owner/base", actor="t")
    assert result is not None
    assert result.appended == 1
    assert flagged_entries(node, "owner/base")[0]["in_list"] is False
    assert remove_flagged(node, "owner/base", actor="t") is None
    assert (f"{3:064x}") not in {v for _t, v, _c in node.content("owner/base")}


def test_sighting_raises_an_alert_without_hashes(owner: tuple[Node, dict[str, NoteSigner]]) -> None:
    node, signers = owner
    node.store.add_webhook(
        url="http://127.0.0.1:9/x", events="sighting", include_hashes=False, secret="s" * 32
    )
    accept(node, _note(signers["rep-2"], 2, "confirmed"), via="rep-2")
    [row] = node.store.claim_deliveries(now=2**62, lease_ms=1000)
    body = json.loads(render_body(row, node.node_id))
    assert body["type"] == "sighting"
    assert body["data"]["list"] == "owner/base"
    assert body["data"]["seq"] == 2
    # leased: a second worker does not get it
    assert node.store.claim_deliveries(now=2**62 - 10**6, lease_ms=1000) == []


def test_emit_keeps_hashes_only_for_webhooks_that_want_them(node_factory: Any) -> None:
    node: Node = node_factory("o")
    node.store.add_webhook(
        url="http://127.0.0.1:9/a", events="overlap", include_hashes=False, secret="a" * 32
    )
    emit(node.store, "overlap", {"lists": ["o/a", "p/b"], "hashes": ["ff" * 32]})
    [row] = node.store.claim_deliveries(now=2**62, lease_ms=1)
    assert "ff" * 32 not in row["payload"]  # not even stored
    node.store.add_webhook(
        url="http://127.0.0.1:9/b", events="*", include_hashes=True, secret="b" * 32
    )
    emit(node.store, "overlap", {"lists": ["o/a", "p/b"], "hashes": ["ee" * 32]})
    rows = node.store.claim_deliveries(now=2**63 - 2, lease_ms=1)
    bodies = {r["webhook_id"]: render_body(r, "o").decode() for r in rows}
    assert ["ee" * 32 in b for _, b in sorted(bodies.items())] == [False, True]


def test_dedupe_key_raises_once(node_factory: Any) -> None:
    node: Node = node_factory("o")
    node.store.add_webhook(
        url="http://127.0.0.1:9/a", events="list_stale", include_hashes=False, secret="a" * 32
    )
    assert emit(node.store, "list_stale", {"list": "x/y"}, dedupe_key="k") is not None
    assert emit(node.store, "list_stale", {"list": "x/y"}, dedupe_key="k") is None


def test_unreachable_receiver_is_retried_then_failed(node_factory: Any) -> None:
    node: Node = node_factory("o")
    alerts = node.settings.alerts.model_copy(
        update={"retry_base_seconds": 0.001, "max_attempts": 2}
    )
    node.store.add_webhook(
        url="http://127.0.0.1:9/none", events="*", include_hashes=False, secret="a" * 32
    )
    emit(node.store, "peer_failing", {"peer": "b"})
    assert deliver_due(node.store, alerts, node_id="o") == (0, 1)
    [d] = node.store.deliveries()
    assert (d["status"], d["attempts"]) == ("pending", 1)
    time.sleep(0.01)
    deliver_due(node.store, alerts, node_id="o")
    [d] = node.store.deliveries()
    assert (d["status"], d["attempts"]) == ("failed", 2)
    assert node.store.replay_delivery(delivery_id=d["id"])
    assert node.store.deliveries()[0]["status"] == "pending"


def test_signature_recipe() -> None:
    body = b'{"a":1}'
    sig = sign_body("secret-secret-16", 1_700_000_000, body)
    assert verify_signature(
        "secret-secret-16", timestamp="1700000000", signature=sig, body=body, now=1_700_000_100
    )
    assert not verify_signature(
        "secret-secret-16",
        timestamp="1700000000",
        signature=sig,
        body=body + b" ",
        now=1_700_000_100,
    )
    assert not verify_signature(
        "another-secret-16", timestamp="1700000000", signature=sig, body=body, now=1_700_000_100
    )
    # an old delivery replayed later
    assert not verify_signature(
        "secret-secret-16", timestamp="1700000000", signature=sig, body=body, now=1_700_001_000
    )


def test_parse_events() -> None:
    assert parse_events("sighting, overlap") == ["overlap", "sighting"]
    assert len(parse_events("*")) == 6
    from crypto.errors import InputError

    with pytest.raises(InputError):
        parse_events("sighting,nonsense")
