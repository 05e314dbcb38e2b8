"""Rows as the store hands them out: frozen dataclasses and plain tuples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ListRow:
    id: int
    owner: str
    name: str
    label: str
    description: str
    local: bool
    source_peer: str | None
    frozen_reason: str | None
    created_ms: int
    kind: str = "block"
    allow_distance: int = 0

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True)
class StateRow:
    size: int
    compact_range: bytes
    live_count: int


@dataclass(frozen=True)
class CheckpointRow:
    id: int
    list_id: int
    size: int
    root_hash: bytes
    timestamp: int
    note: str
    status: str
    received_ms: int


@dataclass(frozen=True)
class AuditRow:
    id: int
    ts_ms: int
    actor: str
    action: str
    target: str
    count: int
    detail: str
    prev_hash: bytes
    record_hash: bytes


@dataclass(frozen=True)
class PrincipalRow:
    id: int
    name: str
    role: str
    labels: frozenset[str]
    cert_fingerprint: str | None
    created_ms: int
    issuer_fingerprint: str | None = None
    public_key: str | None = None


# An entry as the store writes it: (seq, op, hash_type, value, category, timestamp_ms).
EntryTuple = tuple[int, str, str, str, str, int]
# A content row: (hash_type, value, category, seq).
ContentTuple = tuple[str, str, str, int]


def _checkpoint_row(r: Any) -> CheckpointRow:
    m = dict(r._mapping)
    m["root_hash"] = bytes(m["root_hash"])
    return CheckpointRow(**m)


def _principal_row(r: Any) -> PrincipalRow:
    return PrincipalRow(
        id=r.id,
        name=r.name,
        role=r.role,
        labels=frozenset(x for x in r.labels.split(",") if x),
        cert_fingerprint=r.cert_fingerprint,
        created_ms=r.created_ms,
        issuer_fingerprint=r.issuer_fingerprint,
        public_key=r.public_key,
    )
