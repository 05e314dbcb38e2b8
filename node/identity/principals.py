"""Who may connect, with which role and which sharing labels; partners' API tokens.

Tokens are shown once and stored as SHA-256: a leaked database does not leak
working tokens. A token looks like ``hf_<8 hex prefix>_<secret>``; the prefix
names it in listings and revocations.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from crypto.errors import InputError
from node.identity.visibility import check_grantable
from node.store import PrincipalRow, Store, now_ms

ROLES = ("admin", "peer", "partner")
# Touched after every principal or token change; a running node's API drops
# its cache of resolved principals when this file's mtime changes.
PRINCIPALS_MARKER = "principals.changed"


def mark_changed(data_dir: Path) -> None:
    """Tell running API processes on this host that principals changed."""
    (data_dir / PRINCIPALS_MARKER).touch()


_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_FPR_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_TOKEN_RE = re.compile(r"^hf_([0-9a-f]{8})_[A-Za-z0-9_-]{20,100}$")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``labels`` is None for callers cleared for all."""

    name: str
    role: str
    labels: frozenset[str] | None
    via: str  # cert | token | self

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def from_row(row: PrincipalRow, *, via: str) -> Principal:
    # Administrators see every list; everyone else exactly their labels.
    return Principal(row.name, row.role, None if row.role == "admin" else row.labels, via)


def check_labels(labels: Iterable[str]) -> list[str]:
    out = []
    for i, label in enumerate(labels):
        label = label.strip()
        if not _LABEL_RE.fullmatch(label):
            raise InputError("expected lowercase letters, digits, '-' or '_'", where=f"labels[{i}]")
        out.append(label)
    return out


def add_principal(
    store: Store,
    *,
    name: str,
    role: str,
    labels: Iterable[str],
    fingerprint: str | None,
    actor: str,
) -> PrincipalRow:
    """Register a caller: by certificate fingerprint, or by CA-issued identity (no fingerprint)."""
    if not _NAME_RE.fullmatch(name):
        raise InputError("expected lowercase letters, digits, '.', '_' or '-'", where="name")
    if role not in ROLES:
        raise InputError(f"expected one of {', '.join(ROLES)}", where="role")
    if fingerprint is not None:
        fingerprint = fingerprint.strip().lower()
        if not _FPR_RE.fullmatch(fingerprint):
            raise InputError("expected sha256:<64 hex digits>", where="fingerprint")
    labels = check_labels(labels)
    check_grantable(role, labels)
    row = store.add_principal(name=name, role=role, labels=labels, cert_fingerprint=fingerprint)
    store.append_audit(
        actor=actor,
        action="principal.add",
        target=name,
        detail={"role": role, "labels": sorted(row.labels)},
    )
    return row


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    store: Store, *, principal: str, scopes: str = "match,feeds", ttl_days: int | None, actor: str
) -> str:
    """Issue a token for ``principal``; the only time the token is visible."""
    row = store.get_principal(name=principal)
    if row is None:
        raise InputError(f"no principal named {principal!r}", where="principal")
    prefix = secrets.token_hex(4)
    token = f"hf_{prefix}_{secrets.token_urlsafe(32)}"
    expires = now_ms() + ttl_days * 86_400_000 if ttl_days else None
    store.add_token(
        principal_id=row.id,
        token_hash=hash_token(token),
        prefix=prefix,
        scopes=scopes,
        expires_ms=expires,
    )
    store.append_audit(
        actor=actor, action="token.create", target=principal, detail={"prefix": prefix}
    )
    return token


def resolve_token(store: Store, token: str) -> Principal | None:
    """The principal a presented token belongs to, or None if unknown, revoked, expired."""
    if not _TOKEN_RE.fullmatch(token):
        return None
    found = store.principal_for_token(token_hash=hash_token(token))
    return from_row(found[0], via="token") if found else None
