"""Who is who: attacks on a real `hashfed serve` over mutual TLS, each named after what it stops.

The node trusts two CAs: its own (``hashfed ca init``) and a second one
listed in ``tls_ca_files``. Principals are bound to the CA that issued their
certificate and to one key; a CRL revokes certificates; a removed principal's
key never comes back; an expired certificate is refused even on a resumed
TLS 1.2 session; API tokens are held to their scopes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from _nodes import Identity, NodeProcess, free_port

from crypto.pki import (
    PrivateKey,
    create_ca,
    issue_certificate,
    load_certificate,
    load_private_key,
    save_certificate,
)
from crypto.pki import save_private_key as save_tls_key

pytestmark = pytest.mark.network

OWNER = "au-argos"
PRIVATE_EXPORT = f"/api/v1/lists/{OWNER}/secret/export"
MISS = "/api/v1/match/md5/" + "0" * 32


@dataclass
class CA:
    key: PrivateKey
    cert_file: Path

    def issue(self, folder: Path, name: str, **kw: object) -> Identity:
        key, cert = issue_certificate(self.key, load_certificate(self.cert_file), name, **kw)  # type: ignore[arg-type]
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{name}-{cert.serial_number:x}"[:40]
        save_tls_key(key, folder / f"{stem}.key")
        save_certificate(cert, folder / f"{stem}.crt")
        return Identity(name, folder / f"{stem}.crt", folder / f"{stem}.key")


@dataclass
class World:
    node: NodeProcess
    ca1: CA  # the node's own CA
    ca2: CA  # a second CA the node also trusts
    ids: Path
    ops: Identity  # an administrator, CA-issued by ca1
    peer: Identity  # a peer registered by name, bound to ca1


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("identity")
    ca2_key, ca2_cert = create_ca("second federation CA")
    save_certificate(ca2_cert, base / "ca2.crt")
    node = NodeProcess(
        OWNER, base / OWNER, free_port(), env={"HASHFED_TLS_CLIENT_AUTH": "optional"}
    ).init()
    toml = node.data / "node.toml"
    toml.write_text(
        toml.read_text().replace("tls_ca_files = []", f'tls_ca_files = ["{base / "ca2.crt"}"]')
    )
    node.cli("ca", "init")
    ca1 = CA(load_private_key(node.data / "ca" / "ca.key"), node.data / "ca" / "ca.crt")
    ids = base / "ids"
    ops = ca1.issue(ids, "ops")
    node.cli("principal", "add", "ops", "--role", "admin", "--cert", str(ops.cert))
    node.cli(
        "principal",
        "add",
        "be-fccu",
        "--role",
        "peer",
        "--labels",
        "baseline",
        "--ca",
        str(ca1.cert_file),
    )
    node.start()
    with node.client() as c:
        for name, label in (("secret", "private"), ("base", "baseline")):
            assert (
                c.post(
                    "/api/v1/lists", json={"name": f"{OWNER}/{name}", "label": label}
                ).status_code
                == 201
            )
            hashes = [{"type": "md5", "value": f"{i:032x}", "category": "A1"} for i in range(1, 4)]
            assert (
                c.post(f"/api/v1/lists/{OWNER}/{name}/hashes", json={"hashes": hashes}).status_code
                == 200
            )
            assert c.post(f"/api/v1/lists/{OWNER}/{name}/publish").status_code == 200
    try:
        yield World(node, ca1, CA(ca2_key, base / "ca2.crt"), ids, ops, ca1.issue(ids, "be-fccu"))
    finally:
        node.stop()


def token_client(node: NodeProcess, token: str) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(node.cert))
    return httpx.Client(
        base_url=node.url, verify=ctx, timeout=30, headers={"Authorization": f"Bearer {token}"}
    )


# --- 1. a second trusted CA, or a new key, cannot take over a principal ---------------------------


def test_the_registered_admin_and_peer_are_accepted(world: World) -> None:
    with world.node.client(world.ops) as c:
        assert c.get(PRIVATE_EXPORT).status_code == 200
    with world.node.client(world.peer) as c:
        assert c.get("/federation/v1/lists").status_code == 200


def test_second_ca_cannot_impersonate_admin(world: World) -> None:
    forged = world.ca2.issue(world.ids / "ca2", "ops")
    with world.node.client(forged) as c:
        assert c.get("/healthz").status_code == 200  # the TLS layer trusts ca2
        r = c.get(PRIVATE_EXPORT)
    assert r.status_code == 403


def test_second_ca_cannot_impersonate_a_peer(world: World) -> None:
    forged = world.ca2.issue(world.ids / "ca2", "be-fccu")
    with world.node.client(forged) as c:
        assert c.get("/federation/v1/lists").status_code == 403


def test_same_ca_new_key_cannot_take_over_a_bound_admin(world: World) -> None:
    # ops registered with its certificate: another key for the same name is not ops.
    other = world.ca1.issue(world.ids / "ca1-other", "ops")
    with world.node.client(other) as c:
        assert c.get(PRIVATE_EXPORT).status_code == 403


def test_same_ca_new_key_cannot_take_over_a_peer_bound_at_first_use(world: World) -> None:
    with world.node.client(world.peer) as c:
        assert c.get("/federation/v1/lists").status_code == 200  # binds the key
    other = world.ca1.issue(world.ids / "ca1-other", "be-fccu")
    with world.node.client(other) as c:
        assert c.get("/federation/v1/lists").status_code == 403


def test_name_only_principal_with_two_trusted_cas_accepts_no_certificate(world: World) -> None:
    # Neither CA was named, so neither may vouch for the name.
    p = world.node.cli("principal", "add", "nl-politie", "--role", "peer")
    assert "--ca" in p.stdout
    for ca in (world.ca1, world.ca2):
        with world.node.client(ca.issue(world.ids / "nl", "nl-politie")) as c:
            assert c.get("/federation/v1/lists").status_code == 403


def test_registering_a_certificate_from_an_untrusted_ca_is_refused(
    world: World, tmp_path: Path
) -> None:
    rogue_key, rogue_cert = create_ca("rogue CA")
    save_certificate(rogue_cert, tmp_path / "rogue.crt")
    ident = CA(rogue_key, tmp_path / "rogue.crt").issue(tmp_path, "globex")
    p = world.node.cli(
        "principal", "add", "globex", "--role", "partner", "--cert", str(ident.cert), check=False
    )
    assert p.returncode == 2


# --- 3. revocation --------------------------------------------------------------------------------


def test_revoked_certificate_is_refused(world: World) -> None:
    ident = world.ca1.issue(world.ids / "revoke", "initech")
    world.node.cli(
        "principal",
        "add",
        "initech",
        "--role",
        "partner",
        "--labels",
        "baseline",
        "--cert",
        str(ident.cert),
    )
    with world.node.client(ident) as c:
        assert c.get(MISS).status_code == 200
        world.node.cli("ca", "revoke", str(ident.cert))
        time.sleep(1.5)  # the node looks at its trust files once a second
        assert c.get(MISS).status_code == 403


def test_readded_principal_refuses_its_old_certificate(world: World) -> None:
    old = world.ca1.issue(world.ids / "readd", "umbrella")
    add = ("principal", "add", "umbrella", "--role", "partner", "--labels", "baseline")
    world.node.cli(*add, "--ca", str(world.ca1.cert_file))
    with world.node.client(old) as c:
        assert c.get(MISS).status_code == 200  # binds the old key
    world.node.cli("principal", "rm", "umbrella")
    world.node.cli(*add, "--ca", str(world.ca1.cert_file))
    with world.node.client(old) as c:
        assert c.get(MISS).status_code == 403
    new = world.ca1.issue(world.ids / "readd-new", "umbrella")
    with world.node.client(new) as c:
        assert c.get(MISS).status_code == 200


def test_readded_principal_cannot_be_registered_with_its_revoked_key(world: World) -> None:
    old = world.ca1.issue(world.ids / "readd2", "hooli")
    add = ("principal", "add", "hooli", "--role", "partner", "--labels", "baseline")
    world.node.cli(*add, "--cert", str(old.cert))
    world.node.cli("principal", "rm", "hooli")
    assert world.node.cli(*add, "--cert", str(old.cert), check=False).returncode == 2


# --- 4. an expired certificate on a resumed TLS 1.2 session -------------------------------------


def _tls12_context(node: NodeProcess, ident: Identity) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=str(node.cert))
    ctx.load_cert_chain(str(ident.cert), str(ident.key))
    return ctx


def _tls12_get(
    node: NodeProcess, ctx: ssl.SSLContext, session: ssl.SSLSession | None
) -> tuple[int, ssl.SSLSession | None, bool]:
    raw = socket.create_connection(("127.0.0.1", node.port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls:
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
        conn.sock = tls
        conn.request("GET", MISS)
        response = conn.getresponse()
        response.read()
        got = response.status, tls.session, tls.session_reused
        with contextlib.suppress(OSError):
            tls.unwrap()  # a clean close keeps the session resumable
        return got


def test_expired_certificate_cannot_resume_a_tls12_session(world: World) -> None:
    now = dt.datetime.now(dt.UTC)
    expires = now + dt.timedelta(seconds=8)
    ident = world.ca1.issue(
        world.ids / "short",
        "shortlived",
        not_before=now - dt.timedelta(minutes=1),
        not_after=expires,
    )
    world.node.cli(
        "principal", "add", "shortlived", "--role", "partner", "--labels", "baseline",
        "--cert", str(ident.cert),
    )  # fmt: skip
    ctx = _tls12_context(world.node, ident)
    session = None
    for _ in range(5):  # until the server resumes a session of ours
        status, session, reused = _tls12_get(world.node, ctx, session)
        assert status == 200
        if reused:
            break
    assert reused, "the server never resumed a TLS 1.2 session; nothing to test"
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds() + 1))
    status, _, reused = _tls12_get(world.node, ctx, session)
    assert reused  # the handshake was skipped: only the per-request check can refuse it
    assert status == 401


# --- 5. token scopes ------------------------------------------------------------------------------


def test_feeds_token_cannot_read_status_export_or_write(world: World) -> None:
    world.node.cli("principal", "add", "robot", "--role", "admin")
    token = (
        world.node.cli(
            "token", "create", "robot", "--scopes", "feeds", "--ttl-days", "1", "--allow-admin"
        )
        .stdout.strip()
        .split()[-1]
    )
    with token_client(world.node, token) as c:
        assert c.get("/feeds/v1/baseline").status_code == 200
        assert c.get("/api/v1/status").status_code == 403
        assert c.get(PRIVATE_EXPORT).status_code == 403
        assert (
            c.post("/api/v1/lists", json={"name": f"{OWNER}/x", "label": "private"}).status_code
            == 403
        )
        r = c.post(
            f"/api/v1/lists/{OWNER}/secret/hashes",
            json={"hashes": [{"type": "md5", "value": "f" * 32}]},
        )
        assert r.status_code == 403
        assert c.get(MISS).status_code == 403  # no "match" scope either
        assert c.get("/federation/v1/lists").status_code == 403


def test_a_scope_grants_its_route_and_no_other(world: World) -> None:
    token = (
        world.node.cli("token", "create", "robot", "--scopes", "lists:read", "--allow-admin")
        .stdout.strip()
        .split()[-1]
    )
    with token_client(world.node, token) as c:
        assert c.get("/api/v1/lists").status_code == 200
        assert (
            c.post("/api/v1/lists", json={"name": f"{OWNER}/y", "label": "private"}).status_code
            == 403
        )


def test_bogus_scope_is_refused_at_token_create(world: World) -> None:
    world.node.cli("principal", "add", "wayne", "--role", "partner", "--labels", "baseline")
    p = world.node.cli("token", "create", "wayne", "--scopes", "bogus,../../x", check=False)
    assert p.returncode == 2
    assert "hf_" not in p.stdout


def test_token_without_expiry_by_ttl_zero_is_refused(world: World) -> None:
    p = world.node.cli("token", "create", "wayne", "--ttl-days", "0", check=False)
    assert p.returncode == 2
    assert "hf_" not in p.stdout


def test_admin_token_needs_allow_admin(world: World) -> None:
    p = world.node.cli("token", "create", "robot", check=False)
    assert p.returncode == 2
    assert "--allow-admin" in p.stderr
