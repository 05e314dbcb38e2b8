"""``ssl.SSLContext`` objects for mutual TLS between nodes, and uvicorn's options.

Both ends present a certificate and require one from the other side:

* versions: TLS 1.2 at least (``minimum_version``); OpenSSL picks TLS 1.3
  whenever both ends have it, which is how 1.3 is preferred;
* TLS 1.2 cipher suites: ECDHE key exchange with AEAD only (TLS 1.3 suites
  are all AEAD with forward secrecy and are left at OpenSSL's defaults);
* trust: the listed CA certificates and the listed pinned self-signed peer
  certificates, nothing from the system store; ``VERIFY_X509_STRICT`` on,
  as Python 3.13 makes the default;
* no renegotiation, no compression, and no session tickets on the server, so
  every connection runs a full handshake and the client certificate is
  checked against the current time and trust anchors each time.

uvicorn (0.47 and later) takes a whole context through its
``ssl_context_factory`` option; :func:`uvicorn_ssl_kwargs` returns the options
that make uvicorn use :func:`server_context`, so the TLS 1.2 floor and
everything above hold for the HTTP server too.

Raises ``ConfigError`` for every unusable file: missing, unreadable, not PEM,
a key that does not match its certificate, a pinned file that is a CA.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from crypto.errors import ConfigError
from crypto.pki import load_certificate, load_certificates

__all__ = [
    "MIN_TLS_VERSION",
    "TLS12_CIPHERS",
    "ServerContextFactory",
    "client_context",
    "server_context",
    "uvicorn_ssl_kwargs",
]

StrPath = str | os.PathLike[str]

MIN_TLS_VERSION = ssl.TLSVersion.TLSv1_2
# Forward secrecy and AEAD for TLS 1.2 (Mozilla "intermediate" minus DHE).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"


def server_context(
    cert_file: StrPath,
    key_file: StrPath,
    *,
    ca_files: Sequence[StrPath] = (),
    pinned_cert_files: Sequence[StrPath] = (),
    require_client_cert: bool = True,
) -> ssl.SSLContext:
    """A server context that requires a client certificate from a trusted issuer.

    With ``require_client_cert=False`` a client may connect without a
    certificate (it must then present an API token), but a certificate it
    does present is still verified against the same anchors.

    Args:
        cert_file: This node's certificate (PEM; may be followed by its chain).
        key_file: This node's private key (PEM, unencrypted).
        ca_files: PEM files of CAs whose node certificates are accepted.
        pinned_cert_files: PEM files, one self-signed peer certificate each,
            accepted as they are.
        require_client_cert: Refuse the handshake without a client certificate.

    Returns:
        A context for ``ssl=`` of an asyncio server or uvicorn's
        ``ssl_context_factory``.

    Raises:
        ConfigError: No trust anchor is given, or a file is unusable; the
            message names the file.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_TICKET
    # TLS 1.3 resumption would skip the certificate check on later connections.
    ctx.num_tickets = 0
    _load_identity(ctx, cert_file, key_file)
    _load_trust(ctx, ca_files, pinned_cert_files)
    return ctx


