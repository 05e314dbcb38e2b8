"""Mutual TLS through a real uvicorn server: who gets in, and what the app sees.

Every handshake here is real: uvicorn on 127.0.0.1, httpx or ``ssl`` clients,
certificates made by ``crypto.pki``. The app echoes what the ASGI ``"tls"``
extension told it, and records each request it saw, so "refused" also means
"the app never saw the request".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

# tests/ has no __init__.py: pytest puts this folder on sys.path (rootdir "prepend").
from _tls_server import RunningServer, serve_tls
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from api._uvicorn_tls import TLS_PROTOCOLS, make_uvicorn_config
from crypto.errors import ConfigError
from crypto.pki import (
    cert_fingerprint,
    create_ca,
    create_self_signed,
    generate_private_key,
    issue_certificate,
    node_id_from_certificate,
    node_uri,
    save_certificate,
    save_private_key,
)
from crypto.tls import client_context, server_context, uvicorn_ssl_kwargs

network = pytest.mark.network

# Under TLS 1.3 the client finishes its side of the handshake before the
# server checks the client certificate, so a refusal surfaces on the first
# request: RemoteProtocolError or ReadError (the server's alert or close),
# WriteError if the close beats the request; ConnectError under TLS 1.2.
REFUSED = (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
TIMEOUT = httpx.Timeout(5.0)


# --- certificates ----------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    cert: Path
    key: Path

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert.read_bytes())


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: Identity
    client: Identity  # issued by the trusted CA
    rogue_ca: Path
    rogue_client: Identity  # same node id as client, from an untrusted CA
    expired_client: Identity  # trusted CA, validity ended yesterday
    pinned_peer: Identity  # self-signed, listed as pinned on the server
    minted_by_pinned: Identity  # signed with the pinned peer's key
    unpinned_peer: Identity  # self-signed, not listed anywhere
    server_without_ip_san: Identity  # trusted CA, names only "localhost"


def _write(folder: Path, name: str, key: Any, cert: x509.Certificate) -> Identity:
    identity = Identity(cert=folder / f"{name}.crt", key=folder / f"{name}.key")
    save_certificate(cert, identity.cert)
    save_private_key(key, identity.key)
    return identity


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = create_ca("hashfed test federation CA")
    save_certificate(ca_cert, d / "ca.crt")
    rogue_key, rogue_cert = create_ca("hashfed test federation CA")  # same name, other key
    save_certificate(rogue_cert, d / "rogue-ca.crt")
    pinned_key, pinned_cert = create_self_signed("pinned-peer")
    # A certificate the pinned peer signs for someone else, as if it were a CA.
    # Otherwise a well-formed client certificate: only its issuer is wrong.
    minted_key = generate_private_key()
    minted_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=client-node"))
        .issuer_name(pinned_cert.subject)
        .public_key(minted_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(node_uri("client-node"))]),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(minted_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(pinned_key.public_key()),
            critical=False,
        )
        .sign(pinned_key, hashes.SHA256())
    )
    return Pki(
        ca=d / "ca.crt",
        server=_write(d, "server", *issue_certificate(ca_key, ca_cert, "server-node")),
        client=_write(d, "client", *issue_certificate(ca_key, ca_cert, "client-node")),
        rogue_ca=d / "rogue-ca.crt",
        rogue_client=_write(d, "rogue", *issue_certificate(rogue_key, rogue_cert, "client-node")),
        expired_client=_write(
            d,
            "expired",
            *issue_certificate(
                ca_key,
                ca_cert,
                "client-node",
                not_before=now - dt.timedelta(days=30),
                not_after=now - dt.timedelta(days=1),
            ),
        ),
        pinned_peer=_write(d, "pinned", pinned_key, pinned_cert),
        minted_by_pinned=_write(d, "minted", minted_key, minted_cert),
        unpinned_peer=_write(d, "unpinned", *create_self_signed("pinned-peer")),
        server_without_ip_san=_write(
            d,
            "server-no-ip",
            *issue_certificate(ca_key, ca_cert, "server-node", ip_addresses=()),
        ),
    )


# --- the app ----------------------------------------------------------------------------


class EchoApp:
    """Answers with what scope["extensions"]["tls"] says; remembers each request."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        with self._lock:
            self.seen.append(scope["path"])
        tls = scope.get("extensions", {}).get("tls")
        body: dict[str, Any] = {"tls": tls is not None}
        if tls is not None:
            chain = [x509.load_pem_x509_certificate(p.encode()) for p in tls["client_cert_chain"]]
            body |= {
                "fingerprint": cert_fingerprint(chain[0]) if chain else None,
                "node_id": node_id_from_certificate(chain[0]) if chain else None,
                "anchor": cert_fingerprint(chain[-1]) if chain else None,
                "chain_length": len(chain),
                "client_cert_name": tls["client_cert_name"],
                "server_cert": tls["server_cert"],
                "tls_version": tls["tls_version"],
                "cipher_suite": tls["cipher_suite"],
                "client_port": scope["client"][1],
            }
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


