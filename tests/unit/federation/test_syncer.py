"""Pull, verify, apply — in process, on every database backend.

The receiver pulls through a loopback client that answers from an owner
node's database with the serving code the API uses (federation/serving.py);
subclasses misbehave. Real processes and TLS are in tests/integration.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from config import PeerSettings
from crypto.errors import PeerTimeoutError
from federation import serving
from federation.protocol import Catalog, CatalogList
from federation.sync import Syncer
from node.identity.audit import AuditBuffer
from node.identity.principals import Principal
from node.log.lists import ContentChange, fold
from node.log.proofs import ProofCache
from node.node import Node
from node.store import EntryTuple, ListRow

NodeFactory = Callable[..., Node]
BASE = "au-argos/base"


def sha(i: int, salt: str = "") -> str:
    return hashlib.sha256(f"{salt}{i}".encode()).hexdigest()


class Loopback:
    """A PeerClient stand-in answering from another node's store, as its API would."""

    def __init__(self, owner: Node, caller: str = "nl-nca", labels: Sequence[str] = ("baseline",)):
        self.owner = owner
        self.principal = Principal(caller, "peer", frozenset(labels), "cert")
        self.proofs = ProofCache()
        self.audit = AuditBuffer(owner.store)  # flushed by no one: refusals stay in memory
        self.deadline: float | None = None
        self.calls: list[str] = []

    def __enter__(self) -> Loopback:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def find(self, owner: str, name: str) -> ListRow | None:
        """The list directory the API keeps in memory, read from the store here."""
        return self.owner.store.get_list(owner=owner, name=name)

    def catalog(self) -> Catalog:
        self.calls.append("catalog")
        return serving.catalog(self.owner, self.principal)

    def consistency_proof(self, owner: str, name: str, size1: int, size2: int) -> list[bytes]:
        self.calls.append(f"proof {size1}-{size2}")
        served = serving.resolve(
            self.owner, self.principal, owner, name, directory=self, audit=self.audit
        )
        return self.proofs.consistency(
            self.owner.store, list_id=served.row.id, size1=size1, size2=size2
        )

    def entries(self, owner: str, name: str, *, start: int, limit: int) -> list[EntryTuple]:
        self.calls.append(f"entries {start}+{limit}")
        served = serving.resolve(
            self.owner, self.principal, owner, name, directory=self, audit=self.audit
        )
        end = min(start + limit, served.size)
        return list(self.owner.store.iter_entries(list_id=served.row.id, start=start, end=end))


@pytest.fixture
def pair(node_factory: NodeFactory) -> tuple[Node, Node]:
    """(receiver on the backend under test, owner) with one published baseline list."""
    receiver = node_factory("nl-nca")
    owner = node_factory("au-argos")
    peer = PeerSettings(
        node_id="au-argos",
        url="https://127.0.0.1:1",
        signing_keys=[owner.signer.verifier_key, owner.cosigner.verifier_key],
        subscribe=["au-argos/*"],
    )
    receiver.settings = receiver.settings.model_copy(update={"peers": [peer]})
    owner.create_list(BASE, label="baseline", actor="t")
    owner.add(BASE, [("sha256", sha(i), "A1") for i in range(50)], actor="t")
    owner.publish(BASE, actor="t")
    return receiver, owner


def syncer(receiver: Node, client: Any) -> Syncer:
    return Syncer(receiver, client_factory=lambda _s, _p: client)


def snapshot(node: Node, full: str) -> tuple[int, bytes | None, dict[tuple[str, str], str]]:
    row = node.store.get_list(owner=full.split("/")[0], name=full.split("/")[1])
    if row is None:
        return -1, None, {}
    cp = node.store.latest_checkpoint(list_id=row.id)
    content = {(t, v): c for t, v, c in node.content(full)}
    return node.store.get_state(list_id=row.id).size, cp.root_hash if cp else None, content


def test_pull_applies_and_matches_the_owner(pair: tuple[Node, Node]) -> None:
    receiver, owner = pair
    seen: list[ContentChange] = []
    receiver.on_change(lambda batch: seen.extend(batch.changes))
    report = syncer(receiver, Loopback(owner)).pull("au-argos")
    assert report.ok, report
    assert [(r.full_name, r.outcome, r.entries) for r in report.lists] == [(BASE, "applied", 50)]
    assert snapshot(receiver, BASE) == snapshot(owner, BASE)
    assert len(seen) == 50
    assert {c.op for c in seen} == {"add"}
    row = receiver.get_list(BASE)
    assert (row.local, row.source_peer, row.label) == (False, "au-argos", "baseline")
    assert all(r.ok for r in receiver.verify(BASE))
    again = syncer(receiver, Loopback(owner)).pull("au-argos")
    assert [r.outcome for r in again.lists] == ["unchanged"]


