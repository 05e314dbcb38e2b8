"""Who is calling: a principal from the client certificate or an API token.

The TLS handshake has already checked the certificate against the node's
trust anchors (federation CAs, pinned peer certificates). Here it is mapped
to a registered principal, on every request, so removing a principal cuts it
off at once. The node's own certificate is its operator: an administrator.

Checked here on every request, whatever the handshake did: the certificate's
validity period (a resumed TLS session skips the handshake's check), which CA
issued it (a principal is bound to its CA and key), the CA's CRL and the
keys of removed principals. A token is limited to its scopes, one per route
(:data:`ROUTE_SCOPES`). Failed logins are limited per source address.
"""

from __future__ import annotations

import base64
import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from cryptography import x509
from starlette.requests import Request

from crypto.errors import ForbiddenError, NotAuthenticatedError
from crypto.pki import cert_fingerprint, node_id_from_certificate, public_key_fingerprint
from node.identity.principals import Principal, from_row, hash_token, resolve_token
from node.identity.trust import TrustAnchors
from node.store import Store

# The scope a token needs, by path prefix (first match); methods other than
# GET/HEAD need the ":write" scope where one is named. A route no prefix
# covers refuses every token: a new route is closed to tokens until listed.
ROUTE_SCOPES: tuple[tuple[str, str, str], ...] = (
    ("/api/v1/match", "match", "match"),
    ("/api/v1/lists", "lists:read", "lists:write"),
    ("/api/v1/status", "status", "status"),
    ("/api/v1/peers", "peers", "peers"),
    ("/feeds/", "feeds", "feeds"),
    ("/taxii2/", "feeds", "feeds"),
    ("/misp/", "feeds", "feeds"),  # the MISP form of the feeds
    ("/federation/", "federation", "federation"),
    ("/metrics", "metrics", "metrics"),
    ("/witness/", "witness", "witness"),
)


def scope_for(method: str, path: str) -> str | None:
    """The scope a token needs for this request, or None if no token may make it."""
    for prefix, read, write in ROUTE_SCOPES:
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            return read if method in ("GET", "HEAD") else write
    return None


@dataclass(frozen=True)
class CertFacts:
    """What authorisation needs from a client certificate."""

    fingerprint: str
    node_id: str | None
    self_signed: bool
    public_key: str
    not_before: float  # Unix seconds
    not_after: float
    cert: x509.Certificate


