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

from cryptography import x509

from crypto.errors import InputError
from crypto.pki import cert_fingerprint, node_id_from_certificate, public_key_fingerprint
from node.identity.ca_trust import is_ca_certificate
from node.identity.trust import TrustAnchors
from node.identity.visibility import check_grantable
from node.store import PrincipalRow, Store, now_ms

ROLES = ("admin", "peer", "partner")
# What an API token may be used for; each route needs one (api/auth.py,
# ROUTE_SCOPES). A certificate is limited by its role alone.
SCOPES = (
    "match",
    "feeds",
    "lists:read",
    "lists:write",
    "status",
    "peers",
    "federation",
    "metrics",
    "witness",
)
DEFAULT_SCOPES = "match,feeds"
# A token that never expires is a standing credential; a year is the longest.
MAX_TOKEN_DAYS = 366
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
    # A token's scopes; None for a certificate (its role decides).
    scopes: frozenset[str] | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def from_row(row: PrincipalRow, *, via: str, scopes: frozenset[str] | None = None) -> Principal:
    # Administrators see every list; everyone else exactly their labels.
    return Principal(row.name, row.role, None if row.role == "admin" else row.labels, via, scopes)


def check_scopes(scopes: str) -> list[str]:
    """Parse a comma-separated scope list; every scope must be one of :data:`SCOPES`."""
    out: list[str] = []
    for i, scope in enumerate(scopes.split(",")):
        scope = scope.strip()
        if scope not in SCOPES:
            raise InputError(f"expected one of {', '.join(SCOPES)}", where=f"scopes[{i}]")
        if scope not in out:
            out.append(scope)
    return out


@dataclass(frozen=True)
class CertBinding:
    """What a principal registered with a certificate is bound to."""

    fingerprint: str | None  # a pinned (self-signed) certificate
    issuer_fingerprint: str | None  # the CA that issued a CA-issued one
    public_key: str | None  # and its key


def binding_for_cert(cert: x509.Certificate, *, name: str, anchors: TrustAnchors) -> CertBinding:
    """Pin a self-signed certificate; bind a CA-issued one to its CA and key.

    Raises:
        InputError: a CA-issued certificate from no CA this node trusts, or
            one that names another node; a CA certificate (``CA:TRUE``).
    """
    if is_ca_certificate(cert):
        raise InputError(
            f"{cert.subject.rfc4514_string()} is a CA certificate (CA:TRUE), which `serve` "
            "refuses to pin. Have the partner make a key and a request: "
            f"`openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
            f"-keyout {name}.key -out {name}.csr -subj /CN={name}`, then sign it here with "
            f"`hashfed ca sign --csr {name}.csr`; or a self-signed one: `openssl req -x509 "
            f"-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {name}.key -out "
            f"{name}.crt -days 825 -subj /CN={name} -addext basicConstraints=critical,CA:FALSE`",
            where="cert",
        )
    if cert.issuer == cert.subject:
        return CertBinding(cert_fingerprint(cert), None, None)
    issuer = anchors.issuer_of(cert)
    if issuer is None:
        raise InputError("issued by no CA this node trusts (tls_ca_files, ca init)", where="cert")
    if node_id_from_certificate(cert) != name:
        raise InputError(f"the certificate names another node, not {name!r}", where="cert")
    return CertBinding(None, issuer, public_key_fingerprint(cert))


def default_issuer(
    anchors: TrustAnchors, ca: x509.Certificate | None = None, *, strict: bool = False
) -> str | None:
    """The CA a principal registered by name only is bound to.

    ``ca`` if given (it must be trusted), else the node's only CA. None when
    the node trusts no CA, or several and none was named (``strict`` refuses
    that instead): such a principal can use API tokens only, never a
    certificate whose issuer nobody chose.

    Raises:
        InputError: ``ca`` is not trusted; several CAs and ``strict``.
    """
    trusted = anchors.ca_fingerprints()
    if ca is not None:
        fpr = cert_fingerprint(ca)
        if fpr not in trusted:
            raise InputError("not one of this node's trusted CAs", where="ca")
        return fpr
    distinct = list(dict.fromkeys(trusted))
    if len(distinct) > 1 and strict:
        raise InputError(
            "this node trusts several CAs: name the issuing one, or pin the certificate",
            where="ca",
        )
    return distinct[0] if len(distinct) == 1 else None


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
    issuer_fingerprint: str | None = None,
    public_key: str | None = None,
) -> PrincipalRow:
    """Register a caller: by certificate fingerprint, or by CA-issued identity (no fingerprint).

    A CA-issued identity is bound to ``issuer_fingerprint`` (the CA) and, if
    given, ``public_key``; otherwise to the key it first authenticates with.
    """
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
    if public_key is not None and store.is_key_revoked(public_key=public_key):
        raise InputError("this certificate's key was revoked; issue a new one", where="cert")
    row = store.add_principal(
        name=name,
        role=role,
        labels=labels,
        cert_fingerprint=fingerprint,
        issuer_fingerprint=None if fingerprint else issuer_fingerprint,
        public_key=None if fingerprint else public_key,
    )
    store.append_audit(
        actor=actor,
        action="principal.add",
        target=name,
        detail={
            "role": role,
            "labels": sorted(row.labels),
            "issuer": row.issuer_fingerprint,
            "key": row.public_key,
        },
    )
    return row


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    store: Store,
    *,
    principal: str,
    scopes: str = DEFAULT_SCOPES,
    ttl_days: int | None,
    actor: str,
    allow_admin: bool = False,
) -> str:
    """Issue a token for ``principal``; the only time the token is visible.

    Raises:
        InputError: no such principal, an unknown scope, a lifetime outside
            1..366 days, or an administrator without ``allow_admin``.
    """
    if ttl_days is not None and not 1 <= ttl_days <= MAX_TOKEN_DAYS:
        raise InputError(f"expected 1 to {MAX_TOKEN_DAYS} days", where="ttl_days")
    wanted = check_scopes(scopes)
    row = store.get_principal(name=principal)
    if row is None:
        raise InputError(f"no principal named {principal!r}", where="principal")
    if row.role == "admin" and not allow_admin:
        # A bearer token is easier to leak than a key; admin power needs asking for.
        raise InputError(
            "refusing a token for an administrator without --allow-admin", where="principal"
        )
    prefix = secrets.token_hex(4)
    token = f"hf_{prefix}_{secrets.token_urlsafe(32)}"
    expires = now_ms() + ttl_days * 86_400_000 if ttl_days else None
    store.add_token(
        principal_id=row.id,
        token_hash=hash_token(token),
        prefix=prefix,
        scopes=",".join(wanted),
        expires_ms=expires,
    )
    store.append_audit(
        actor=actor,
        action="token.create",
        target=principal,
        detail={"prefix": prefix, "scopes": wanted, "expires_ms": expires},
    )
    return token


def resolve_token(store: Store, token: str) -> Principal | None:
    """The principal a presented token belongs to, or None if unknown, revoked, expired."""
    if not _TOKEN_RE.fullmatch(token):
        return None
    found = store.principal_for_token(token_hash=hash_token(token))
    if found is None:
        return None
    row, scopes = found
    # Stored scopes outside SCOPES (older tokens) grant nothing.
    granted = frozenset(x for x in scopes.split(",") if x in SCOPES)
    return from_row(row, via="token", scopes=granted)