def test_growth_and_removals_follow_with_a_consistency_proof(pair: tuple[Node, Node]) -> None:
    receiver, owner = pair
    syncer(receiver, Loopback(owner)).pull("au-argos")
    owner.add(BASE, [("sha256", sha(i), "B2") for i in range(50, 80)], actor="t")
    owner.remove(BASE, [("sha256", sha(3)), ("sha256", sha(60))], actor="t")
    owner.publish(BASE, actor="t")
    seen: list[ContentChange] = []
    receiver.on_change(lambda batch: seen.extend(batch.changes))
    client = Loopback(owner)
    report = syncer(receiver, client).pull("au-argos")
    assert report.ok, report
    assert "proof 50-82" in client.calls
    assert snapshot(receiver, BASE) == snapshot(owner, BASE)
    assert {(c.op, c.value) for c in seen if c.op == "remove"} == {("remove", sha(3))}
    row = receiver.get_list(BASE)
    entries = list(receiver.store.iter_entries(list_id=row.id))
    assert [e[0] for e in entries] == list(range(82))
    assert {(t, v) for t, v, _c in receiver.content(BASE)} == set(fold(entries))


def test_pages_are_bounded_by_the_page_size(pair: tuple[Node, Node]) -> None:
    receiver, owner = pair
    limits = receiver.settings.limits.model_copy(update={"max_page_entries": 7})
    receiver.settings = receiver.settings.model_copy(update={"limits": limits})
    client = Loopback(owner)
    assert syncer(receiver, client).pull("au-argos").ok
    assert [c for c in client.calls if c.startswith("entries")][:2] == [
        "entries 0+7",
        "entries 7+7",
    ]


def test_a_peer_failing_mid_pull_leaves_no_partial_data(pair: tuple[Node, Node]) -> None:
    receiver, owner = pair
    limits = receiver.settings.limits.model_copy(update={"max_page_entries": 10})
    receiver.settings = receiver.settings.model_copy(update={"limits": limits})

    class Cut(Loopback):
        def entries(self, owner: str, name: str, *, start: int, limit: int) -> list[EntryTuple]:
            if start >= 30:
                raise PeerTimeoutError(peer="au-argos", reason="the pull took too long")
            return super().entries(owner, name, start=start, limit=limit)

    report = syncer(receiver, Cut(owner)).pull("au-argos")
    assert not report.ok
    assert report.error_code == "peer_timeout"
    assert receiver.store.get_list(owner="au-argos", name="base") is None
    health = receiver.store.peer_health(peer="au-argos")[0]
    assert health["failures"] == 1
    assert health["last_error_code"] == "peer_timeout"
    assert syncer(receiver, Loopback(owner)).pull("au-argos").ok
    assert receiver.store.peer_health(peer="au-argos")[0]["failures"] == 0
    assert snapshot(receiver, BASE) == snapshot(owner, BASE)


def test_tampered_entries_are_refused_and_other_lists_still_pulled(
    pair: tuple[Node, Node],
) -> None:
    receiver, owner = pair
    owner.create_list("au-argos/second", label="baseline", actor="t")
    owner.add("au-argos/second", [("md5", f"{i:032x}", "") for i in range(5)], actor="t")
    owner.publish("au-argos/second", actor="t")

    class Tamper(Loopback):
        def entries(self, owner: str, name: str, *, start: int, limit: int) -> list[EntryTuple]:
            got = super().entries(owner, name, start=start, limit=limit)
            if name == "base":
                got[3] = (*got[3][:3], sha(999), *got[3][4:])
            return got

    report = syncer(receiver, Tamper(owner)).pull("au-argos")
    outcomes = {r.full_name: (r.outcome, r.error_code) for r in report.lists}
    assert outcomes == {
        BASE: ("refused", "root_mismatch"),
        "au-argos/second": ("applied", None),
    }
    assert not report.ok
    assert receiver.store.get_list(owner="au-argos", name="base") is None
    actions = [a.action for a in receiver.store.audit_records()]
    assert "federation.refused" in actions


