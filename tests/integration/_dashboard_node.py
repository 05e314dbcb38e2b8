"""A served node with something to show: lists, hashes, principals, tokens.

Set up in this process through the node's own functions (the ones the CLI
calls), then served by a real ``hashfed serve``: a CLI start per step costs
seconds on a loaded machine.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _nodes import Identity, NodeProcess, free_port, make_identity
from conftest import PG_URL, _pg_schema_url
from sqlalchemy import create_engine, text

from config import load_settings
from crypto.merkle import CompactRange
from crypto.pki import load_certificate
from node.alerts import emit
from node.identity.principals import add_principal, binding_for_cert, create_token, mark_changed
from node.identity.trust import PINNED_DIR, TrustAnchors
from node.match.follower import LogFollower
from node.match.matcher import Matcher
from node.node import Node
from node.overlaps import OverlapDetector
from node.store import StateRow

# Known hashes of the node's lists (test data, not real material).
KNOWN = [hashlib.sha256(f"known-{i}".encode()).hexdigest() for i in range(5)]
PRIVATE_KNOWN = hashlib.sha256(b"private-0").hexdigest()
UNKNOWN = hashlib.sha256(b"never-added").hexdigest()

SERIES = "au-argos/series-2041"
FLAGGED = KNOWN[4]  # only in the node's own list
REPORTERS = ("rep-1", "rep-2", "rep-3")


def _foreign(n: Node, name: str, label: str, values: list[str]) -> None:
    row = n.store.create_list(
        owner="nl-dhd",
        name=name,
        label=label,
        local=False,
        source_peer="nl-dhd",
        empty_range=CompactRange().to_bytes(),
    )
    now = int(time.time() * 1000)
    new = [(i, "add", "sha256", v, "", now) for i, v in enumerate(values)]
    n.store.append(
        list_id=row.id,
        expected_size=0,
        entries=new,
        adds=[(e[2], e[3], "", e[0]) for e in new],
        removes=[],
        new_state=StateRow(len(new), CompactRange().to_bytes(), len(new)),
    )


def add_cases(n: Node) -> None:
    """Overlaps, sightings and alerts: a ``setup`` for :func:`served_node`.

    Two lists of another owner sharing hashes with SERIES (as a pull would
    leave them), one baseline, one restricted; three reporters call FLAGGED
    a false positive; a peer failing and a fork it offered raised alerts
    (for a webhook nobody listens on).
    """
    n.store.add_webhook(url="http://127.0.0.1:9/hook", events="*", include_hashes=False, secret="s")
    emit(n.store, "peer_failing", {"peer": "nl-dhd", "failures": 5}, dedupe_key="pf")
    emit(n.store, "fork_refused", {"list": "nl-dhd/cases", "peer": "nl-dhd"}, dedupe_key="fr")
    _foreign(n, "cases", "baseline", [KNOWN[0], KNOWN[1]])
    _foreign(n, "restricted", "restricted", [KNOWN[2]])
    follower = LogFollower(n.store, Matcher())
    follower.load()
    detector = OverlapDetector(
        n.store,
        follower.matcher,
        lists=follower.lists,
        applied=follower.watermark,
        pdq_distance=n.settings.overlap_pdq_distance,
    )
    detector.load()
    detector.run_until_idle(timeout=120)
    row = n.get_list(SERIES)
    seq = n.store.content_of(list_id=row.id, keys=[("sha256", FLAGGED)])[("sha256", FLAGGED)][1]
    for i, (reporter, disposition, at) in enumerate(
        [(r, "false_positive", seq) for r in REPORTERS] + [("rep-1", "seen", 0)]
    ):
        n.store.add_sighting(
            digest=hashlib.sha256(f"note-{i}".encode()).hexdigest(),
            owner="au-argos",
            name="series-2041",
            seq=at,
            reporter=reporter,
            disposition=disposition,
            seen_s=int(time.time()),
            via=reporter,
            note="(test)",
            status="recorded",
        )


@dataclass
class ServedNode:
    node: NodeProcess
    partner: Identity  # a registered partner (certificate): refused by the dashboard
    peer: Identity  # a registered peer cleared for baseline only
    metrics_token: str
    match_token: str


def _pin(node: Node, data: Path, name: str, role: str, ident: Identity) -> None:
    anchors = TrustAnchors.from_settings(node.settings)
    bound = binding_for_cert(load_certificate(ident.cert), name=name, anchors=anchors)
    add_principal(
        node.store,
        name=name,
        role=role,
        labels=["baseline"],
        fingerprint=bound.fingerprint,
        actor="test",
        issuer_fingerprint=bound.issuer_fingerprint,
        public_key=bound.public_key,
    )
    pinned = data / PINNED_DIR / f"{name}.crt"
    pinned.parent.mkdir(parents=True, exist_ok=True)
    pinned.write_bytes(ident.cert.read_bytes())


@contextmanager
def database(backend: str, tmp: Path) -> Iterator[str]:
    """A database URL for a module's node: SQLite in ``tmp``, or a PostgreSQL schema."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'node.db'}"
        return
    assert PG_URL
    schema = "t_" + secrets.token_hex(6)
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def served_node(
    base: Path,
    *,
    db_url: str | None = None,
    node_id: str = "au-argos",
    env: dict[str, str] | None = None,
    setup: Callable[[Node], None] | None = None,
) -> ServedNode:
    """``setup``: more state, written through the open node before it is served."""
    env = dict(env or {})
    overrides = {}
    if db_url and not db_url.startswith("sqlite"):
        env["HASHFED_DATABASE_URL"] = db_url
        overrides["database_url"] = db_url
    node = NodeProcess(node_id, base / node_id, free_port(), env=env).init()
    partner = make_identity(base / "ids", "acme")
    peer = make_identity(base / "ids", "be-fccu")
    n = Node.open(load_settings(node.data, **overrides))
    try:
        series = f"{node_id}/series-2041"
        n.create_list(series, label="baseline", actor="test")
        n.add_raw(series, [("sha256", h, "A1") for h in KNOWN], actor="test")
        n.publish(series, actor="test")
        n.create_list(f"{node_id}/internal", label="private", actor="test")
        n.add_raw(f"{node_id}/internal", [("sha256", PRIVATE_KNOWN, "B2")], actor="test")
        _pin(n, node.data, "acme", "partner", partner)
        _pin(n, node.data, "be-fccu", "peer", peer)
        add_principal(
            n.store,
            name="prometheus",
            role="partner",
            labels=["baseline"],
            fingerprint=None,
            actor="test",
        )
        metrics_token = create_token(
            n.store, principal="prometheus", scopes="metrics", ttl_days=None, actor="test"
        )
        match_token = create_token(
            n.store, principal="acme", scopes="match", ttl_days=None, actor="test"
        )
        if setup is not None:
            setup(n)
    finally:
        n.close()
    mark_changed(node.data)
    node.start(timeout=120)  # a loaded machine starts slowly
    return ServedNode(node, partner, peer, metrics_token, match_token)
