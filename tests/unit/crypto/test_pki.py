"""crypto.pki: certificate profiles, identities, fingerprints and PEM files."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import stat
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crypto.errors import ConfigError
from crypto.pki import (
    PrivateKey,
    cert_fingerprint,
    create_ca,
    create_self_signed,
    issue_certificate,
    load_certificate,
    load_certificates,
    load_private_key,
    node_id_from_certificate,
    node_uri,
    save_certificate,
    save_private_key,
)

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def ca() -> tuple[PrivateKey, x509.Certificate]:
    return create_ca("hashfed unit-test CA")


E = TypeVar("E", bound=x509.ExtensionType)


def _ext(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


def _cert_with(san: list[x509.GeneralName] | None, cn: str | None = "cn-node") -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
    )
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(key, hashes.SHA256())


# --- the CA ------------------------------------------------------------------------------


def test_ca_may_sign_node_certificates_but_not_delegate(
    ca: tuple[PrivateKey, x509.Certificate],
) -> None:
    key, cert = ca
    assert isinstance(key.curve, ec.SECP256R1)
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical
    assert bc.value == x509.BasicConstraints(ca=True, path_length=0)
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign
    assert ku.value.crl_sign
    assert not ku.value.digital_signature
    ski = _ext(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)


def test_ca_validity_is_the_requested_days() -> None:
    _, cert = create_ca("short-lived", days=10)
    span = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=10) <= span <= dt.timedelta(days=10, minutes=6)


# --- issued node certificates ---------------------------------------------------------------


def test_issued_certificate_serves_both_ends_of_mutual_tls(
    ca: tuple[PrivateKey, x509.Certificate],
) -> None:
    ca_key, ca_cert = ca
    key, cert = issue_certificate(ca_key, ca_cert, "node-a")
    assert isinstance(key.curve, ec.SECP256R1)
    cert.verify_directly_issued_by(ca_cert)
    assert cert.issuer == ca_cert.subject
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "node-a"
    eku = _ext(cert, x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical
    assert not bc.value.ca
    ku = _ext(cert, x509.KeyUsage).value
    assert ku.digital_signature
    assert not ku.key_cert_sign
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == _ext(ca_cert, x509.SubjectKeyIdentifier).value.digest


def test_issued_certificate_names_the_node_and_its_addresses(
    ca: tuple[PrivateKey, x509.Certificate],
) -> None:
    _, cert = issue_certificate(
        *ca, "node-a", dns_names=("localhost", "node-a.example"), ip_addresses=("127.0.0.1", "::1")
    )
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["hashfed://node/node-a"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "node-a.example"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_default_certificate_covers_localhost_and_loopback(
    ca: tuple[PrivateKey, x509.Certificate],
) -> None:
    _, cert = issue_certificate(*ca, "node-a")
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_issued_certificate_validity_is_backdated_for_clock_skew(
    ca: tuple[PrivateKey, x509.Certificate],
) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    _, cert = issue_certificate(*ca, "node-a", days=30)
    assert cert.not_valid_before_utc < before
    assert before - cert.not_valid_before_utc <= dt.timedelta(minutes=6)
    span = cert.not_valid_after_utc - before
    assert (
        dt.timedelta(days=30) - dt.timedelta(seconds=5) <= span <= dt.timedelta(days=30, seconds=5)
    )


def test_expired_certificate_can_be_made_for_tests(
    ca: tuple[PrivateKey, x509.Certificate],
) -> None:
    start, end = NOW - dt.timedelta(days=30), NOW - dt.timedelta(days=1)
    _, cert = issue_certificate(*ca, "node-a", not_before=start, not_after=end)
    assert cert.not_valid_before_utc == start.replace(microsecond=0)
    assert cert.not_valid_after_utc == end.replace(microsecond=0)
    assert cert.not_valid_after_utc < dt.datetime.now(dt.UTC)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (NOW, NOW - dt.timedelta(days=1)),  # ends before it starts
        (NOW, NOW),  # empty window
        (NOW.replace(tzinfo=None), None),  # naive: ambiguous
    ],
)
def test_bad_validity_window_is_refused(
    ca: tuple[PrivateKey, x509.Certificate], start: dt.datetime, end: dt.datetime | None
) -> None:
    with pytest.raises(ValueError, match="validity"):
        issue_certificate(*ca, "node-a", not_before=start, not_after=end)


@pytest.mark.parametrize("node_id", ["", "Node-A", "-node", "node/evil", "a" * 64, "node a"])
def test_malformed_node_id_is_refused(
    ca: tuple[PrivateKey, x509.Certificate], node_id: str
) -> None:
    with pytest.raises(ValueError, match="node id"):
        issue_certificate(*ca, node_id)


def test_malformed_ip_address_is_refused(ca: tuple[PrivateKey, x509.Certificate]) -> None:
    with pytest.raises(ValueError, match="IP"):
        issue_certificate(*ca, "node-a", ip_addresses=("localhost",))


def test_issuing_with_another_cas_key_is_refused(ca: tuple[PrivateKey, x509.Certificate]) -> None:
    other_key, _ = create_ca("other")
    with pytest.raises(ValueError, match="CA key"):
        issue_certificate(other_key, ca[1], "node-a")


# --- self-signed node certificates ------------------------------------------------------------


def test_self_signed_certificate_is_an_end_entity_that_signs_only_itself() -> None:
    key, cert = create_self_signed("node-b", ip_addresses=("10.0.0.7",))
    cert.verify_directly_issued_by(cert)
    assert cert.public_key() == key.public_key()
    assert not _ext(cert, x509.BasicConstraints).value.ca
    assert not _ext(cert, x509.KeyUsage).value.key_cert_sign
    eku = _ext(cert, x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["hashfed://node/node-b"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]


# --- identities and fingerprints --------------------------------------------------------------


def test_fingerprint_is_sha256_of_the_der_and_stable(
    ca: tuple[PrivateKey, x509.Certificate],
) -> None:
    _, cert = issue_certificate(*ca, "node-a")
    der = cert.public_bytes(serialization.Encoding.DER)
    expected = "sha256:" + hashlib.sha256(der).hexdigest()
    assert cert_fingerprint(cert) == expected
    assert cert_fingerprint(der) == expected
    reloaded = x509.load_pem_x509_certificate(cert.public_bytes(serialization.Encoding.PEM))
    assert cert_fingerprint(reloaded) == expected
    assert expected == expected.lower()
    assert len(expected) == len("sha256:") + 64


def test_fingerprints_of_two_certificates_for_one_node_differ(
    ca: tuple[PrivateKey, x509.Certificate],
) -> None:
    _, first = issue_certificate(*ca, "node-a")
    _, second = issue_certificate(*ca, "node-a")
    assert cert_fingerprint(first) != cert_fingerprint(second)


def test_node_id_comes_from_the_uri_san(ca: tuple[PrivateKey, x509.Certificate]) -> None:
    assert node_id_from_certificate(issue_certificate(*ca, "node-a")[1]) == "node-a"
    assert node_id_from_certificate(create_self_signed("node-b")[1]) == "node-b"
    assert node_uri("node-a") == "hashfed://node/node-a"


def test_uri_san_wins_over_a_different_common_name() -> None:
    cert = _cert_with([x509.UniformResourceIdentifier("hashfed://node/uri-node")], cn="cn-node")
    assert node_id_from_certificate(cert) == "uri-node"


def test_node_id_falls_back_to_the_common_name() -> None:
    assert node_id_from_certificate(_cert_with(None)) == "cn-node"
    other_uri = [x509.UniformResourceIdentifier("spiffe://example.org/x"), x509.DNSName("h")]
    assert node_id_from_certificate(_cert_with(other_uri)) == "cn-node"


def test_two_node_uris_in_one_certificate_name_no_node() -> None:
    cert = _cert_with(
        [
            x509.UniformResourceIdentifier("hashfed://node/node-a"),
            x509.UniformResourceIdentifier("hashfed://node/node-b"),
        ]
    )
    assert node_id_from_certificate(cert) is None


def test_malformed_node_uri_names_no_node_even_with_a_good_common_name() -> None:
    cert = _cert_with([x509.UniformResourceIdentifier("hashfed://node/Evil/../admin")])
    assert node_id_from_certificate(cert) is None


def test_common_name_that_is_not_a_node_id_names_no_node() -> None:
    assert node_id_from_certificate(_cert_with(None, cn="Partner Org Ltd")) is None
    assert node_id_from_certificate(_cert_with(None, cn=None)) is None


# --- PEM files -----------------------------------------------------------------------------------


def test_private_key_file_is_owner_only_and_round_trips(tmp_path: Path) -> None:
    key, _ = create_self_signed("node-a")
    path = tmp_path / "keys" / "tls.key"
    save_private_key(key, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_private_key(path).private_numbers() == key.private_numbers()
    assert not list(path.parent.glob(".*.tmp"))  # no temporary file left behind


def test_private_key_overwrite_replaces_a_world_readable_file_with_0600(tmp_path: Path) -> None:
    path = tmp_path / "tls.key"
    path.write_text("old")
    path.chmod(0o644)
    key, _ = create_self_signed("node-a")
    save_private_key(key, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_private_key(path).private_numbers() == key.private_numbers()


def test_certificate_file_round_trips(
    tmp_path: Path, ca: tuple[PrivateKey, x509.Certificate]
) -> None:
    _, cert = issue_certificate(*ca, "node-a")
    path = tmp_path / "node.crt"
    save_certificate(cert, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert load_certificate(path) == cert
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(path.read_bytes() + ca[1].public_bytes(serialization.Encoding.PEM))
    assert load_certificates(bundle) == [cert, ca[1]]
    with pytest.raises(ConfigError):
        load_certificate(bundle)  # two where one is expected


def test_missing_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_private_key(tmp_path / "missing.key")
    with pytest.raises(ConfigError):
        load_certificate(tmp_path / "missing.crt")


@pytest.mark.parametrize("content", [b"", b"not a pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_corrupt_certificate_file_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.crt"
    path.write_bytes(content)
    with pytest.raises(ConfigError):
        load_certificates(path)


@pytest.mark.parametrize("content", [b"", b"not a pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"])
def test_corrupt_private_key_file_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    with pytest.raises(ConfigError):
        load_private_key(path)


def test_encrypted_or_foreign_private_key_is_a_config_error(tmp_path: Path) -> None:
    key, _ = create_self_signed("node-a")
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    ed = tmp_path / "ed25519.key"
    ed.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    for path in (encrypted, ed):
        with pytest.raises(ConfigError):
            load_private_key(path)


def test_oversized_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "huge.crt"
    path.write_bytes(b"x" * (1024 * 1024 + 1))
    with pytest.raises(ConfigError):
        load_certificates(path)
