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