@pytest.fixture(scope="module")
def app() -> EchoApp:
    return EchoApp()


def _serve(
    pki: Pki, app: EchoApp, *, http: str = "httptools", server: Identity | None = None
) -> Any:
    identity = server or pki.server
    return serve_tls(
        app,
        cert_file=identity.cert,
        key_file=identity.key,
        ca_files=[pki.ca],
        pinned_cert_files=[pki.pinned_peer.cert],
        http=http,
    )


@pytest.fixture(scope="module")
def server(pki: Pki, app: EchoApp) -> Iterator[RunningServer]:
    with _serve(pki, app) as running:
        yield running


def _client(identity: Identity, pki: Pki, **ctx_kw: Any) -> httpx.Client:
    ctx = client_context(identity.cert, identity.key, ca_files=[pki.ca], **ctx_kw)
    return httpx.Client(verify=ctx, timeout=TIMEOUT)


def _ids_of(ctx: ssl.SSLContext) -> dict[str, int]:
    return {c["name"]: c["id"] & 0xFFFF for c in ctx.get_ciphers()}


# --- who gets in -----------------------------------------------------------------------


@network
def test_ca_issued_client_is_identified_on_every_request_of_a_keepalive_connection(
    pki: Pki, app: EchoApp, server: RunningServer
) -> None:
    client_fp = cert_fingerprint(pki.client.certificate)
    ca_fp = cert_fingerprint(x509.load_pem_x509_certificate(pki.ca.read_bytes()))
    with _client(pki.client, pki) as client:
        first = client.get(f"{server.url}/keepalive/1")
        second = client.get(f"{server.url}/keepalive/2")
    assert first.status_code == second.status_code == 200
    a, b = first.json(), second.json()
    assert a["tls"]
    assert b["tls"]
    assert a["fingerprint"] == b["fingerprint"] == client_fp
    assert a["node_id"] == b["node_id"] == "client-node"
    assert a["client_cert_name"] == "CN=client-node"
    assert a["client_port"] == b["client_port"]  # one connection, kept alive
    # The verified chain: client certificate first, the trusted CA last.
    assert a["chain_length"] == 2
    assert a["anchor"] == ca_fp
    assert a["server_cert"] == pki.server.cert.read_text()
    assert app.seen.count("/keepalive/1") == app.seen.count("/keepalive/2") == 1


@network
def test_client_without_certificate_is_refused(
    pki: Pki, app: EchoApp, server: RunningServer
) -> None:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    with httpx.Client(verify=ctx, timeout=TIMEOUT) as client, pytest.raises(REFUSED):
        client.get(f"{server.url}/no-cert")
    assert "/no-cert" not in app.seen


@network
def test_same_node_id_from_untrusted_ca_is_refused(
    pki: Pki, app: EchoApp, server: RunningServer
) -> None:
    with _client(pki.rogue_client, pki) as client, pytest.raises(REFUSED):
        client.get(f"{server.url}/rogue")
    assert "/rogue" not in app.seen


@network
def test_expired_certificate_is_refused(pki: Pki, app: EchoApp, server: RunningServer) -> None:
    with _client(pki.expired_client, pki) as client, pytest.raises(REFUSED):
        client.get(f"{server.url}/expired")
    assert "/expired" not in app.seen


@network
def test_pinned_self_signed_peer_is_accepted(pki: Pki, server: RunningServer) -> None:
    with _client(pki.pinned_peer, pki) as client:
        response = client.get(f"{server.url}/pinned")
    assert response.status_code == 200
    body = response.json()
    assert body["fingerprint"] == cert_fingerprint(pki.pinned_peer.certificate)
    assert body["node_id"] == "pinned-peer"
    assert body["chain_length"] == 1  # the pinned certificate is its own anchor


@network
def test_unpinned_self_signed_peer_with_the_same_name_is_refused(
    pki: Pki, app: EchoApp, server: RunningServer
) -> None:
    with _client(pki.unpinned_peer, pki) as client, pytest.raises(REFUSED):
        client.get(f"{server.url}/unpinned")
    assert "/unpinned" not in app.seen


@network
def test_certificate_minted_with_a_pinned_peers_key_is_refused(
    pki: Pki, app: EchoApp, server: RunningServer
) -> None:
    # Pinning a peer trusts that one certificate, not whatever its key signs.
    with _client(pki.minted_by_pinned, pki) as client, pytest.raises(REFUSED):
        client.get(f"{server.url}/minted")
    assert "/minted" not in app.seen


# --- what the app is told about the connection ----------------------------------------------


