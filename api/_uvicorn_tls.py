"""uvicorn HTTP protocols that hand the TLS client certificate to the app.

uvicorn verifies client certificates (given a context that requires them) but
does not pass them on: its scopes carry no ``"tls"`` extension. The protocol
subclasses here read the peer certificate once per connection, right after
the handshake, and add to every request scope of that connection the ASGI TLS
extension (asgiref ``specs/tls.rst``, version 0.2)::

    scope["extensions"]["tls"] = {
        "server_cert": str | None,       # PEM of this server's certificate
        "client_cert_chain": [str, ...], # PEM, client certificate first
        "client_cert_name": str | None,  # RFC 4514 subject of the first one
        "client_cert_error": None,       # failed verifications never get here
        "tls_version": int | None,       # 0x0303 TLS 1.2, 0x0304 TLS 1.3
        "cipher_suite": int | None,      # IANA number, e.g. 0x1301
    }

``client_cert_chain`` is the chain OpenSSL *verified*, client certificate
first and trust anchor last (for a pinned self-signed certificate, just that
one). The spec describes the chain the client sent; the verified one is what
authorisation should rely on, and it also names the CA that vouched for the
client. Python 3.13 has ``SSLObject.get_verified_chain()``; on 3.11-3.12 the
same call exists on the private ``_sslobj``. If neither answers (a resumed
session has no verified chain), the chain is just the client certificate.

Tested with uvicorn 0.54 (pyproject pins ``uvicorn<0.55``); needs 0.47 or later
for ``ssl_context_factory``. The subclasses rely on three uvicorn internals,
each checked by ``tests/integration/test_mtls_handshake.py``: the protocol's
``connection_made(transport)`` runs after the TLS handshake, the protocol
reads the app from ``self.app`` for each request, and ``self.app`` is set in
``__init__`` per connection.

WebSocket upgrades are handed to a separate protocol that reads the app from
the config, so they would get no ``"tls"`` extension; :func:`make_uvicorn_config`
turns WebSockets off (hashfed serves none).
"""

from __future__ import annotations

import _ssl
import asyncio
import functools
import inspect
import os
import ssl
from collections.abc import Sequence
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api._http_bounds import BoundedHttpTools, uvicorn_bounds
from crypto.tls import uvicorn_ssl_kwargs

__all__ = [
    "TLS_PROTOCOLS",
    "MTLSH11Protocol",
    "MTLSHttpToolsProtocol",
    "auto_protocol",
    "make_uvicorn_config",
    "tls_extension",
]

ASGIApp = Any  # uvicorn's ASGI3Application; kept loose to not import private types

# _ssl.Certificate.public_bytes(format): the private chain API's DER constant.
_ENCODING_DER: int = _ssl.ENCODING_DER

_TLS_VERSIONS = {
    "TLSv1": 0x0301,
    "TLSv1.1": 0x0302,
    "TLSv1.2": 0x0303,
    "TLSv1.3": 0x0304,
}


def tls_extension(
    ssl_object: ssl.SSLObject | ssl.SSLSocket, *, server_cert: str | None
) -> dict[str, Any]:
    """The ASGI ``"tls"`` extension for one established TLS connection.

    Args:
        ssl_object: The connection's ``ssl_object`` (after the handshake).
        server_cert: PEM of this server's certificate, or None if unknown.

    Returns:
        The extension dictionary described in the module docstring.
    """
    chain = _verified_chain_der(ssl_object)
    pems = [ssl.DER_cert_to_PEM_cert(der) for der in chain]
    name = _subject_name(chain[0]) if chain else None
    cipher = ssl_object.cipher()
    version = ssl_object.version()
    return {
        "server_cert": server_cert,
        "client_cert_chain": pems,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(version) if version else None,
        "cipher_suite": _cipher_ids(ssl_object.context).get(cipher[0]) if cipher else None,
    }


def _subject_name(der: bytes) -> str | None:
    try:
        return x509.load_der_x509_certificate(der).subject.rfc4514_string()
    except ValueError:
        # OpenSSL verified what cryptography cannot parse; the app's own parser
        # will refuse it too, so no identity is claimed here.
        return None


