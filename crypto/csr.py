"""Certificate signing requests: a partner keeps its key, the CA signs its request.

A partner makes a key and a CSR with OpenSSL (or ``hashfed``), sends only the
CSR, and gets back a certificate of the same profile :func:`crypto.pki.issue_certificate`
makes: an end entity (``CA:FALSE``), serverAuth and clientAuth, naming the
node in a URI SAN and the common name. What the request asks for beyond its
key and name is not copied: a CSR asking to be a CA is refused outright, so a
mistaken ``openssl req`` never ends as a certificate that could mint others.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from crypto.errors import InputError
from crypto.pki import (
    _NODE_EKU,
    _NODE_KEY_USAGE,
    DEFAULT_LEAF_DAYS,
    NODE_ID_RE,
    PrivateKey,
    _ec_public_numbers,
    _validity,
    node_uri,
)

__all__ = ["MAX_CSR_BYTES", "load_csr", "sign_csr"]

# A CSR is a few hundred bytes; an RSA-4096 one with many names stays far below this.
MAX_CSR_BYTES = 64 * 1024
# Below 2048 bits RSA is refused by current TLS stacks (and by OpenSSL's level 2).
_MIN_RSA_BITS = 2048
_EC_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


def load_csr(data: bytes, *, where: str) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER request and check its signature (it proves the key holder made it).

    Raises:
        InputError: too large, not a CSR, a bad self-signature, a key type or
            size TLS peers would refuse, or a request for a CA certificate.
    """
    if len(data) > MAX_CSR_BYTES:
        raise InputError(f"larger than {MAX_CSR_BYTES} bytes: not a CSR", where=where)
    try:
        if b"-----BEGIN" in data:
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
    except ValueError:
        raise InputError(
            "not a certificate signing request (expected PEM 'CERTIFICATE REQUEST' or DER)",
            where=where,
        ) from None
    if not csr.is_signature_valid:
        raise InputError("the request's signature does not verify (altered?)", where=where)
    _check_key(csr.public_key(), where=where)
    try:
        constraints = csr.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    except ValueError:
        raise InputError("the request's extensions cannot be parsed", where=where) from None
    if constraints is not None and constraints.ca:
        raise InputError(
            "the request asks for a CA certificate (basicConstraints CA:TRUE); "
            "make a plain request: openssl req -new -key KEY -out REQ.csr -subj /CN=NODE_ID",
            where=where,
        )
    return csr


def _check_key(key: object, *, where: str) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _EC_CURVES):
            raise InputError(
                f"EC curve {key.curve.name}: expected P-256, P-384 or P-521", where=where
            )
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise InputError(
                f"RSA key of {key.key_size} bits: expected at least {_MIN_RSA_BITS}", where=where
            )
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise InputError("key type: expected EC (P-256), RSA or Ed25519", where=where)


def csr_common_name(csr: x509.CertificateSigningRequest) -> str | None:
    """The request's subject common name, if it has exactly one."""
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        return None
    value = names[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def sign_csr(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    csr: x509.CertificateSigningRequest,
    node_id: str,
    *,
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
    days: int = DEFAULT_LEAF_DAYS,
) -> x509.Certificate:
    """A node certificate for the request's key, signed by the CA.

    Only the key is taken from the request (after :func:`load_csr` checked
    it); the subject, names and extensions are the node profile's.

    Raises:
        ValueError: a malformed node id, DNS name or IP address, bad validity,
            or ``ca_key`` does not belong to ``ca_cert``.
    """
    if ca_key.public_key().public_numbers() != _ec_public_numbers(ca_cert):
        raise ValueError("the CA key does not belong to the CA certificate")
    if not NODE_ID_RE.fullmatch(node_id):
        raise ValueError(
            f"node id {node_id!r}: expected lowercase letters, digits and '-', 1-63 characters"
        )
    key = csr.public_key()
    san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(node_uri(node_id))]
    for name in dns_names:
        if not name or name != name.strip() or "/" in name:
            raise ValueError(f"not a DNS name: {name!r}")
        san.append(x509.DNSName(name))
    for address in ip_addresses:
        san.append(x509.IPAddress(ipaddress.ip_address(address)))
    start, end = _validity(days, None, None)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_NODE_KEY_USAGE, critical=True)
        .add_extension(_NODE_EKU, critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    return builder.sign(ca_key, hashes.SHA256())


def requested_names(csr: x509.CertificateSigningRequest) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses a request asks for (its SAN extension)."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return [], []
    dns = list(san.get_values_for_type(x509.DNSName))
    ips = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    return dns, ips
