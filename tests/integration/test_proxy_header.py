"""The TLS-terminating proxy's certificate header, attacked on a real `hashfed serve`.

The node listens with ``tls_client_auth = "optional"`` behind a proxy that
forwards the client certificate in ``X-Client-Cert``. The header is believed
only on a connection authenticated with the proxy's pinned certificate, and
only for a forwarded certificate that chains to a trusted CA or is pinned.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from _nodes import Identity, NodeProcess, free_port, make_identity

from crypto.pki import (
    create_ca,
    issue_certificate,
    load_certificate,
    load_private_key,
    save_certificate,
)
from crypto.pki import save_private_key as save_tls_key

pytestmark = pytest.mark.network

OWNER = "au-argos"
HEADER = "X-Client-Cert"
EXPORT = f"/api/v1/lists/{OWNER}/secret/export"
MISS = "/api/v1/match/md5/" + "0" * 32


@dataclass
class World:
    node: NodeProcess
    proxy: Identity
    acme: Identity  # a pinned partner
    ops: Path  # an administrator's CA-issued certificate (PEM file)
    fake_ops: Path  # a certificate for "ops" from a CA nobody trusts


def _issue(key: object, cert_file: Path, name: str, folder: Path) -> Path:
    k, c = issue_certificate(key, load_certificate(cert_file), name)  # type: ignore[arg-type]
    save_tls_key(k, folder / f"{name}.key")
    save_certificate(c, folder / f"{name}.crt")
    return folder / f"{name}.crt"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("proxy")
    proxy = make_identity(base / "ids", "proxy")
    acme = make_identity(base / "ids", "acme")
    node = NodeProcess(
        OWNER,
        base / OWNER,
        free_port(),
        env={
            "HASHFED_TLS_CLIENT_AUTH": "optional",
            "HASHFED_TRUSTED_PROXY_CERT_HEADER": HEADER,
            "HASHFED_TRUSTED_PROXY_FINGERPRINTS": json.dumps([proxy.fingerprint]),
            "HASHFED_TLS_PINNED_CERT_FILES": json.dumps([str(proxy.cert)]),
        },
    ).init()
    node.cli("ca", "init")
    ca_file = node.data / "ca" / "ca.crt"
    ops = _issue(load_private_key(node.data / "ca" / "ca.key"), ca_file, "ops", base / "ops")
    fake_key, fake_ca = create_ca("self-made CA")
    save_certificate(fake_ca, base / "fake-ca.crt")
    (base / "fake").mkdir()
    fake_ops = _issue(fake_key, base / "fake-ca.crt", "ops", base / "fake")
    node.cli("principal", "add", "ops", "--role", "admin", "--ca", str(ca_file))
    node.cli(
        "principal",
        "add",
        "acme",
        "--role",
        "partner",
        "--labels",
        "baseline",
        "--cert",
        str(acme.cert),
    )
    node.start()
    with node.client() as c:
        assert (
            c.post(
                "/api/v1/lists", json={"name": f"{OWNER}/secret", "label": "private"}
            ).status_code
            == 201
        )
    try:
        yield World(node, proxy, acme, ops, fake_ops)
    finally:
        node.stop()


def forwarded(pem_file: Path) -> dict[str, str]:
    return {HEADER: quote(pem_file.read_text())}


def no_cert_client(node: NodeProcess) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(node.cert))
    return httpx.Client(base_url=node.url, verify=ctx, timeout=30)


def test_forwarded_certificates_from_the_proxy_are_accepted(world: World) -> None:
    with world.node.client(world.proxy) as c:
        assert c.get(MISS, headers=forwarded(world.acme.cert)).status_code == 200
        assert c.get(EXPORT, headers=forwarded(world.ops)).status_code == 200


def test_header_without_a_client_certificate_cannot_claim_the_node_certificate(
    world: World,
) -> None:
    with no_cert_client(world.node) as c:
        r = c.get("/api/v1/status", headers=forwarded(world.node.cert))
    assert r.status_code == 401


def test_header_without_a_client_certificate_cannot_claim_an_admin(world: World) -> None:
    with no_cert_client(world.node) as c:
        assert c.get(EXPORT, headers=forwarded(world.ops)).status_code == 401


def test_header_from_a_caller_that_is_not_the_proxy_is_refused(world: World) -> None:
    with world.node.client(world.acme) as c:
        assert c.get(EXPORT, headers=forwarded(world.ops)).status_code == 401


def test_proxy_forwarding_a_self_made_admin_certificate_is_refused(world: World) -> None:
    with world.node.client(world.proxy) as c:
        assert c.get(EXPORT, headers=forwarded(world.fake_ops)).status_code == 401
    with no_cert_client(world.node) as c:
        assert c.get(EXPORT, headers=forwarded(world.fake_ops)).status_code == 401


def test_proxy_forwarding_the_node_certificate_is_not_the_operator(world: World) -> None:
    with world.node.client(world.proxy) as c:
        # Public, and proof of nothing without its key: neither pinned for callers nor admin.
        assert c.get("/api/v1/status", headers=forwarded(world.node.cert)).status_code == 401
