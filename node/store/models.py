"""SQLModel tables. Only node/store/ reads or writes them.

Times are integers: ``*_ms`` are Unix milliseconds, ``timestamp`` on a
checkpoint is Unix seconds as signed. Schema changes are Alembic migrations in
node/store/migrations; a test checks that these models and the migrations agree.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


class HashList(SQLModel, table=True):
    """A list this node owns (``local``) or received from a peer."""

    __tablename__ = "hash_list"
    __table_args__ = (UniqueConstraint("owner", "name", name="uq_hash_list_owner_name"),)

    id: int | None = Field(default=None, primary_key=True)
    owner: str = Field(max_length=63)
    name: str = Field(max_length=100)
    label: str = Field(max_length=32)
    description: str = Field(default="", max_length=1000)
    local: bool = True
    # For received lists: the peer we last pulled it from (may be a relay).
    source_peer: str | None = Field(default=None, max_length=63)
    # Set after proven misbehaviour (a fork); a frozen list takes no updates.
    frozen_reason: str | None = Field(default=None, max_length=500)
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    # ``block`` (hashes to find) or ``allow`` (known-benign: suppresses matches
    # and overlaps); for an allow-list, how near a PDQ code counts as on it.
    kind: str = Field(default="block", max_length=8, sa_column_kwargs={"server_default": "block"})
    allow_distance: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class LogEntry(SQLModel, table=True):
    """One entry of a list's append-only log; ``seq`` is its Merkle leaf index."""

    __tablename__ = "log_entry"
    # SQLite: the primary key is the table (one B-tree, not a rowid table
    # plus an index); imports write half as much. The key index finds every
    # entry of one hash (its adds and removes) without a scan of the log.
    __table_args__ = (
        Index("ix_log_entry_key", "list_id", "hash_type", "value"),
        {"sqlite_with_rowid": False},
    )

    list_id: int = Field(foreign_key="hash_list.id", primary_key=True)
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    op: str = Field(max_length=6)
    hash_type: str = Field(max_length=16)
    value: str = Field(max_length=2048)
    category: str = Field(default="", max_length=64)
    timestamp_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class ListState(SQLModel, table=True):
    """The right edge of a list's tree over its stored entries (O(log n) hashes)."""

    __tablename__ = "list_state"

    list_id: int = Field(foreign_key="hash_list.id", primary_key=True)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    compact_range: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # Live (added, not removed) hashes; kept with the state so status is cheap.
    live_count: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class Checkpoint(SQLModel, table=True):
    """A signed checkpoint: accepted, or kept as evidence of misbehaviour."""

    __tablename__ = "checkpoint"
    __table_args__ = (Index("ix_checkpoint_list_size", "list_id", "size"),)

    id: int | None = Field(default=None, primary_key=True)
    list_id: int = Field(foreign_key="hash_list.id")
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    timestamp: int = Field(sa_column=Column(BigInteger, nullable=False))
    note: str = Field(max_length=65536)
    status: str = Field(default="accepted", max_length=16)  # accepted | evidence
    received_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class Content(SQLModel, table=True):
    """The fold of a list's log: the hashes it holds now."""

    __tablename__ = "content"
    __table_args__ = {"sqlite_with_rowid": False}

    list_id: int = Field(foreign_key="hash_list.id", primary_key=True)
    hash_type: str = Field(max_length=16, primary_key=True)
    value: str = Field(max_length=2048, primary_key=True)
    category: str = Field(default="", max_length=64)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))


