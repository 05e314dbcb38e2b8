"""Who is calling: a principal from the client certificate or an API token.

The TLS handshake has already checked the certificate against the node's
trust anchors (federation CAs, pinned peer certificates). Here it is mapped
to a registered principal, on every request, so removing a principal cuts it
off at once. The node's own certificate is its operator: an administrator.
"""

from __future__ import annotations

import base64
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from cryptography import x509
from starlette.requests import Request

from crypto.errors import ForbiddenError, NotAuthenticatedError
from crypto.pki import cert_fingerprint, node_id_from_certificate
from node.identity.principals import Principal, from_row, hash_token, resolve_token
from node.store import Store


@dataclass(frozen=True)
class CertFacts:
    """What authorisation needs from a client certificate."""

    fingerprint: str
    node_id: str | None
    self_signed: bool


@functools.lru_cache(maxsize=4096)
def cert_facts(pem: str) -> CertFacts:
    """Parse a PEM certificate once per distinct certificate, not per request."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise NotAuthenticatedError(reason="client certificate is not valid PEM") from None
    return CertFacts(
        cert_fingerprint(cert), node_id_from_certificate(cert), cert.issuer == cert.subject
    )


def _client_pem(request: Request, proxy_header: str | None) -> str | None:
    tls = request.scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    pem: str | None = chain[0] if chain else None
    if pem is None and proxy_header:
        # Only honoured when the node listens on loopback behind the proxy
        # (config/settings.py refuses anything else).
        raw = request.headers.get(proxy_header)
        pem = unquote(raw) if raw else None
    return pem


class PrincipalCache:
    """Resolved principals, dropped whenever the principal table may have changed.

    ``hashfed principal``/``token`` commands touch ``marker`` after every
    change; a stat per request (microseconds) notices it, so a removal cuts a
    caller off at its next request. Entries also expire after ``ttl`` seconds,
    the bound when another host changed the shared database.
    """

    def __init__(self, marker: Path, ttl: float = 5.0) -> None:
        self.marker = marker
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Principal | None]] = {}
        self._seen: int | None = None
        self._lock = threading.Lock()

    def _generation(self) -> int:
        try:
            return self.marker.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def get(self, key: str, resolve: Callable[[], Principal | None]) -> Principal | None:
        now = time.monotonic()
        gen = self._generation()
        with self._lock:
            if gen != self._seen:
                self._entries.clear()
                self._seen = gen
            hit = self._entries.get(key)
            if hit is not None and now - hit[0] < self.ttl:
                return hit[1]
        value = resolve()
        with self._lock:
            self._entries[key] = (now, value)
        return value


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip()
    if scheme == "basic":
        # TAXII clients send the token as the Basic password; the user is ignored.
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise NotAuthenticatedError(reason="malformed Basic credentials") from None
        return decoded.partition(":")[2]
    raise NotAuthenticatedError(reason=f"unsupported authorization scheme {scheme!r}")


def authenticate(
    request: Request,
    *,
    store: Store,
    own_fingerprint: str,
    proxy_header: str | None,
    cache: PrincipalCache,
) -> Principal:
    """Map the request's certificate or token to a principal.

    Raises:
        NotAuthenticatedError: neither a certificate nor a valid token.
        ForbiddenError: a valid certificate that belongs to no principal.
    """
    token = _token(request)
    if token is not None:
        principal = cache.get("token:" + hash_token(token), lambda: resolve_token(store, token))
        if principal is None:
            raise NotAuthenticatedError(reason="unknown, expired or revoked token")
        return principal
    pem = _client_pem(request, proxy_header)
    if pem is None:
        raise NotAuthenticatedError(reason="a client certificate or an API token is required")
    facts = cert_facts(pem)
    if facts.fingerprint == own_fingerprint:
        return Principal("self", "admin", None, "self")
    principal = cache.get("cert:" + facts.fingerprint, lambda: _principal_for_cert(store, facts))
    if principal is None:
        raise ForbiddenError(reason="this certificate is not registered with this node")
    return principal


def _principal_for_cert(store: Store, facts: CertFacts) -> Principal | None:
    row = store.get_principal(cert_fingerprint=facts.fingerprint)
    if row is None and not facts.self_signed and facts.node_id:
        # CA-issued identity: the handshake proved the federation CA signed it.
        candidate = store.get_principal(name=facts.node_id)
        if candidate is not None and candidate.cert_fingerprint is None:
            row = candidate
    return from_row(row, via="cert") if row is not None else None


class RateLimiter:
    """A token bucket per principal: ``burst`` requests, refilled at ``rate``/s."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, cost: float = 1.0) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < cost:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - cost, now)
            return True

    def charge(self, key: str, cost: float) -> None:
        """Debit work already done (proofs built, log entries scanned).

        The bucket may go below zero, down to ``-burst``: the caller's next
        requests wait until the work is paid for.
        """
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            self._buckets[key] = (max(-self.burst, tokens - cost), now)


def require_role(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise ForbiddenError(
            reason=f"requires role {' or '.join(roles)}, caller is {principal.role}"
        )
