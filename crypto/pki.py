"""X.509 certificates for mutual TLS: a federation CA, node certificates, PEM files.

Every key is ECDSA P-256: all TLS stacks peers are likely to run accept it,
and its signatures are small. A node certificate names its node twice: in a
URI subject alternative name ``hashfed://node/<node_id>`` (what
:func:`node_id_from_certificate` reads first) and in the subject common name
(the fallback, for certificates issued by a partner's own CA).

Two ways to trust a node:

* a CA (:func:`create_ca`) issues node certificates (:func:`issue_certificate`);
  peers list the CA certificate in ``tls_ca_files``;
* a node makes its own self-signed certificate (:func:`create_self_signed`);
  peers list that certificate in ``tls_pinned_cert_files`` and, in their peer
  settings, its :func:`cert_fingerprint`.

A self-signed node certificate is an end-entity certificate (``CA:FALSE``, no
``keyCertSign``). OpenSSL 3 accepts it as its own trust anchor, including with
``VERIFY_X509_STRICT`` (checked in ``tests/integration/test_mtls_handshake.py``),
and, because it is not a CA, anything else signed with its key is refused:
pinning one peer cannot let that peer mint certificates for other names.

Only key files are I/O here. Private keys are written unencrypted, mode 0600,
atomically (temporary file in the same folder, then rename).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crypto.errors import ConfigError

__all__ = [
    "NODE_ID_RE",
    "NODE_URI_PREFIX",
    "PrivateKey",
    "cert_fingerprint",
    "create_ca",
    "create_self_signed",
    "generate_private_key",
    "issue_certificate",
    "load_certificate",
    "load_certificates",
    "load_private_key",
    "node_id_from_certificate",
    "node_uri",
    "public_key_fingerprint",
    "save_certificate",
    "save_private_key",
]

PrivateKey = ec.EllipticCurvePrivateKey

# The same shape as config.settings.NODE_ID_RE (crypto/ may not import config/):
# lowercase letters, digits and '-', at most 63 characters, so it is safe in a
# URI path, a DNS label and a common name alike.
NODE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
NODE_URI_PREFIX = "hashfed://node/"
FINGERPRINT_PREFIX = "sha256:"

# Backdate notBefore so a peer whose clock is a little behind accepts a
# certificate made a moment ago.
_CLOCK_SKEW = dt.timedelta(minutes=5)
# 825 days is the longest validity browsers accept for TLS server certificates
# (CA/Browser Forum ballot 193); nothing here needs longer.
DEFAULT_LEAF_DAYS = 825
DEFAULT_CA_DAYS = 3650
# A certificate file bigger than this is not a certificate bundle we wrote.
_MAX_PEM_BYTES = 1024 * 1024

_NODE_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
_NODE_EKU = x509.ExtendedKeyUsage(
    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
)


# --- identities -------------------------------------------------------------------


def node_uri(node_id: str) -> str:
    """The URI subject alternative name that names a node.

    Args:
        node_id: The node's identifier, as in its settings.

    Returns:
        ``hashfed://node/<node_id>``.

    Raises:
        ValueError: ``node_id`` is not lowercase letters, digits and '-', 1-63
            characters.
    """
    _check_node_id(node_id)
    return NODE_URI_PREFIX + node_id


def node_id_from_certificate(cert: x509.Certificate) -> str | None:
    """The node a certificate names, or None when it names none unambiguously.

    The URI subject alternative name ``hashfed://node/<id>`` wins. Without one,
    the subject common name is used if it has the shape of a node id (a
    partner CA's certificates may not carry our URI scheme).

    Args:
        cert: A node certificate.

    Returns:
        The node id, or None if the certificate carries two different
        ``hashfed://node/`` URIs, a malformed one, or neither such a URI nor a
        node-id-shaped common name.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    ids = {u[len(NODE_URI_PREFIX) :] for u in uris if u.startswith(NODE_URI_PREFIX)}
    if ids:
        if len(ids) != 1:
            return None  # two identities in one certificate: trust neither
        (node_id,) = ids
        return node_id if NODE_ID_RE.fullmatch(node_id) else None
    common_names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(common_names) != 1:
        return None
    value = common_names[0].value
    cn = value if isinstance(value, str) else value.decode("utf-8", "replace")
    return cn if NODE_ID_RE.fullmatch(cn) else None


def cert_fingerprint(cert_or_der: x509.Certificate | bytes) -> str:
    """The pinning fingerprint of a certificate: ``sha256:`` and lowercase hex.

    Args:
        cert_or_der: A certificate, or its DER encoding.

    Returns:
        ``"sha256:"`` followed by the 64 hex digits of SHA-256 over the DER.
    """
    der = (
        cert_or_der.public_bytes(serialization.Encoding.DER)
        if isinstance(cert_or_der, x509.Certificate)
        else bytes(cert_or_der)
    )
    return FINGERPRINT_PREFIX + hashlib.sha256(der).hexdigest()


def public_key_fingerprint(cert: x509.Certificate) -> str:
    """The fingerprint of a certificate's key: ``sha256:`` and hex of the SPKI DER.

    Stays the same when a certificate is renewed for the same key, and differs
    between two certificates a CA issued for the same name with new keys.

    Args:
        cert: A certificate.

    Returns:
        ``"sha256:"`` followed by 64 hex digits.
    """
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return FINGERPRINT_PREFIX + hashlib.sha256(spki).hexdigest()


# --- making certificates -------------------------------------------------------------


def generate_private_key() -> PrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def create_ca(
    common_name: str, *, days: int = DEFAULT_CA_DAYS
) -> tuple[PrivateKey, x509.Certificate]:
    """A new self-signed federation CA that may only sign node certificates.

    ``pathlen:0`` keeps the CA from delegating to intermediate CAs.

    Args:
        common_name: The CA's subject common name.
        days: Validity from now.

    Returns:
        The CA's private key and certificate.

    Raises:
        ValueError: ``common_name`` is empty or ``days`` is not positive.
    """
    if not common_name:
        raise ValueError("the CA common name is empty")
    not_before, not_after = _validity(days, None, None)
    key = generate_private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return key, builder.sign(key, hashes.SHA256())


def issue_certificate(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    node_id: str,
    *,
    dns_names: Iterable[str] = ("localhost",),
    ip_addresses: Iterable[str] = ("127.0.0.1",),
    days: int = DEFAULT_LEAF_DAYS,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> tuple[PrivateKey, x509.Certificate]:
    """A new node key and a certificate for it signed by a CA.

    The certificate serves both ends of mutual TLS (serverAuth and clientAuth)
    and names the node in a URI SAN and in its common name.

    Args:
        ca_key: The CA's private key.
        ca_cert: The CA's certificate (its subject becomes the issuer).
        node_id: The node's identifier.
        dns_names: Host names the node is reached by.
        ip_addresses: IP addresses the node is reached by (v4 or v6 text).
        days: Validity from now, unless ``not_before``/``not_after`` say otherwise.
        not_before: Start of validity (tests use it with ``not_after`` to make
            an expired certificate); timezone-aware.
        not_after: End of validity; timezone-aware.

    Returns:
        The node's private key and certificate.

    Raises:
        ValueError: A malformed node id, DNS name or IP address; a validity
            window that is empty or not timezone-aware; or ``ca_key`` does not
            belong to ``ca_cert``.
    """
    if ca_key.public_key().public_numbers() != _ec_public_numbers(ca_cert):
        raise ValueError("the CA key does not belong to the CA certificate")
    key = generate_private_key()
    builder = _node_builder(
        key,
        node_id,
        issuer=ca_cert.subject,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        validity=_validity(days, not_before, not_after),
    ).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
    )
    return key, builder.sign(ca_key, hashes.SHA256())


def create_self_signed(
    node_id: str,
    *,
    dns_names: Iterable[str] = ("localhost",),
    ip_addresses: Iterable[str] = ("127.0.0.1",),
    days: int = DEFAULT_LEAF_DAYS,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> tuple[PrivateKey, x509.Certificate]:
    """A node's own self-signed certificate, for peers that pin it.

    Same profile as :func:`issue_certificate` (end entity, serverAuth and
    clientAuth, the node's URI SAN), signed by its own key. It is not a CA, so
    pinning it trusts this one certificate and nothing its key might sign.

    Args:
        node_id: The node's identifier.
        dns_names: Host names the node is reached by.
        ip_addresses: IP addresses the node is reached by.
        days: Validity from now, unless ``not_before``/``not_after`` say otherwise.
        not_before: Start of validity; timezone-aware.
        not_after: End of validity; timezone-aware.

    Returns:
        The node's private key and certificate.

    Raises:
        ValueError: A malformed node id, DNS name or IP address, or a bad
            validity window.
    """
    key = generate_private_key()
    builder = _node_builder(
        key,
        node_id,
        issuer=None,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        validity=_validity(days, not_before, not_after),
    ).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
    )
    return key, builder.sign(key, hashes.SHA256())


def _node_builder(
    key: PrivateKey,
    node_id: str,
    *,
    issuer: x509.Name | None,
    dns_names: Iterable[str],
    ip_addresses: Iterable[str],
    validity: tuple[dt.datetime, dt.datetime],
) -> x509.CertificateBuilder:
    _check_node_id(node_id)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)])
    san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(node_uri(node_id))]
    for name in dns_names:
        if not name or name != name.strip() or "/" in name:
            raise ValueError(f"not a DNS name: {name!r}")
        san.append(x509.DNSName(name))
    for address in ip_addresses:
        san.append(x509.IPAddress(ipaddress.ip_address(address)))
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_NODE_KEY_USAGE, critical=True)
        .add_extension(_NODE_EKU, critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _validity(
    days: int, not_before: dt.datetime | None, not_after: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    if days <= 0:
        raise ValueError(f"validity: expected a positive number of days, got {days}")
    for moment in (not_before, not_after):
        if moment is not None and moment.utcoffset() is None:
            raise ValueError("validity: not_before and not_after must be timezone-aware")
    now = dt.datetime.now(dt.UTC)
    start = not_before if not_before is not None else now - _CLOCK_SKEW
    end = not_after if not_after is not None else now + dt.timedelta(days=days)
    if end <= start:
        raise ValueError(f"validity: not_after {end} is not after not_before {start}")
    return start, end


def _check_node_id(node_id: str) -> None:
    if not NODE_ID_RE.fullmatch(node_id):
        raise ValueError(
            f"node id {node_id!r}: expected lowercase letters, digits and '-', 1-63 characters"
        )


def _ec_public_numbers(cert: x509.Certificate) -> ec.EllipticCurvePublicNumbers | None:
    public_key = cert.public_key()
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return public_key.public_numbers()
    return None


# --- PEM files ----------------------------------------------------------------------


def save_private_key(key: PrivateKey, path: str | os.PathLike[str]) -> None:
    """Write a private key as unencrypted PKCS#8 PEM, mode 0600, atomically.

    The key is never on disk with looser permissions, and a crash leaves
    either the old file or the new one.

    Args:
        key: The key to write.
        path: Where to write it; the folder is created (mode 0700) if missing.

    Raises:
        ConfigError: The file or its folder cannot be written.
    """
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomically(Path(path), pem, mode=0o600)


def save_certificate(cert: x509.Certificate, path: str | os.PathLike[str]) -> None:
    """Write a certificate as PEM, mode 0644, atomically.

    Args:
        cert: The certificate to write.
        path: Where to write it; the folder is created if missing.

    Raises:
        ConfigError: The file or its folder cannot be written.
    """
    _write_atomically(Path(path), cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def load_private_key(path: str | os.PathLike[str]) -> PrivateKey:
    """Read an unencrypted ECDSA P-256 private key from a PEM file.

    Args:
        path: The key file.

    Returns:
        The key.

    Raises:
        ConfigError: The file is missing or unreadable, is not an unencrypted
            PEM private key, or holds a key that is not ECDSA P-256. The
            message names the path.
    """
    data = _read(Path(path), what="private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        # TypeError: the key is encrypted; ValueError: not a parseable key.
        raise ConfigError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(f"{path}: expected an ECDSA P-256 private key, got {type(key).__name__}")
    return key


def load_certificate(path: str | os.PathLike[str]) -> x509.Certificate:
    """Read the single certificate of a PEM file.

    Args:
        path: The certificate file.

    Returns:
        The certificate.

    Raises:
        ConfigError: The file is missing or unreadable, or holds no
            certificate or more than one. The message names the path.
    """
    certs = load_certificates(path)
    if len(certs) != 1:
        raise ConfigError(f"{path}: expected exactly one certificate, got {len(certs)}")
    return certs[0]


def load_certificates(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    """Read every certificate of a PEM bundle, in file order.

    Args:
        path: The bundle file.

    Returns:
        At least one certificate.

    Raises:
        ConfigError: The file is missing, unreadable, larger than 1 MiB,
            or holds no parseable PEM certificate. The message names the path.
    """
    data = _read(Path(path), what="certificate")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM certificate file ({exc})") from None
    if not certs:  # pragma: no cover - cryptography raises on an empty bundle
        raise ConfigError(f"{path}: holds no certificate")
    return certs


def _read(path: Path, *, what: str) -> bytes:
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_PEM_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} file ({exc.strerror})") from None
    if len(data) > _MAX_PEM_BYTES:
        raise ConfigError(f"{path}: larger than {_MAX_PEM_BYTES} bytes; not a {what} file")
    return data


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write ({exc.strerror})") from None
    try:
        # mkstemp creates the file 0600, so a key is never readable by others;
        # a certificate is widened only once its content is complete.
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise ConfigError(f"{path}: cannot write ({exc.strerror})") from None
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename durable; best effort, as some filesystems refuse it.
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
