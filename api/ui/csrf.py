"""CSRF tokens for the dashboard's actions.

A browser sends the client certificate with every request to the node, also
one a hostile page makes it send; so every POST carries a token that only a
page of the node could have put there. The token is an HMAC of the
principal's name under a key derived from the node's TLS key: every serve
process of a node (same data folder) accepts the others' tokens, and no one
without the node's key can make one. A request whose ``Origin`` header names
another site is refused before the token is looked at.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request

from crypto.errors import ForbiddenError

__all__ = ["check_csrf", "csrf_token"]


@functools.lru_cache(maxsize=8)
def _key(tls_key_file: Path) -> bytes:
    return hashlib.sha256(b"hashfed dashboard csrf\n" + tls_key_file.read_bytes()).digest()


def csrf_token(tls_key_file: Path, principal: str) -> str:
    return hmac.new(_key(tls_key_file), principal.encode(), hashlib.sha256).hexdigest()


def check_csrf(request: Request, tls_key_file: Path, principal: str, given: str | None) -> None:
    """Refuse a cross-site POST.

    Raises:
        ForbiddenError: an ``Origin`` of another site, or a missing or wrong token.
    """
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        own = urlsplit(str(request.base_url))
        theirs = urlsplit(origin)
        if (theirs.scheme, theirs.netloc) != (own.scheme, own.netloc):
            raise ForbiddenError(reason="cross-site request refused")
    if not given or not hmac.compare_digest(given, csrf_token(tls_key_file, principal)):
        raise ForbiddenError(reason="missing or wrong CSRF token; reload the page")