def test_fork_keeps_both_checkpoints_and_freezes_the_list(pair: tuple[Node, Node]) -> None:
    receiver, owner = pair
    syncer(receiver, Loopback(owner)).pull("au-argos")
    before = snapshot(receiver, BASE)
    row = owner.get_list(BASE)
    good = owner.store.latest_checkpoint(list_id=row.id)
    assert good is not None
    # The owner signs another root for the same size: equivocation.
    from crypto.checkpoint import Checkpoint, list_origin

    bad_note = owner.checkpoint_signer.sign(
        Checkpoint(list_origin("au-argos", "base"), good.size, b"\x07" * 32),
        good.timestamp + 1,
    )

    class Equivocate(Loopback):
        def catalog(self) -> Catalog:
            cat = super().catalog()
            lists = [CatalogList(**{**c.model_dump(), "checkpoint": bad_note}) for c in cat.lists]
            return Catalog(node_id=cat.node_id, lists=lists)

    report = syncer(receiver, Equivocate(owner)).pull("au-argos")
    assert [(r.outcome, r.error_code) for r in report.lists] == [("refused", "fork")]
    mine = receiver.get_list(BASE)
    assert mine.frozen_reason is not None
    assert "fork" in mine.frozen_reason
    notes = {(c.status, c.note) for c in receiver.store.checkpoints(list_id=mine.id)}
    assert ("accepted", good.note) in notes
    assert ("evidence", bad_note) in notes
    assert snapshot(receiver, BASE) == before  # content kept, nothing applied
    # Frozen: later offers are not even considered.
    later = syncer(receiver, Loopback(owner)).pull("au-argos")
    assert [r.outcome for r in later.lists] == ["frozen"]
    assert "federation.fork" in [a.action for a in receiver.store.audit_records()]


def test_rollback_is_refused_but_a_lagging_relay_is_only_behind(pair: tuple[Node, Node]) -> None:
    receiver, owner = pair
    row = owner.get_list(BASE)
    old = owner.store.latest_checkpoint(list_id=row.id)
    assert old is not None
    syncer(receiver, Loopback(owner)).pull("au-argos")
    owner.add(BASE, [("sha256", sha(i), "") for i in range(100, 110)], actor="t")
    owner.publish(BASE, actor="t")
    assert syncer(receiver, Loopback(owner)).pull("au-argos").ok

    class Replay(Loopback):
        def __init__(self, owner: Node, note: str, size: int) -> None:
            super().__init__(owner)
            self.note, self.size = note, size

        def catalog(self) -> Catalog:
            cat = super().catalog()
            return Catalog(
                node_id=cat.node_id,
                lists=[
                    CatalogList(**{**c.model_dump(), "checkpoint": self.note, "size": self.size})
                    for c in cat.lists
                ],
            )

    lagging = syncer(receiver, Replay(owner, old.note, old.size)).pull("au-argos")
    assert [r.outcome for r in lagging.lists] == ["behind"]
    assert lagging.ok
    # A smaller checkpoint we never accepted is a rollback: refused, kept as evidence.
    from crypto.checkpoint import Checkpoint, list_origin

    unseen = owner.checkpoint_signer.sign(
        Checkpoint(list_origin("au-argos", "base"), 20, b"\x01" * 32),
        old.timestamp,
    )
    refused = syncer(receiver, Replay(owner, unseen, 20)).pull("au-argos")
    assert [(r.outcome, r.error_code) for r in refused.lists] == [("refused", "rollback")]
    mine = receiver.get_list(BASE)
    assert mine.frozen_reason is None
    assert receiver.store.get_state(list_id=mine.id).size == 60
    assert unseen in [
        c.note for c in receiver.store.checkpoints(list_id=mine.id, status="evidence")
    ]


def test_lists_of_owners_without_configured_keys_are_skipped(pair: tuple[Node, Node]) -> None:
    receiver, owner = pair
    peer = receiver.settings.peers[0].model_copy(update={"signing_keys": []})
    receiver.settings = receiver.settings.model_copy(update={"peers": [peer]})
    report = syncer(receiver, Loopback(owner)).pull("au-argos")
    assert [r.outcome for r in report.lists] == ["skipped"]
    assert receiver.store.get_list(owner="au-argos", name="base") is None


def test_heartbeat_resigns_owned_lists_and_receivers_refresh(pair: tuple[Node, Node]) -> None:
    from federation.heartbeat import resign_due

    receiver, owner = pair
    syncer(receiver, Loopback(owner)).pull("au-argos")
    row = owner.get_list(BASE)
    first = owner.store.latest_checkpoint(list_id=row.id)
    assert first is not None
    assert resign_due(owner, now=first.timestamp + 10) == []  # not due yet
    due = first.timestamp + owner.settings.heartbeat_seconds
    assert resign_due(owner, now=due) == [BASE]
    fresh = owner.store.latest_checkpoint(list_id=row.id)
    assert fresh is not None
    assert (fresh.size, fresh.root_hash, fresh.timestamp) == (
        first.size,
        first.root_hash,
        due,
    )
    # The receiver pulls when the heartbeat is due (not an hour before: that
    # would be a checkpoint from the future, refused).
    later = Syncer(receiver, client_factory=lambda _s, _p: Loopback(owner), clock=lambda: due)
    report = later.pull("au-argos")
    assert [r.outcome for r in report.lists] == ["refreshed"]
    mine = receiver.store.latest_checkpoint(list_id=receiver.get_list(BASE).id)
    assert mine is not None
    # The owner's note, with the receiver's own cosignature as its witness.
    assert mine.note == fresh.note + receiver.cosigner.line(fresh.note.split("\n\n")[0] + "\n", due)


