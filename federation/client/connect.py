"""How the clients connect: trust anchors, TLS client contexts, the connect timeout.

Also how a foreign exception is described in a ``PeerError``: by its type and
text, which name hosts and TLS alerts, never request bodies.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from config import NodeSettings
from crypto.errors import InputError
from crypto.tls import MIN_TLS_VERSION, TLS12_CIPHERS, client_context
from node.identity.trust import PINNED_DIR

__all__ = ["CONNECT_SECONDS", "cert_context", "describe", "token_context", "trust_anchors"]

# A single request may wait this long for a connection (the pull deadline
# cuts it shorter when it is near).
CONNECT_SECONDS = 10.0


def trust_anchors(settings: NodeSettings) -> tuple[list[Path], list[Path]]:
    """CA files and pinned certificate files this node trusts for peers."""
    cas = [settings.path(p) for p in settings.tls_ca_files]
    own_ca = settings.path("ca/ca.crt")
    if own_ca.exists() and own_ca not in cas:
        cas.append(own_ca)
    pinned = [settings.path(p) for p in settings.tls_pinned_cert_files]
    folder = settings.path(PINNED_DIR)
    if folder.is_dir():
        pinned += sorted(folder.glob("*.crt"))
    return cas, pinned


def token_context(
    *, ca_files: Sequence[Path] = (), pinned_cert_files: Sequence[Path] = ()
) -> ssl.SSLContext:
    """A client context without a client certificate (token auth), checking the server.

    With neither CAs nor pins it uses the system's trust store (a node behind a
    public TLS front end); otherwise exactly the given anchors.
    """
    if not ca_files and not pinned_cert_files:
        ctx = ssl.create_default_context()
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        for path in [*ca_files, *pinned_cert_files]:
            try:
                ctx.load_verify_locations(cafile=os.fspath(path))
            except (ssl.SSLError, OSError) as exc:
                raise InputError(f"cannot load as a trust anchor: {exc}", where=str(path)) from None
    ctx.minimum_version = MIN_TLS_VERSION
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return ctx


def cert_context(
    cert: Path, key: Path, *, ca_files: Sequence[Path] = (), pinned_cert_files: Sequence[Path] = ()
) -> ssl.SSLContext:
    """A client context presenting ``cert`` (crypto/tls.py's hardened one)."""
    return client_context(cert, key, ca_files=ca_files, pinned_cert_files=pinned_cert_files)


def describe(exc: BaseException) -> str:
    # httpx and ssl messages name hosts and TLS alerts, never request bodies.
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"