class AuditRecord(SQLModel, table=True):
    """Append-only, hash-chained: who did what, when, how many. Never hash values."""

    __tablename__ = "audit"

    id: int | None = Field(default=None, primary_key=True)
    ts_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    actor: str = Field(max_length=200)
    action: str = Field(max_length=64)
    target: str = Field(default="", max_length=300)
    count: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    detail: str = Field(default="{}", max_length=4000)
    prev_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    record_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Principal(SQLModel, table=True):
    """Who may connect: a peer node, an industry partner, or an administrator."""

    __tablename__ = "principal"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=63, unique=True)
    role: str = Field(max_length=16)  # admin | peer | partner
    labels: str = Field(default="", max_length=500)  # comma-separated sharing labels
    cert_fingerprint: str | None = Field(default=None, max_length=80, unique=True)
    # A CA-issued identity is bound to the CA that issued it (its certificate's
    # fingerprint) and to the key it registered with, so another trusted CA
    # cannot mint the same name. The key is bound at registration (--cert) or
    # at first use.
    issuer_fingerprint: str | None = Field(default=None, max_length=80)
    public_key: str | None = Field(default=None, max_length=80)
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class RevokedKey(SQLModel, table=True):
    """A certificate key that may never authenticate again (a removed principal's)."""

    __tablename__ = "revoked_key"

    public_key: str = Field(max_length=80, primary_key=True)  # sha256:<hex> of the SPKI
    name: str = Field(max_length=63)  # the principal it belonged to
    revoked_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class ApiToken(SQLModel, table=True):
    """A partner's scoped API token; only its SHA-256 is stored."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    principal_id: int = Field(foreign_key="principal.id")
    token_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=16)
    scopes: str = Field(default="match,feeds", max_length=200)
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    expires_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    revoked: bool = False


# --- federation: peer health and what each peer offered -------------------


class PeerHealth(SQLModel, table=True):
    """One peer's pull health, written by the federation scheduler, read by status."""

    __tablename__ = "peer_health"

    peer: str = Field(max_length=63, primary_key=True)
    last_attempt_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    last_success_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # A stable error code and its message; messages never hold hash values.
    last_error_code: str | None = Field(default=None, max_length=32)
    last_error: str | None = Field(default=None, max_length=1000)
    failures: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))  # consecutive
    next_attempt_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # Entries the peer offers that we do not hold yet, after the last pull.
    lag_entries: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    updated_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class ListSync(SQLModel, table=True):
    """What a peer last offered of a list and what we made of it (also if refused)."""

    __tablename__ = "list_sync"

    owner: str = Field(max_length=63, primary_key=True)
    name: str = Field(max_length=100, primary_key=True)
    peer: str = Field(max_length=63, primary_key=True)
    # applied | unchanged | behind | refused | stale | frozen | skipped
    outcome: str = Field(max_length=16)
    error_code: str | None = Field(default=None, max_length=32)
    detail: str = Field(default="", max_length=1000)
    offered_size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    offered_timestamp: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    local_size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    updated_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class PullRequest(SQLModel, table=True):
    """A notify that reached a process without the scheduler, for the one that has it.

    One row per peer: a second notify before the holder takes the first only
    moves ``requested_ms``, so the table never holds more rows than peers.
    """

    __tablename__ = "pull_request"

    peer: str = Field(max_length=63, primary_key=True)
    requested_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class DatabaseIdentity(SQLModel, table=True):
    """One row: a random id naming this database, so derived files (index
    segments in the data folder) can tell it from another database."""

    __tablename__ = "database_identity"

    id: int = Field(default=1, primary_key=True)
    value: str = Field(max_length=64)
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


# --- sightings and alerts ----------------------------------------------------


class SightingOptIn(SQLModel, table=True):
    """A principal allowed to send sightings here (off unless the operator turns it on)."""

    __tablename__ = "sighting_optin"

    principal: str = Field(max_length=63, primary_key=True)
    updated_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class SightingRecord(SQLModel, table=True):
    """A verified sighting: recorded at the list's owner, or waiting to be relayed toward it.

    ``digest`` (SHA-256 of the signed text, which holds a nonce) is the
    replay guard: a note seen once is refused the second time. Never a hash
    value: the note names the entry by list and seq.
    """

    __tablename__ = "sighting"
    __table_args__ = (
        Index("ix_sighting_list_seq", "owner", "name", "seq"),
        Index("ix_sighting_status_next", "status", "next_attempt_ms"),
    )

    id: int | None = Field(default=None, primary_key=True)
    digest: str = Field(max_length=64, unique=True)
    owner: str = Field(max_length=63)
    name: str = Field(max_length=100)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    reporter: str = Field(max_length=63)
    disposition: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=32)
    seen_s: int = Field(sa_column=Column(BigInteger, nullable=False))
    received_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    via: str = Field(max_length=63)  # the principal that handed it to us (or "local")
    note: str = Field(max_length=4096)
    # recorded (we own the list) | forward (to relay) | forwarded
    status: str = Field(max_length=16)
    next_hop: str | None = Field(default=None, max_length=63)
    attempts: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    next_attempt_ms: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    last_error: str | None = Field(default=None, max_length=500)


