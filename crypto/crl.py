"""Certificate revocation lists for a federation CA.

``hashfed ca revoke`` adds a certificate's serial to the CA's CRL and re-signs
it; every node that trusts the CA and lists the CRL (its own ``ca/crl.pem``,
or ``tls_crl_files``) refuses that certificate from its next request on.
Checking a CRL verifies its signature against the CA first.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from crypto.errors import ConfigError
from crypto.pki import _CLOCK_SKEW, PrivateKey, _ec_public_numbers, _read, _write_atomically

__all__ = ["DEFAULT_CRL_DAYS", "crl_serials", "load_crl", "revoke_in_crl", "save_crl"]

# A CRL is re-signed on every revocation; peers reload it, so a week is a
# bound on how long a node that cannot fetch a new one keeps using the old.
DEFAULT_CRL_DAYS = 7


def revoke_in_crl(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    serials: Iterable[int],
    *,
    previous: x509.CertificateRevocationList | None = None,
    days: int = DEFAULT_CRL_DAYS,
) -> x509.CertificateRevocationList:
    """A CRL signed by the CA listing ``serials`` and everything ``previous`` listed.

    Args:
        ca_key: The CA's private key.
        ca_cert: The CA's certificate.
        serials: Serial numbers to revoke now.
        previous: The CA's current CRL, whose entries are kept.
        days: Until the next update.

    Returns:
        The new CRL.

    Raises:
        ValueError: ``previous`` is not this CA's, or ``ca_key`` is not the CA's key.
    """
    if ca_key.public_key().public_numbers() != _ec_public_numbers(ca_cert):
        raise ValueError("the CA key does not belong to the CA certificate")
    now = dt.datetime.now(dt.UTC)
    revoked: dict[int, dt.datetime] = {}
    if previous is not None:
        if previous.issuer != ca_cert.subject or not previous.is_signature_valid(
            ca_key.public_key()
        ):
            raise ValueError("the previous CRL was not signed by this CA")
        revoked = {r.serial_number: r.revocation_date_utc for r in previous}
    for serial in serials:
        revoked.setdefault(serial, now)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - _CLOCK_SKEW)
        .next_update(now + dt.timedelta(days=days))
    )
    for serial, when in sorted(revoked.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca_key, hashes.SHA256())


def crl_serials(crl: x509.CertificateRevocationList, ca_cert: x509.Certificate) -> frozenset[int]:
    """The serials a CA's CRL revokes, after checking that the CA signed it.

    Args:
        crl: The CRL.
        ca_cert: The CA it claims to be from.

    Returns:
        The revoked serial numbers.

    Raises:
        ValueError: the CRL names another issuer or its signature does not verify.
    """
    public_key = ca_cert.public_key()
    if crl.issuer != ca_cert.subject or not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise ValueError("the CRL is not this CA's")
    if not crl.is_signature_valid(public_key):
        raise ValueError("the CRL's signature does not verify with this CA's key")
    return frozenset(r.serial_number for r in crl)


def save_crl(crl: x509.CertificateRevocationList, path: str | os.PathLike[str]) -> None:
    """Write a CRL as PEM, mode 0644, atomically.

    Raises:
        ConfigError: The file or its folder cannot be written.
    """
    _write_atomically(Path(path), crl.public_bytes(serialization.Encoding.PEM), mode=0o644)


def load_crl(path: str | os.PathLike[str]) -> x509.CertificateRevocationList:
    """Read a PEM CRL.

    Raises:
        ConfigError: The file is missing, unreadable or not a PEM CRL; the
            message names the path.
    """
    data = _read(Path(path), what="CRL")
    try:
        return x509.load_pem_x509_crl(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM CRL ({exc})") from None
