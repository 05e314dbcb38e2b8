"""The tables as SQLAlchemy Core objects, for the query modules."""

from __future__ import annotations

from node.store.models import (
    ApiToken,
    AuditRecord,
    Checkpoint,
    Content,
    DatabaseIdentity,
    HashList,
    ListState,
    LogEntry,
    Overlap,
    OverlapMark,
    Principal,
    RevokedKey,
)

_lists = HashList.__table__  # type: ignore[attr-defined]
_entries = LogEntry.__table__  # type: ignore[attr-defined]
_state = ListState.__table__  # type: ignore[attr-defined]
_checkpoints = Checkpoint.__table__  # type: ignore[attr-defined]
_content = Content.__table__  # type: ignore[attr-defined]
_audit = AuditRecord.__table__  # type: ignore[attr-defined]
_principals = Principal.__table__  # type: ignore[attr-defined]
_tokens = ApiToken.__table__  # type: ignore[attr-defined]
_revoked_keys = RevokedKey.__table__  # type: ignore[attr-defined]
_identity = DatabaseIdentity.__table__  # type: ignore[attr-defined]
_overlaps = Overlap.__table__  # type: ignore[attr-defined]
_overlap_marks = OverlapMark.__table__  # type: ignore[attr-defined]