def _verified_chain_der(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
    leaf = ssl_object.getpeercert(binary_form=True)
    if not leaf:
        return []
    getter = getattr(ssl_object, "get_verified_chain", None)  # Python >= 3.13
    if getter is None:
        getter = getattr(getattr(ssl_object, "_sslobj", None), "get_verified_chain", None)
    chain: list[bytes] = []
    if getter is not None:
        try:
            for cert in getter() or ():
                # 3.13 returns DER bytes; the private 3.10-3.12 call, _ssl.Certificate.
                der = cert if isinstance(cert, bytes) else cert.public_bytes(_ENCODING_DER)
                chain.append(bytes(der))
        except (AttributeError, TypeError, ValueError, ssl.SSLError):
            chain = []
    if not chain or chain[0] != leaf:
        return [leaf]  # never report a chain that does not start with the peer's cert
    return chain


@functools.lru_cache(maxsize=8)
def _cipher_ids(ctx: ssl.SSLContext) -> dict[str, int]:
    # OpenSSL ids are 0x0300XXXX; the low 16 bits are the IANA cipher suite.
    return {c["name"]: c["id"] & 0xFFFF for c in ctx.get_ciphers()}


@functools.lru_cache(maxsize=8)
def _server_cert_pem(certfile: str) -> str | None:
    # The first certificate of uvicorn's ssl_certfile: an SSLObject cannot
    # return its own certificate.
    try:
        with open(certfile, "rb") as fh:
            certs = x509.load_pem_x509_certificates(fh.read())
    except (OSError, ValueError):
        return None
    return certs[0].public_bytes(serialization.Encoding.PEM).decode("ascii") if certs else None


def _with_tls(app: ASGIApp, tls: dict[str, Any]) -> ASGIApp:
    async def app_with_tls(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            # A fresh copy per request: one request's app cannot alter the next's.
            ext = {**tls, "client_cert_chain": list(tls["client_cert_chain"])}
            scope["extensions"] = {**scope.get("extensions", {}), "tls": ext}
        await app(scope, receive, send)

    return app_with_tls


def _install_tls(protocol: H11Protocol | HttpToolsProtocol, transport: asyncio.Transport) -> None:
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return  # plain HTTP: the spec forbids the extension
    certfile = protocol.config.ssl_certfile
    server_cert = _server_cert_pem(os.fspath(certfile)) if certfile else None
    tls = tls_extension(ssl_object, server_cert=server_cert)
    protocol.app = _with_tls(protocol.app, tls)


class MTLSH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, adding the ASGI ``"tls"`` extension to scopes."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Record the connection's TLS facts, then let uvicorn set up the connection."""
        _install_tls(self, transport)
        super().connection_made(transport)


class MTLSHttpToolsProtocol(BoundedHttpTools):
    """uvicorn's httptools protocol (``http="auto"``'s choice when installed),
    adding the ASGI ``"tls"`` extension to scopes; heads and stalls bounded
    (:mod:`api._http_bounds`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Record the connection's TLS facts, then let uvicorn set up the connection."""
        _install_tls(self, transport)
        super().connection_made(transport)


TLS_PROTOCOLS: dict[str, type[H11Protocol] | type[HttpToolsProtocol]] = {
    "h11": MTLSH11Protocol,
    "httptools": MTLSHttpToolsProtocol,
}


def auto_protocol() -> str:
    """The key of :data:`TLS_PROTOCOLS` matching uvicorn's ``http="auto"`` choice.

    uvicorn picks httptools when it is installed (``uvicorn[standard]``), else h11.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    return "httptools" if issubclass(AutoHTTPProtocol, HttpToolsProtocol) else "h11"


def make_uvicorn_config(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str],
    ca_files: Sequence[str | os.PathLike[str]] = (),
    pinned_cert_files: Sequence[str | os.PathLike[str]] = (),
    require_client_cert: bool = True,
    context_factory: Any = None,
    http: str = "auto",
    **kw: Any,
) -> uvicorn.Config:
    """A ``uvicorn.Config`` serving ``app`` over mutual TLS with the ``"tls"`` extension.

    Args:
        app: The ASGI application (or an import string).
        host: Address to listen on.
        port: Port to listen on (0: any free port, when uvicorn binds).
        cert_file: This node's certificate.
        key_file: This node's private key.
        ca_files: PEM files of CAs whose node certificates are accepted.
        pinned_cert_files: PEM files of pinned self-signed peer certificates.
        require_client_cert: Refuse clients without a certificate (else they
            need an API token).
        context_factory: Replaces the default ``ssl_context_factory``.
        http: ``"auto"`` (uvicorn's own choice, see :func:`auto_protocol`),
            ``"httptools"`` or ``"h11"``.
        **kw: Other ``uvicorn.Config`` options. ``ws`` defaults to ``"none"``
            and ``proxy_headers`` to False: clients connect directly, so no
            ``X-Forwarded-*`` header is believed.

    Returns:
        The config; pass it to ``uvicorn.Server``.

    Raises:
        ConfigError: A certificate, key or trust file is unusable.
        RuntimeError: uvicorn is older than 0.47 (no ``ssl_context_factory``).
        ValueError: ``http`` is not ``"auto"``, ``"httptools"`` or ``"h11"``, or ``kw``
            tries to set an ``ssl_*`` option or ``http`` protocol itself.
    """
    if "ssl_context_factory" not in inspect.signature(uvicorn.Config).parameters:
        # pyproject allows older uvicorn; without the factory the TLS policy cannot apply.
        raise RuntimeError(f"uvicorn {uvicorn.__version__} is too old for mTLS: 0.47 or later")
    if http == "auto":
        http = auto_protocol()
    if http not in TLS_PROTOCOLS:
        raise ValueError(f"http: expected 'auto' or one of {sorted(TLS_PROTOCOLS)}, got {http!r}")
    clashing = sorted(k for k in kw if k.startswith("ssl_") or k in ("http", "http2"))
    if clashing:
        raise ValueError(f"make_uvicorn_config sets TLS itself; remove {clashing}")
    kw.setdefault("ws", "none")
    kw.setdefault("proxy_headers", False)
    for option, value in uvicorn_bounds().items():
        kw.setdefault(option, value)
    ssl_kwargs = uvicorn_ssl_kwargs(
        cert_file,
        key_file,
        ca_files=ca_files,
        pinned_cert_files=pinned_cert_files,
        require_client_cert=require_client_cert,
    )
    if context_factory is not None:
        # The caller keeps the context it builds (e.g. to add trust anchors live).
        ssl_kwargs["ssl_context_factory"] = context_factory
    return uvicorn.Config(app, host=host, port=port, http=TLS_PROTOCOLS[http], **ssl_kwargs, **kw)