class Webhook(SQLModel, table=True):
    """Where alerts go: a URL, the events it wants, and its HMAC secret."""

    __tablename__ = "webhook"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2000)
    events: str = Field(max_length=500)  # comma-separated event types
    include_hashes: bool = False
    secret: str = Field(max_length=128)
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class AlertEvent(SQLModel, table=True):
    """One alert, before it is fanned out to the webhooks that want it."""

    __tablename__ = "alert_event"

    id: int | None = Field(default=None, primary_key=True)
    event_type: str = Field(max_length=32)
    payload: str = Field(max_length=65536)  # JSON
    # Events that a periodic check raises (stale, peer failing) once per episode.
    dedupe_key: str | None = Field(default=None, max_length=300, unique=True)
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class WebhookDelivery(SQLModel, table=True):
    """The outbox: one event to one webhook, retried with backoff until delivered."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (Index("ix_webhook_delivery_due", "status", "next_attempt_ms"),)

    id: int | None = Field(default=None, primary_key=True)
    webhook_id: int = Field(foreign_key="webhook.id")
    event_id: int = Field(foreign_key="alert_event.id")
    status: str = Field(max_length=16)  # pending | delivered | failed
    attempts: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    next_attempt_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    # A worker that took the row holds it until then (several serve processes).
    lease_until_ms: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    last_status: int | None = Field(default=None)
    last_error: str | None = Field(default=None, max_length=500)
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    delivered_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


# --- overlaps between lists of different owners ---------------------------


class Overlap(SQLModel, table=True):
    """An entry of one list equal or near to an entry of another owner's list.

    The pair is stored with ``list_a < list_b``, so one overlap is one row
    whichever side's entry arrived last.
    """

    __tablename__ = "overlap"
    __table_args__ = (
        UniqueConstraint("list_a", "seq_a", "list_b", "seq_b", name="uq_overlap_entries"),
        Index("ix_overlap_pair_found", "list_a", "list_b", "found_ms"),
        Index("ix_overlap_found", "found_ms"),
    )

    id: int | None = Field(default=None, primary_key=True)
    list_a: int = Field(foreign_key="hash_list.id")
    seq_a: int = Field(sa_column=Column(BigInteger, nullable=False))
    list_b: int = Field(foreign_key="hash_list.id")
    seq_b: int = Field(sa_column=Column(BigInteger, nullable=False))
    hash_type: str = Field(max_length=16)
    distance: int
    found_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class OverlapMark(SQLModel, table=True):
    """How far into a list's log overlap detection has got (entries ``[0, seq)`` done)."""

    __tablename__ = "overlap_mark"

    list_id: int = Field(foreign_key="hash_list.id", primary_key=True)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))


class WitnessedCheckpoint(SQLModel, table=True):
    """The newest checkpoint this node cosigned as a witness, per log origin.

    A witness cosigns a checkpoint only if it is consistent with this one
    (c2sp.org/tlog-witness); the row is advanced by compare-and-swap, so two
    concurrent requests cannot both move it.
    """

    __tablename__ = "witnessed_checkpoint"

    origin: str = Field(primary_key=True, max_length=255)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    note: str = Field(max_length=65536)
    cosigned_at: int = Field(sa_column=Column(BigInteger, nullable=False))