@functools.lru_cache(maxsize=4096)
def cert_facts(pem: str) -> CertFacts:
    """Parse a PEM certificate once per distinct certificate, not per request."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise NotAuthenticatedError(reason="client certificate is not valid PEM") from None
    return CertFacts(
        cert_fingerprint(cert),
        node_id_from_certificate(cert),
        cert.issuer == cert.subject,
        public_key_fingerprint(cert),
        cert.not_valid_before_utc.timestamp(),
        cert.not_valid_after_utc.timestamp(),
        cert,
    )


def _connection_pem(request: Request) -> str | None:
    tls = request.scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    return chain[0] if chain else None


def _check_validity(facts: CertFacts) -> None:
    # The handshake checks this too, but a resumed TLS 1.2 session skips it.
    now = time.time()
    if now > facts.not_after:
        raise NotAuthenticatedError(reason="the client certificate has expired")
    if now < facts.not_before:
        raise NotAuthenticatedError(reason="the client certificate is not valid yet")


class PrincipalCache:
    """Resolved principals, dropped whenever the principal table may have changed.

    ``hashfed principal``/``token`` commands touch ``marker`` after every
    change; a stat per request (microseconds) notices it, so a removal cuts a
    caller off at its next request. Entries also expire after ``ttl`` seconds,
    the bound when another host changed the shared database. At most
    ``max_entries`` are kept, least recently used dropped first: every distinct
    bad token would otherwise stay in memory for good.
    """

    def __init__(self, marker: Path, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.marker = marker
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
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
                self._entries.move_to_end(key)
                return hit[1]
        value = resolve()
        with self._lock:
            self._entries[key] = (now, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)


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
    anchors: TrustAnchors,
    proxy_fingerprints: frozenset[str] = frozenset(),
) -> Principal:
    """Map the request's certificate or token to a principal.

    Raises:
        NotAuthenticatedError: neither a certificate nor a valid token; an
            expired certificate; a header certificate from an unpinned proxy.
        ForbiddenError: a valid certificate that belongs to no principal, or
            a token without the scope this route needs.
    """
    token = _token(request)
    if token is not None:
        principal = cache.get("token:" + hash_token(token), lambda: resolve_token(store, token))
        if principal is None:
            raise NotAuthenticatedError(reason="unknown, expired or revoked token")
        _check_scope(request, principal)
        return principal
    pem = _connection_pem(request)
    via_proxy = False
    if proxy_header and request.headers.get(proxy_header) is not None:
        pem, via_proxy = _proxied_pem(request, pem, proxy_header, proxy_fingerprints), True
    if pem is None:
        raise NotAuthenticatedError(reason="a client certificate or an API token is required")
    facts = cert_facts(pem)
    _check_validity(facts)
    if (
        via_proxy
        and not anchors.is_pinned(facts.fingerprint)
        and anchors.issuer_of(facts.cert) is None
    ):
        # No handshake checked the forwarded certificate: it must chain to a CA or be pinned.
        raise NotAuthenticatedError(reason="the forwarded certificate is from no trusted CA")
    if facts.fingerprint == own_fingerprint and not via_proxy:
        # The node's certificate is public; only a connection holding its key is the operator.
        return Principal("self", "admin", None, "self")
    anchors.refresh()  # a new CRL or pin must not wait for a cached answer to expire
    key = f"cert:{anchors.generation}:{facts.fingerprint}"
    principal = cache.get(key, lambda: _principal_for_cert(store, anchors, facts))
    if principal is None:
        raise ForbiddenError(reason="this certificate is not registered with this node")
    return principal


def _proxied_pem(
    request: Request, pem: str | None, header: str, proxy_fingerprints: frozenset[str]
) -> str:
    """The certificate a TLS-terminating proxy forwards, if this connection is that proxy."""
    if pem is None or cert_facts(pem).fingerprint not in proxy_fingerprints:
        raise NotAuthenticatedError(
            reason=f"{header} is only accepted from the proxy's pinned certificate"
        )
    raw = request.headers.get(header) or ""
    return unquote(raw)


def _check_scope(request: Request, principal: Principal) -> None:
    if principal.scopes is None:
        return
    needed = scope_for(request.method, request.url.path)
    if needed is None or needed not in principal.scopes:
        raise ForbiddenError(
            reason=f"this token lacks the scope {needed!r}" if needed else "no token may do this"
        )


def _principal_for_cert(store: Store, anchors: TrustAnchors, facts: CertFacts) -> Principal | None:
    issuer = None if facts.self_signed else anchors.issuer_of(facts.cert)
    if issuer is not None and anchors.is_revoked(facts.cert, issuer):
        return None
    if store.is_key_revoked(public_key=facts.public_key):
        return None  # a removed principal's certificate, whatever name it now claims
    row = store.get_principal(cert_fingerprint=facts.fingerprint)
    if row is not None:
        return from_row(row, via="cert")
    if issuer is None or not facts.node_id:
        return None
    # CA-issued identity: bound to the CA that issued it and to one key.
    row = store.get_principal(name=facts.node_id)
    if row is None or row.cert_fingerprint is not None or row.issuer_fingerprint != issuer:
        return None
    if row.public_key is None:
        row = store.bind_public_key(name=row.name, public_key=facts.public_key)
    if row is None or row.public_key != facts.public_key:
        return None
    return from_row(row, via="cert")


class FailureLimiter:
    """Failed logins per source address: ``burst``, then one per ``refill_seconds``.

    At most ``max_sources`` addresses are tracked, the stalest dropped first,
    so a flood of addresses cannot grow it without bound.
    """

    def __init__(self, burst: int, refill_seconds: float, max_sources: int = 10_000) -> None:
        self.burst = float(burst)
        self.refill = refill_seconds
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _level(self, source: str, now: float) -> float:
        tokens, last = self._buckets.get(source, (self.burst, now))
        return min(self.burst, tokens + (now - last) / self.refill)

    def retry_after(self, source: str) -> int:
        """Seconds until ``source`` may try again; 0 if it may now."""
        if source not in self._buckets:  # never failed: the common case, no lock
            return 0
        with self._lock:
            tokens = self._level(source, time.monotonic())
        return 0 if tokens >= 1 else max(1, int((1 - tokens) * self.refill + 0.999))

    def failed(self, source: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._buckets[source] = (max(0.0, self._level(source, now) - 1), now)
            self._buckets.move_to_end(source)
            while len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)


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