def test_labels_follow_the_owner_never_a_relay(pair: tuple[Node, Node]) -> None:
    receiver, owner = pair
    relay = PeerSettings(node_id="be-relay", url="https://127.0.0.1:2", subscribe=["*"])
    receiver.settings = receiver.settings.model_copy(
        update={"peers": [*receiver.settings.peers, relay]}
    )
    syncer(receiver, Loopback(owner)).pull("au-argos")

    class Relabel(Loopback):
        def catalog(self) -> Catalog:
            cat = super().catalog()
            lists = [CatalogList(**{**c.model_dump(), "label": "wide-open"}) for c in cat.lists]
            return Catalog(node_id=cat.node_id, lists=lists)

    assert syncer(receiver, Relabel(owner)).pull("be-relay").ok
    assert receiver.get_list(BASE).label == "baseline"  # a relay cannot relabel
    assert syncer(receiver, Relabel(owner)).pull("au-argos").ok
    assert receiver.get_list(BASE).label == "wide-open"  # the owner can


def test_only_one_process_runs_the_scheduler(node_factory: NodeFactory) -> None:
    from federation.scheduler import FederationRuntime

    first_node = node_factory("nl-nca")
    # A second process of the same node: same settings, same database.
    second_node = Node.open(first_node.settings)

    class Detector:  # what the runtime sets on the app's overlap detector
        active: Any = None

    class State:
        def __init__(self, node: Node) -> None:
            self.node = node
            self.peer_status: Any = None
            self.proofs = ProofCache()
            self.overlaps: Any = Detector()

    one, two = FederationRuntime(), FederationRuntime()
    state_one, state_two = State(first_node), State(second_node)
    stop_one = one.start(state_one)
    stop_two = two.start(state_two)
    try:
        assert one.scheduler is not None
        assert two.scheduler is None
        assert not two.trigger("anyone")
        # Overlap detection follows the scheduler: one process does it.
        assert [state_one.overlaps.active(), state_two.overlaps.active()] == [True, False]
    finally:
        stop_two()
        stop_one()
        second_node.close()
    # Released on stop: the next process gets it.
    three = FederationRuntime()
    stop_three = three.start(State(first_node))
    try:
        assert three.scheduler is not None
    finally:
        stop_three()


def test_registering_a_peer_is_all_or_nothing(node_factory: NodeFactory) -> None:
    from crypto.errors import InputError
    from federation.peers import register_peer
    from node.identity.principals import add_principal

    node = node_factory("nl-nca")
    toml = node.settings.data_dir / "node.toml"
    fpr = "sha256:" + "ab" * 32
    add_principal(node.store, name="someone", role="partner", labels=[], fingerprint=fpr, actor="t")
    before = toml.read_text()
    peer = PeerSettings(node_id="be-fccu", url="https://x.example", fingerprint=fpr)
    with pytest.raises(InputError):
        register_peer(node.store, node.settings.data_dir, peer, actor="t")
    assert toml.read_text() == before
    assert node.store.get_principal(name="be-fccu") is None
    register_peer(
        node.store, node.settings.data_dir, peer.model_copy(update={"fingerprint": None}), actor="t"
    )
    row = node.store.get_principal(name="be-fccu")
    assert row is not None
    assert row.role == "peer"


def test_content_lookup_by_type_agrees_with_existing_content(pair: tuple[Node, Node]) -> None:
    _receiver, owner = pair
    owner.add(BASE, [("md5", f"{i:032x}", "C3") for i in range(700)], actor="t")
    row = owner.get_list(BASE)
    keys = [("sha256", sha(i)) for i in range(0, 120, 3)]  # 0..48 are in the list: 17
    keys += [("md5", f"{i:032x}") for i in range(650, 720)]  # 650..699 are: 50
    keys += [("pdq", "0" * 64)]
    got = owner.store.content_of(list_id=row.id, keys=keys)
    everything = fold(owner.store.iter_entries(list_id=row.id))
    assert got == {k: everything[k] for k in keys if k in everything}
    assert len(got) == 67