@network
def test_tls13_connection_reports_version_and_cipher_suite(pki: Pki, server: RunningServer) -> None:
    ctx = client_context(pki.client.cert, pki.client.key, ca_files=[pki.ca])
    with httpx.Client(verify=ctx, timeout=TIMEOUT) as client:
        response = client.get(f"{server.url}/tls13")
        ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
    body = response.json()
    assert ssl_object.version() == "TLSv1.3"
    assert body["tls_version"] == 0x0304
    assert body["cipher_suite"] == _ids_of(ctx)[ssl_object.cipher()[0]]
    assert body["cipher_suite"] in {0x1301, 0x1302, 0x1303}


@network
def test_tls12_client_is_accepted_and_reported(pki: Pki, server: RunningServer) -> None:
    ctx = client_context(pki.client.cert, pki.client.key, ca_files=[pki.ca])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with httpx.Client(verify=ctx, timeout=TIMEOUT) as client:
        response = client.get(f"{server.url}/tls12")
        ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
    body = response.json()
    assert body["tls_version"] == 0x0303
    assert body["cipher_suite"] == _ids_of(ctx)[ssl_object.cipher()[0]]
    assert body["fingerprint"] == cert_fingerprint(pki.client.certificate)


def _legacy_client(pki: Pki, version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client pinned to one TLS version, with every legacy algorithm allowed."""
    ctx = client_context(pki.client.cert, pki.client.key, ca_files=[pki.ca])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1_1 is deprecated: the point
        ctx.minimum_version = version
        ctx.maximum_version = version
    # TLS 1.1 signs with SHA-1, which OpenSSL 3 allows only at security level 0.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def _handshake(ctx: ssl.SSLContext, port: int) -> str | None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.version()


@contextlib.contextmanager
def _one_handshake_server(ctx: ssl.SSLContext) -> Iterator[int]:
    """A blocking ``ssl`` server for one connection: unlike asyncio, it sends its alert."""
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def accept_one() -> None:
            conn, _ = listener.accept()
            with (
                conn,
                contextlib.suppress(ssl.SSLError, OSError),
                ctx.wrap_socket(conn, server_side=True) as tls,
            ):
                tls.recv(1)

        thread = threading.Thread(target=accept_one, daemon=True)
        thread.start()
        yield listener.getsockname()[1]
        thread.join(5)


@pytest.fixture(scope="module")
def tls11_possible(pki: Pki) -> None:
    """Skip unless the local OpenSSL can complete a TLS 1.1 handshake at all."""
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        permissive.minimum_version = ssl.TLSVersion.TLSv1_1
    permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
    permissive.load_cert_chain(pki.server.cert, pki.server.key)
    with _one_handshake_server(permissive) as port:
        try:
            version = _handshake(_legacy_client(pki, ssl.TLSVersion.TLSv1_1), port)
        except ssl.SSLError as exc:
            pytest.skip(f"the local OpenSSL cannot speak TLS 1.1: {exc}")
    assert version == "TLSv1.1"


@network
@pytest.mark.usefixtures("tls11_possible")
def test_tls11_client_is_refused_by_uvicorn(pki: Pki, server: RunningServer) -> None:
    # asyncio and uvloop drop the connection without sending the TLS alert, so
    # the client sees EOF, not the reason; the same client pinned to TLS 1.2
    # gets in. The reason (the version floor, not only the AEAD-only cipher
    # list, which a TLS 1.1 client cannot meet either) is pinned down by
    # test_server_context_answers_tls11_with_protocol_version_alert, and
    # test_uvicorn_config_uses_our_context_and_protocol shows uvicorn uses it.
    with pytest.raises(ssl.SSLError):
        _handshake(_legacy_client(pki, ssl.TLSVersion.TLSv1_1), server.port)
    assert _handshake(_legacy_client(pki, ssl.TLSVersion.TLSv1_2), server.port) == "TLSv1.2"


@network
@pytest.mark.usefixtures("tls11_possible")
def test_server_context_answers_tls11_with_protocol_version_alert(pki: Pki) -> None:
    ctx = server_context(pki.server.cert, pki.server.key, ca_files=[pki.ca])
    with _one_handshake_server(ctx) as port, pytest.raises(ssl.SSLError) as refused:
        _handshake(_legacy_client(pki, ssl.TLSVersion.TLSv1_1), port)
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"


@network
@pytest.mark.parametrize("http", sorted(TLS_PROTOCOLS))
def test_both_uvicorn_protocols_pass_the_client_certificate(pki: Pki, http: str) -> None:
    app = EchoApp()
    with _serve(pki, app, http=http) as running, _client(pki.client, pki) as client:
        response = client.get(f"{running.url}/{http}")
    assert response.json()["fingerprint"] == cert_fingerprint(pki.client.certificate)


# --- the client's side: the server must prove who it is ---------------------------------------


@network
def test_client_reaches_a_peer_by_ip_and_by_dns_name(pki: Pki, server: RunningServer) -> None:
    with _client(pki.client, pki) as client:
        by_ip = client.get(f"https://127.0.0.1:{server.port}/by-ip")
        by_name = client.get(f"https://localhost:{server.port}/by-name")
    assert by_ip.status_code == by_name.status_code == 200


@network
def test_client_refuses_a_server_whose_certificate_does_not_name_the_address(
    pki: Pki,
) -> None:
    app = EchoApp()
    with _serve(pki, app, server=pki.server_without_ip_san) as running:
        with _client(pki.client, pki) as client, pytest.raises(httpx.ConnectError):
            client.get(f"https://127.0.0.1:{running.port}/wrong-name")
        with _client(pki.client, pki) as client:
            assert client.get(f"https://localhost:{running.port}/right-name").status_code == 200
    assert app.seen == ["/right-name"]


@network
def test_client_refuses_a_server_from_an_untrusted_ca(pki: Pki, server: RunningServer) -> None:
    ctx = client_context(pki.client.cert, pki.client.key, ca_files=[pki.rogue_ca])
    with httpx.Client(verify=ctx, timeout=TIMEOUT) as client, pytest.raises(httpx.ConnectError):
        client.get(f"{server.url}/untrusted-server")


# --- configuration fails closed (no network) ------------------------------------------------


def test_no_trust_anchor_is_a_config_error(pki: Pki) -> None:
    with pytest.raises(ConfigError):
        server_context(pki.server.cert, pki.server.key)
    with pytest.raises(ConfigError):
        client_context(pki.client.cert, pki.client.key)


def test_pinning_a_ca_is_a_config_error(pki: Pki) -> None:
    with pytest.raises(ConfigError):
        server_context(pki.server.cert, pki.server.key, pinned_cert_files=[pki.ca])


def test_pinning_a_ca_issued_leaf_is_a_config_error(pki: Pki) -> None:
    # OpenSSL would silently never accept it; say so at startup instead.
    with pytest.raises(ConfigError):
        server_context(pki.server.cert, pki.server.key, pinned_cert_files=[pki.client.cert])


def test_listing_a_leaf_as_a_ca_is_a_config_error(pki: Pki) -> None:
    with pytest.raises(ConfigError):
        server_context(pki.server.cert, pki.server.key, ca_files=[pki.pinned_peer.cert])


def test_key_that_does_not_match_the_certificate_is_a_config_error(pki: Pki) -> None:
    with pytest.raises(ConfigError):
        server_context(pki.server.cert, pki.client.key, ca_files=[pki.ca])


def test_missing_files_are_config_errors(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError):
        server_context(missing, pki.server.key, ca_files=[pki.ca])
    with pytest.raises(ConfigError):
        server_context(pki.server.cert, missing, ca_files=[pki.ca])
    with pytest.raises(ConfigError):
        server_context(pki.server.cert, pki.server.key, ca_files=[missing])
    with pytest.raises(ConfigError):
        uvicorn_ssl_kwargs(pki.server.cert, pki.server.key, pinned_cert_files=[missing])


def test_contexts_refuse_anything_below_tls12(pki: Pki) -> None:
    for ctx in (
        server_context(pki.server.cert, pki.server.key, ca_files=[pki.ca]),
        client_context(pki.client.cert, pki.client.key, ca_files=[pki.ca]),
    ):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        assert ctx.verify_mode == ssl.CERT_REQUIRED


def test_uvicorn_config_uses_our_context_and_protocol(pki: Pki) -> None:
    config = make_uvicorn_config(
        EchoApp(),
        host="127.0.0.1",
        port=0,
        cert_file=pki.server.cert,
        key_file=pki.server.key,
        ca_files=[pki.ca],
    )
    config.load()
    # http="auto" is uvicorn's own choice (httptools here), with the TLS extension added.
    assert issubclass(config.http_protocol_class, AutoHTTPProtocol)
    assert config.http_protocol_class in TLS_PROTOCOLS.values()
    assert config.ssl is not None
    assert config.ssl.minimum_version == ssl.TLSVersion.TLSv1_2
    assert config.ssl.verify_mode == ssl.CERT_REQUIRED


def test_uvicorn_config_refuses_ssl_overrides(pki: Pki) -> None:
    with pytest.raises(ValueError, match="ssl_ca_certs"):  # ValueError is too broad alone
        make_uvicorn_config(
            EchoApp(),
            host="127.0.0.1",
            port=0,
            cert_file=pki.server.cert,
            key_file=pki.server.key,
            ca_files=[pki.ca],
            ssl_ca_certs=str(pki.rogue_ca),
        )
