"""The node's data folder: created by ``hashfed init``, reused on every start.

<data>/node.toml          settings (config/settings.py)
<data>/hashfed.db         SQLite database (unless database_url is set)
<data>/keys/signing.key   Ed25519 checkpoint-signing key, 0600
<data>/keys/signing.pub   its verifier key string, for peers
<data>/keys/cosigning.key Ed25519 cosigner key (tlog-cosignature), 0600
<data>/keys/cosigning.pub its verifier key string (type 0x04), for peers
<data>/tls/node.key|crt   TLS key and self-signed certificate

The folder holds every hash and every token hash: it is the owner's alone
(0700, the database and its -wal/-shm files 0600), and a node refuses to
start with a private key that others can read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from config import NODE_TOML, NodeSettings, load_settings, render_node_toml
from crypto.checkpoint import CheckpointSigner
from crypto.cosignature import CosignatureSigner
from crypto.errors import ConfigError
from crypto.key_files import load_private_key, save_private_key
from crypto.keys import NoteSigner, generate_signing_key
from crypto.pki import create_self_signed, save_certificate
from crypto.pki import save_private_key as save_tls_key


@dataclass(frozen=True)
class InitResult:
    data_dir: Path
    node_id: str
    verifier_key: str
    created: bool
    cosigner_key: str = ""


def init_data_dir(
    data_dir: Path, *, node_id: str, role: str = "agency", port: int = 8443, force: bool = False
) -> InitResult:
    """Create a node's data folder: settings, signing key, TLS identity.

    Refuses to replace an existing signing key unless ``force``: losing it
    means peers can no longer verify this node's lists.
    """
    key_path = data_dir / "keys" / "signing.key"
    if key_path.exists() and not force:
        raise ConfigError(
            f"{key_path}: a signing key exists already; use --force to replace it "
            "(peers will then reject this node's lists until they trust the new key)"
        )
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    (data_dir / "keys").mkdir(mode=0o700, exist_ok=True)
    (data_dir / "tls").mkdir(mode=0o700, exist_ok=True)
    (data_dir / NODE_TOML).write_text(render_node_toml(node_id, role=role, port=port))
    settings = load_settings(data_dir)  # validates node_id before anything else is written

    key = generate_signing_key()
    save_private_key(key_path, key, overwrite=force)
    signer = NoteSigner(settings.node_id, key)
    (data_dir / "keys" / "signing.pub").write_text(signer.verifier_key + "\n")
    cosigner = _create_cosigner(settings, overwrite=force)

    tls_key, tls_cert = create_self_signed(settings.node_id)
    save_tls_key(tls_key, settings.path(settings.tls_key_file))
    save_certificate(tls_cert, settings.path(settings.tls_cert_file))
    return InitResult(data_dir, settings.node_id, signer.verifier_key, True, cosigner.verifier_key)


def default_node_id() -> str:
    """A node id for a first start without one: ``node-`` and 6 random hex digits."""
    return "node-" + os.urandom(3).hex()


def ensure_data_dir(data_dir: Path, *, node_id: str | None = None) -> NodeSettings:
    """Load the data folder's settings, initialising it on first start.

    Raises:
        ConfigError: as :func:`check_key_permissions`, or bad settings.
    """
    if not (data_dir / NODE_TOML).exists():
        init_data_dir(data_dir, node_id=node_id or default_node_id())
    settings = load_settings(data_dir)
    check_key_permissions(settings)
    protect_data_dir(settings)
    return settings


SQLITE_FILES = ("hashfed.db", "hashfed.db-wal", "hashfed.db-shm")


def protect_data_dir(settings: NodeSettings) -> None:
    """Make the data folder 0700 and the SQLite files in it 0600.

    SQLite creates -wal and -shm with the database file's mode, so fixing the
    database before it is opened covers them too; existing ones are fixed here.
    """
    data_dir = settings.data_dir
    if data_dir.is_dir():
        data_dir.chmod(0o700)
    for name in SQLITE_FILES:
        path = data_dir / name
        if path.exists():
            path.chmod(0o600)


def check_key_permissions(settings: NodeSettings) -> None:
    """Refuse private keys that the group or others can read.

    Raises:
        ConfigError: naming the file and the command that fixes it.
    """
    for key in (settings.tls_key_file, settings.signing_key_file, settings.cosigning_key_file):
        path = settings.path(key)
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            continue  # reported, with its own message, where the key is loaded
        if mode & 0o077:
            raise ConfigError(
                f"{path}: private key is readable by others (mode {mode:o}); run: chmod 600 {path}"
            )


def load_signer(settings: NodeSettings) -> NoteSigner:
    """The node's checkpoint signer, from its key file (clear errors, no traceback)."""
    return NoteSigner(settings.node_id, load_private_key(settings.path(settings.signing_key_file)))


def _create_cosigner(settings: NodeSettings, *, overwrite: bool) -> CosignatureSigner:
    path = settings.path(settings.cosigning_key_file)
    key = generate_signing_key()
    save_private_key(path, key, overwrite=overwrite)
    cosigner = CosignatureSigner(settings.node_id, key)
    path.with_suffix(".pub").write_text(cosigner.verifier_key + "\n")
    return cosigner


def load_checkpoint_signer(settings: NodeSettings) -> CheckpointSigner:
    """The node's log key and cosigner key; a data folder from before cosigner keys gets one.

    Raises:
        ConfigError: a key file is unreadable, or both files hold the same key.
    """
    signer = load_signer(settings)
    path = settings.path(settings.cosigning_key_file)
    if path.exists():
        cosigner = CosignatureSigner(settings.node_id, load_private_key(path))
    else:
        cosigner = _create_cosigner(settings, overwrite=False)
    return CheckpointSigner(signer, cosigner)
