"""Which CA vouched for a certificate, whether it was revoked, which certificates are pinned.

The TLS handshake proves that *some* trust anchor vouched for a client
certificate; authorisation needs to know *which* one, because a principal is
bound to the CA that issued its certificate: with two federation CAs, a
certificate from the second naming a principal of the first is not that
principal. The issuer is found here from the certificate itself (the trusted
CA whose key verifies its signature), so it does not depend on the verified
chain, which a resumed TLS session does not carry.

The files (CA certificates, CRLs, pinned certificates) are re-read when they
change, checked at most once a second, so ``hashfed ca revoke`` and
``hashfed principal add --cert`` take effect on a running node.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from config import NodeSettings
from crypto.crl import crl_serials, load_crl
from crypto.errors import ConfigError
from crypto.pki import cert_fingerprint, load_certificate, load_certificates

__all__ = [
    "OWN_CA",
    "OWN_CRL",
    "PINNED_DIR",
    "TrustAnchors",
    "ca_files",
    "crl_files",
    "single_issuer",
]

log = logging.getLogger("hashfed.trust")

OWN_CA = "ca/ca.crt"  # made by `hashfed ca init`
OWN_CRL = "ca/crl.pem"  # written by `hashfed ca revoke`
PINNED_DIR = "tls/pinned"  # where `hashfed principal add --cert` pins a certificate
# How often the files are looked at for changes, at most.
_RECHECK_SECONDS = 1.0


def ca_files(settings: NodeSettings) -> list[Path]:
    """The CA certificate files a node trusts: ``tls_ca_files`` and its own CA."""
    files = [settings.path(p) for p in settings.tls_ca_files]
    own = settings.path(OWN_CA)
    if own.exists() and own not in files:
        files.append(own)
    return files


def crl_files(settings: NodeSettings) -> list[Path]:
    """The CRL files a node must check: ``tls_crl_files`` (its own CA's is extra)."""
    return [settings.path(p) for p in settings.tls_crl_files]


@dataclass(frozen=True)
class _Snapshot:
    cas: tuple[tuple[str, x509.Certificate], ...] = ()  # (fingerprint, CA certificate)
    revoked: dict[str, frozenset[int]] = field(default_factory=dict)  # CA fpr -> serials
    pinned: frozenset[str] = frozenset()  # fingerprints of pinned certificates


class TrustAnchors:
    """The node's CAs, their CRLs and its pinned certificates, kept current."""

    def __init__(
        self,
        *,
        ca_files: Sequence[Path],
        crl_files: Sequence[Path] = (),
        pinned_files: Sequence[Path] = (),
        pinned_dir: Path | None = None,
        own_crl: Path | None = None,
    ) -> None:
        """Load the files once; a bad file now is a ``ConfigError`` naming it.

        Raises:
            ConfigError: a file is unusable, or a CRL is signed by none of the CAs.
        """
        self._ca_files = list(ca_files)
        self._crl_files = list(crl_files)
        self._pinned_files = list(pinned_files)
        self._pinned_dir = pinned_dir
        # The own CA's CRL may appear while the node runs (`hashfed ca revoke`).
        self._own_crl = own_crl
        self._lock = threading.Lock()
        self._stamp = self._stamps()
        self._snap = self._load()
        self._checked = time.monotonic()
        self.generation = 0

    @classmethod
    def from_settings(cls, settings: NodeSettings) -> TrustAnchors:
        """The anchors a node's settings name (see :func:`ca_files`, :func:`crl_files`)."""
        return cls(
            ca_files=ca_files(settings),
            crl_files=crl_files(settings),
            pinned_files=[settings.path(p) for p in settings.tls_pinned_cert_files],
            pinned_dir=settings.path(PINNED_DIR),
            own_crl=settings.path(OWN_CRL),
        )

    # --- loading ----------------------------------------------------------------------

    def _all_files(self) -> list[Path]:
        extra = sorted(self._pinned_dir.glob("*.crt")) if self._pinned_dir else []
        own = [self._own_crl] if self._own_crl is not None else []
        return self._ca_files + self._crl_files + own + self._pinned_files + extra

    def _stamps(self) -> tuple[tuple[str, int], ...]:
        out = []
        for path in self._all_files():
            try:
                out.append((str(path), path.stat().st_mtime_ns))
            except OSError:
                out.append((str(path), -1))
        return tuple(out)

    def _load(self) -> _Snapshot:
        cas: list[tuple[str, x509.Certificate]] = []
        for path in self._ca_files:
            cas.extend((cert_fingerprint(c), c) for c in load_certificates(path))
        revoked: dict[str, set[int]] = {}
        crls = list(self._crl_files)
        if self._own_crl is not None and self._own_crl.exists():
            crls.append(self._own_crl)
        for path in crls:
            crl = load_crl(path)
            for fpr, ca in cas:
                if ca.subject != crl.issuer:
                    continue
                try:
                    revoked.setdefault(fpr, set()).update(crl_serials(crl, ca))
                    break
                except ValueError:
                    continue
            else:
                raise ConfigError(f"{path}: a CRL signed by none of the trusted CAs")
        pinned = {cert_fingerprint(load_certificate(p)) for p in self._pinned_files}
        if self._pinned_dir is not None:
            pinned.update(
                cert_fingerprint(load_certificate(p))
                for p in sorted(self._pinned_dir.glob("*.crt"))
            )
        return _Snapshot(
            tuple(cas), {k: frozenset(v) for k, v in revoked.items()}, frozenset(pinned)
        )

    def refresh(self) -> _Snapshot:
        """The current snapshot, re-read if a file changed (looked at once a second)."""
        now = time.monotonic()
        if now - self._checked < _RECHECK_SECONDS:
            return self._snap
        with self._lock:
            if now - self._checked < _RECHECK_SECONDS:
                return self._snap
            self._checked = now
            stamp = self._stamps()
            if stamp != self._stamp:
                try:
                    self._snap = self._load()
                    self.generation += 1
                except ConfigError as exc:
                    # Keep what was valid; a half-written file is retried next time.
                    log.warning("trust files not reloaded: %s", exc.message)
                    return self._snap
                self._stamp = stamp
        return self._snap

    # --- questions ----------------------------------------------------------------------

    def issuer_of(self, cert: x509.Certificate) -> str | None:
        """The fingerprint of the trusted CA whose key signed ``cert``, or None."""
        for fpr, ca in self.refresh().cas:
            if ca.subject != cert.issuer:
                continue
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return fpr
        return None

    def is_revoked(self, cert: x509.Certificate, issuer: str) -> bool:
        """Whether ``issuer``'s CRL lists ``cert``."""
        return cert.serial_number in self.refresh().revoked.get(issuer, frozenset())

    def is_pinned(self, fingerprint: str) -> bool:
        """Whether the node pins the certificate with this fingerprint."""
        return fingerprint in self.refresh().pinned

    def ca_fingerprints(self) -> list[str]:
        """The fingerprints of every trusted CA certificate."""
        return [fpr for fpr, _ in self.refresh().cas]


def single_issuer(fingerprints: Iterable[str]) -> str | None:
    """The one CA fingerprint, if there is exactly one."""
    found = list(dict.fromkeys(fingerprints))
    return found[0] if len(found) == 1 else None
