"""Certificates the way partners expect, through the real ``hashfed`` command and a real node.

A partner makes its key and request with openssl; the operator signs the
request (``ca sign --csr``), registers it, and the partner's own key then
opens a mutual-TLS connection to ``hashfed serve``. A plain ``openssl req
-x509`` certificate (CA:TRUE) is refused up front; ``ca bundle`` / ``ca
trust`` move a CA to another node without editing node.toml by hand.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _nodes import NodeProcess, free_port, run_cli

from crypto.tls import client_context

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    base = tmp_path_factory.mktemp("certs")
    n = NodeProcess("au-argos", base / "data", free_port())
    n.init()
    n.cli("ca", "init")
    n.log = base / "serve.log"
    n.start(timeout=180)  # a loaded machine starts slowly
    try:
        yield n
    finally:
        n.stop()


def test_partner_keeps_its_key_csr_signed_and_accepted_by_serve(
    node: NodeProcess, tmp_path: Path
) -> None:
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "acme.key", "-out", "acme.csr", "-subj", "/CN=acme",
            cwd=tmp_path)  # fmt: skip
    key_before = (tmp_path / "acme.key").read_bytes()
    node.cli("ca", "sign", "--csr", str(tmp_path / "acme.csr"), "--out", str(tmp_path / "acme.crt"))
    node.cli("principal", "add", "acme", "--role", "partner", "--labels", "baseline",
             "--cert", str(tmp_path / "acme.crt"))  # fmt: skip
    assert (tmp_path / "acme.key").read_bytes() == key_before  # never replaced, never read
    ctx = client_context(
        tmp_path / "acme.crt", tmp_path / "acme.key", pinned_cert_files=[node.cert]
    )
    with httpx.Client(base_url=node.url, verify=ctx, timeout=30) as c:
        r = c.get(f"/api/v1/match/sha256/{'0' * 64}")
    assert r.status_code == 200, r.text
    # the signing is audited, with no key material
    audit = node.cli("audit", "ls", "--action", "ca.*", "--json").stdout
    assert '"ca.sign"' in audit
    assert "PRIVATE" not in audit


def test_ca_request_is_refused_by_ca_sign(node: NodeProcess, tmp_path: Path) -> None:
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "k.pem", "-out", "evil.csr", "-subj", "/CN=evil",
            "-addext", "basicConstraints=critical,CA:TRUE", cwd=tmp_path)  # fmt: skip
    r = node.cli("ca", "sign", "--csr", str(tmp_path / "evil.csr"), "--out",
                 str(tmp_path / "evil.crt"), check=False)  # fmt: skip
    assert r.returncode == 2
    assert not (tmp_path / "evil.crt").exists()
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_principal_add_refuses_a_plain_openssl_x509_certificate_with_the_fix(
    node: NodeProcess, tmp_path: Path
) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "k.pem", "-out", "plain.crt", "-subj", "/CN=plain",
            cwd=tmp_path)  # fmt: skip
    r = node.cli("principal", "add", "plain", "--role", "partner",
                 "--cert", str(tmp_path / "plain.crt"), check=False)  # fmt: skip
    assert r.returncode == 2
    assert "hashfed ca sign --csr" in r.stderr
    assert "CA:FALSE" in r.stderr
    assert "plain" not in node.cli("principal", "ls", "--json").stdout
    assert not (node.data / "tls" / "pinned" / "plain.crt").exists()


def test_ca_bundle_then_ca_trust_on_another_node(node: NodeProcess, tmp_path: Path) -> None:
    bundle = tmp_path / "federation-ca.crt"
    node.cli("ca", "bundle", "--out", str(bundle))
    other = tmp_path / "other"
    run_cli("init", "--node-id", "be-fccu", data=other)
    node.cli("ca", "issue", "nl-nca", "--out", str(tmp_path / "nl"))
    cert = str(tmp_path / "nl" / "node.crt")
    # before: be-fccu does not know the CA that issued nl-nca's certificate
    before = run_cli("principal", "add", "nl-nca", "--role", "peer", "--cert", cert,
                     data=other, check=False)  # fmt: skip
    assert before.returncode == 2
    run_cli("ca", "trust", str(bundle), data=other)
    files = tomllib.loads((other / "node.toml").read_text())["tls_ca_files"]
    assert len(files) == 1
    assert (other / files[0]).read_bytes() == bundle.read_bytes()
    run_cli("principal", "add", "nl-nca", "--role", "peer", "--cert", cert, data=other)
    again = run_cli("ca", "trust", str(bundle), data=other)
    assert "already trusted" in again.stdout
    # a node certificate is not a CA: refused, node.toml unchanged
    r = run_cli("ca", "trust", cert, data=other, check=False)
    assert r.returncode == 2
    assert tomllib.loads((other / "node.toml").read_text())["tls_ca_files"] == files


def test_a_partner_re_registered_with_a_new_certificate_is_accepted_live(
    node: NodeProcess, tmp_path: Path
) -> None:
    from _nodes import make_identity

    old = make_identity(tmp_path / "old", "rotating")
    new = make_identity(tmp_path / "new", "rotating")
    node.cli("principal", "add", "rotating", "--role", "partner", "--cert", str(old.cert))
    node.cli("principal", "rm", "rotating")
    node.cli("principal", "add", "rotating", "--role", "partner", "--cert", str(new.cert))
    ctx = client_context(new.cert, new.key, pinned_cert_files=[node.cert])
    deadline = time.monotonic() + 60
    status = 0
    while time.monotonic() < deadline and status != 200:
        try:
            with httpx.Client(base_url=node.url, verify=ctx, timeout=10) as c:
                status = c.get(f"/api/v1/match/sha256/{'0' * 64}").status_code
        except httpx.TransportError:
            time.sleep(0.05)
    assert status == 200
