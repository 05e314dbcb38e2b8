"""Install another federation's CA on this node: ``hashfed ca trust FILE``.

The certificate is copied into ``<data>/tls/ca/`` and its path added to
``tls_ca_files`` in node.toml, so nobody edits the list by hand. Only the
``tls_ca_files`` line is rewritten (comments and the rest stay), and the new
file is checked to load before it replaces the old one.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from config import NODE_TOML, load_settings
from config.settings import NodeSettings
from crypto.errors import ConfigError, InputError
from crypto.pki import cert_fingerprint

__all__ = ["CA_TRUST_DIR", "InstalledCa", "install_ca", "is_ca_certificate"]

CA_TRUST_DIR = "tls/ca"  # where `hashfed ca trust` puts the CAs it installs
# A CA bundle of a few certificates is a few KB.
_MAX_BUNDLE_BYTES = 1024 * 1024
_KEY_LINE = re.compile(r"^tls_ca_files\s*=.*$", re.MULTILINE)


@dataclass(frozen=True)
class InstalledCa:
    path: Path
    subjects: list[str]
    fingerprints: list[str]
    added: bool  # False: every certificate was trusted already


def is_ca_certificate(cert: x509.Certificate) -> bool:
    """True when the certificate says ``CA:TRUE`` (it may sign other certificates)."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _read_cas(file: Path) -> list[x509.Certificate]:
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=str(file)) from None
    if len(data) > _MAX_BUNDLE_BYTES:
        raise InputError("larger than 1 MiB: not a CA bundle", where=str(file))
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise InputError(
            "expected PEM certificates (-----BEGIN CERTIFICATE-----)", where=str(file)
        ) from None
    for cert in certs:
        if not is_ca_certificate(cert):
            raise InputError(
                f"{cert.subject.rfc4514_string()} is not a CA (CA:FALSE): pin a node's own "
                "certificate with `hashfed principal add NAME --cert FILE` or `peer add --cert`",
                where=str(file),
            )
    return certs


def install_ca(data_dir: Path, file: Path) -> InstalledCa:
    """Copy the CA certificate(s) in ``file`` into the data folder and trust them.

    Raises:
        InputError: the file is unreadable, not PEM, or holds a non-CA certificate.
        ConfigError: node.toml is missing, or the edit would not load.
    """
    certs = _read_cas(file)
    settings = load_settings(data_dir)
    fingerprints = [cert_fingerprint(c) for c in certs]
    subjects = [c.subject.rfc4514_string() for c in certs]
    trusted: set[str] = set()
    for existing in settings.tls_ca_files:
        try:
            trusted |= {
                cert_fingerprint(c)
                for c in x509.load_pem_x509_certificates(settings.path(existing).read_bytes())
            }
        except (OSError, ValueError):
            continue  # the node reports broken files when it starts
    own = data_dir / "ca" / "ca.crt"
    if own.exists():
        trusted |= {cert_fingerprint(c) for c in x509.load_pem_x509_certificates(own.read_bytes())}
    if set(fingerprints) <= trusted:
        return InstalledCa(path=file, subjects=subjects, fingerprints=fingerprints, added=False)
    folder = data_dir / CA_TRUST_DIR
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{fingerprints[0].removeprefix('sha256:')[:16]}.crt"
    relative = f"{CA_TRUST_DIR}/{target.name}"
    target.write_bytes(file.read_bytes())
    files = [*settings.tls_ca_files]
    if relative not in files:
        files.append(relative)
    _set_ca_files(data_dir, files)
    return InstalledCa(path=target, subjects=subjects, fingerprints=fingerprints, added=True)


def _set_ca_files(data_dir: Path, files: list[str]) -> None:
    path = data_dir / NODE_TOML
    text = path.read_text(encoding="utf-8")
    line = "tls_ca_files = [" + ", ".join(f'"{f}"' for f in files) + "]"
    if _KEY_LINE.search(text):
        new = _KEY_LINE.sub(lambda _: line, text, count=1)
    else:
        # Top-level keys must come before the first table.
        head, sep, tail = text.partition("\n[")
        new = head.rstrip("\n") + "\n" + line + "\n" + (sep + tail if sep else "")
    try:
        parsed = tomllib.loads(new)
        NodeSettings(data_dir=data_dir, **parsed)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: the edit would make the settings invalid: {exc}") from None
    if parsed.get("tls_ca_files") != files:
        raise ConfigError(f"{path}: tls_ca_files spans several lines: add {files[-1]!r} by hand")
    tmp = path.with_name(f".{NODE_TOML}.{os.getpid()}.tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)
