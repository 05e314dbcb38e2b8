"""Who is calling: a principal from the client certificate or an API token.

The TLS handshake has already checked the certificate against the node's
trust anchors (federation CAs, pinned peer certificates). Here it is mapped
to a registered principal, on every request, so removing a principal cuts it
off at once. The node's own certificate is its operator: an administrator.
"""

from __future__ import annotations

import base64
import threading
import time
from urllib.parse import unquote

from cryptography import x509
from starlette.requests import Request

from crypto.errors import ForbiddenError, NotAuthenticatedError
from crypto.pki import cert_fingerprint, node_id_from_certificate
from node.principals import Principal, from_row, resolve_token
from node.store import Store


def _client_certificate(request: Request, proxy_header: str | None) -> x509.Certificate | None:
    tls = request.scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    pem: str | None = chain[0] if chain else None
    if pem is None and proxy_header:
        # Only honoured when the node listens on loopback behind the proxy
        # (config/settings.py refuses anything else).
        raw = request.headers.get(proxy_header)
        pem = unquote(raw) if raw else None
    if pem is None:
        return None
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise NotAuthenticatedError(reason="client certificate is not valid PEM") from None


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
    request: Request, *, store: Store, own_fingerprint: str, proxy_header: str | None
) -> Principal:
    """Map the request's certificate or token to a principal.

    Raises:
        NotAuthenticatedError: neither a certificate nor a valid token.
        ForbiddenError: a valid certificate that belongs to no principal.
    """
    token = _token(request)
    if token is not None:
        principal = resolve_token(store, token)
        if principal is None:
            raise NotAuthenticatedError(reason="unknown, expired or revoked token")
        return principal
    cert = _client_certificate(request, proxy_header)
    if cert is None:
        raise NotAuthenticatedError(reason="a client certificate or an API token is required")
    fpr = cert_fingerprint(cert)
    if fpr == own_fingerprint:
        return Principal("self", "admin", None, "self")
    row = store.get_principal(cert_fingerprint=fpr)
    if row is None and cert.issuer != cert.subject:
        # CA-issued identity: the handshake proved the federation CA signed it.
        node_id = node_id_from_certificate(cert)
        candidate = store.get_principal(name=node_id) if node_id else None
        if candidate is not None and candidate.cert_fingerprint is None:
            row = candidate
    if row is None:
        raise ForbiddenError(reason="this certificate is not registered with this node")
    return from_row(row, via="cert")


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


def require_role(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise ForbiddenError(
            reason=f"requires role {' or '.join(roles)}, caller is {principal.role}"
        )
