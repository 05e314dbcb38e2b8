"""Signing partners' certificate requests made by the real openssl command."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from crypto.csr import load_csr, requested_names, sign_csr
from crypto.errors import InputError
from crypto.pki import create_ca, node_id_from_certificate

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def openssl_csr(tmp_path: Path, *extra: str, newkey: tuple[str, ...] = ()) -> bytes:
    key_args = newkey or ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")
    out = tmp_path / "req.csr"
    subprocess.run(
        ["openssl", "req", "-new", *key_args, "-nodes", "-keyout", str(tmp_path / "k.pem"),
         "-out", str(out), "-subj", "/CN=acme", *extra],
        check=True, capture_output=True,
    )  # fmt: skip
    return out.read_bytes()


def test_an_openssl_request_is_signed_as_an_end_entity_for_its_key(tmp_path: Path) -> None:
    ca_key, ca_cert = create_ca("test CA")
    raw = openssl_csr(tmp_path, "-addext", "subjectAltName=DNS:acme.example,IP:127.0.0.1")
    csr = load_csr(raw, where="req.csr")
    dns, ips = requested_names(csr)
    assert (dns, ips) == (["acme.example"], ["127.0.0.1"])
    cert = sign_csr(ca_key, ca_cert, csr, "acme", dns_names=dns, ip_addresses=ips)
    assert cert.public_key() == csr.public_key()
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert node_id_from_certificate(cert) == "acme"
    assert cert.issuer == ca_cert.subject
    ca_pub = ca_cert.public_key()
    assert isinstance(ca_pub, ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(ca_cert)
    # openssl agrees: the certificate chains to the CA
    (tmp_path / "ca.pem").write_bytes(ca_cert.public_bytes(_pem()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(_pem()))
    ok = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "c.pem")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr


def _pem():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.PEM


def test_request_for_a_ca_certificate_is_refused(tmp_path: Path) -> None:
    raw = openssl_csr(tmp_path, "-addext", "basicConstraints=critical,CA:TRUE")
    with pytest.raises(InputError):
        load_csr(raw, where="req.csr")


def test_tampered_request_is_refused(tmp_path: Path) -> None:
    csr = x509.load_pem_x509_csr(openssl_csr(tmp_path))
    from cryptography.hazmat.primitives.serialization import Encoding

    der = bytearray(csr.public_bytes(Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    with pytest.raises(InputError):
        load_csr(bytes(der), where="req.csr")


def test_weak_rsa_request_is_refused(tmp_path: Path) -> None:
    raw = openssl_csr(tmp_path, newkey=("-newkey", "rsa:1024"))
    with pytest.raises(InputError):
        load_csr(raw, where="req.csr")


def test_rsa_2048_request_is_accepted(tmp_path: Path) -> None:
    ca_key, ca_cert = create_ca("test CA")
    csr = load_csr(openssl_csr(tmp_path, newkey=("-newkey", "rsa:2048")), where="req.csr")
    assert sign_csr(ca_key, ca_cert, csr, "acme").public_key() == csr.public_key()


@pytest.mark.parametrize("junk", [b"", b"hello", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"])
def test_junk_is_not_a_request(junk: bytes) -> None:
    with pytest.raises(InputError):
        load_csr(junk, where="req.csr")