def client_context(
    cert_file: StrPath,
    key_file: StrPath,
    *,
    ca_files: Sequence[StrPath] = (),
    pinned_cert_files: Sequence[StrPath] = (),
) -> ssl.SSLContext:
    """A client context that presents this node's certificate and checks the peer's.

    Host names are checked (``check_hostname``): the peer's certificate must
    name the host in the URL in a DNS subject alternative name, or the IP
    address in an IP one when a peer is dialled by address.

    Use it as ``httpx.Client(verify=client_context(...))``.

    Args:
        cert_file: This node's certificate (PEM; may be followed by its chain).
        key_file: This node's private key (PEM, unencrypted).
        ca_files: PEM files of CAs whose node certificates are accepted.
        pinned_cert_files: PEM files, one self-signed peer certificate each,
            accepted as they are.

    Returns:
        The context.

    Raises:
        ConfigError: No trust anchor is given, or a file is unusable; the
            message names the file.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(ctx)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_identity(ctx, cert_file, key_file)
    _load_trust(ctx, ca_files, pinned_cert_files)
    return ctx


def uvicorn_ssl_kwargs(
    cert_file: StrPath,
    key_file: StrPath,
    *,
    ca_files: Sequence[StrPath] = (),
    pinned_cert_files: Sequence[StrPath] = (),
    require_client_cert: bool = True,
) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config`` that serve mutual TLS.

    uvicorn's own options cannot express this policy: ``ssl_ca_certs`` takes
    one file and there is no minimum-version option. So the main item is
    ``ssl_context_factory`` (uvicorn >= 0.47), which returns
    :func:`server_context`; uvicorn then ignores its other ``ssl_*`` options
    for the context. ``ssl_certfile``/``ssl_keyfile`` are still passed so
    uvicorn reports ``https`` and the mTLS protocol can read the server
    certificate, and ``ssl_cert_reqs`` so the intent is visible in the config.

    The context is built once here so that a bad file fails now, not at
    startup; the factory builds it again in the server process, because an
    ``SSLContext`` cannot be pickled to uvicorn's worker processes.

    Args:
        cert_file: This node's certificate.
        key_file: This node's private key.
        ca_files: PEM files of CAs whose node certificates are accepted.
        pinned_cert_files: PEM files of pinned self-signed peer certificates.

    Returns:
        ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs`` and
        ``ssl_context_factory``.

    Raises:
        ConfigError: As :func:`server_context`.
    """
    factory = ServerContextFactory(
        cert_file=os.fspath(cert_file),
        key_file=os.fspath(key_file),
        ca_files=tuple(os.fspath(p) for p in ca_files),
        pinned_cert_files=tuple(os.fspath(p) for p in pinned_cert_files),
        require_client_cert=require_client_cert,
    )
    factory.build()
    return {
        "ssl_certfile": factory.cert_file,
        "ssl_keyfile": factory.key_file,
        "ssl_cert_reqs": ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL,
        "ssl_context_factory": factory,
    }


@dataclass(frozen=True)
class ServerContextFactory:
    """uvicorn's ``ssl_context_factory``: :func:`server_context` from file paths.

    A plain picklable object (not a closure), so uvicorn can hand it to worker
    processes.
    """

    cert_file: str
    key_file: str
    ca_files: tuple[str, ...]
    pinned_cert_files: tuple[str, ...]
    require_client_cert: bool = True

    def build(self) -> ssl.SSLContext:
        """Build the server context.

        Raises:
            ConfigError: As :func:`server_context`.
        """
        return server_context(
            self.cert_file,
            self.key_file,
            ca_files=self.ca_files,
            pinned_cert_files=self.pinned_cert_files,
            require_client_cert=self.require_client_cert,
        )

    def __call__(
        self, config: Any, default_factory: Callable[[], ssl.SSLContext]
    ) -> ssl.SSLContext:
        """uvicorn's factory signature; uvicorn's default context is not used.

        Raises:
            ConfigError: As :func:`server_context`.
        """
        return self.build()


def _harden(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = MIN_TLS_VERSION
    ctx.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT


def _load_identity(ctx: ssl.SSLContext, cert_file: StrPath, key_file: StrPath) -> None:
    load_certificates(cert_file)  # a precise ConfigError for a missing or non-PEM file
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except FileNotFoundError:
        raise ConfigError(f"{key_file}: private key file not found") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"{cert_file}, {key_file}: cannot load certificate and key "
            f"(missing, encrypted, corrupt or not a pair): {exc}"
        ) from None


def _load_trust(
    ctx: ssl.SSLContext, ca_files: Sequence[StrPath], pinned_cert_files: Sequence[StrPath]
) -> None:
    if not ca_files and not pinned_cert_files:
        raise ConfigError(
            "no TLS trust anchors: list CA certificates or pinned peer certificates "
            "(tls_ca_files, tls_pinned_cert_files)"
        )
    for path in ca_files:
        for cert in load_certificates(path):
            if not _is_ca(cert):
                raise ConfigError(
                    f"{path}: holds a certificate that is not a CA; "
                    "list a self-signed peer certificate as a pinned certificate instead"
                )
        _load_verify(ctx, path)
    for path in pinned_cert_files:
        cert = load_certificate(path)
        if _is_ca(cert):
            # A pinned CA would trust everything it signs, not one peer.
            raise ConfigError(f"{path}: a pinned certificate must not be a CA")
        if cert.issuer != cert.subject:
            # OpenSSL accepts a leaf as its own anchor only if it is self-signed.
            raise ConfigError(f"{path}: a pinned certificate must be self-signed")
        _load_verify(ctx, path)


def _load_verify(ctx: ssl.SSLContext, path: StrPath) -> None:
    try:
        ctx.load_verify_locations(cafile=os.fspath(path))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{path}: cannot load as a trust anchor: {exc}") from None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False
