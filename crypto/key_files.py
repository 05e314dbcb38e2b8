"""Ed25519 signing key files: PEM (PKCS#8), unencrypted, readable by the owner only.

A key is written atomically (a temporary file, flushed, then linked or moved
into place) and read with every check before it is parsed: a regular file,
mode 0600 or stricter, of bounded size, holding an Ed25519 key.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto.errors import ConfigError

__all__ = ["MAX_KEY_FILE_BYTES", "load_private_key", "save_private_key"]

# A PEM PKCS#8 Ed25519 key is 119 bytes; 64 KiB leaves room for comments and
# stops us from reading a huge file someone pointed the setting at by mistake.
MAX_KEY_FILE_BYTES = 64 * 1024


def save_private_key(
    path: str | os.PathLike[str], key: Ed25519PrivateKey, *, overwrite: bool = False
) -> None:
    """Write ``key`` to ``path`` as unencrypted PEM PKCS#8, mode 0600, atomically.

    The key is written to a temporary file in the same folder, flushed to disk
    and then moved into place, so a crash never leaves a half-written key.
    Without ``overwrite`` the final step is a hard link, which fails if the
    path appeared in the meantime.

    Args:
        path: Where to write the key.
        key: The Ed25519 private key.
        overwrite: Replace an existing file instead of refusing.

    Raises:
        ConfigError: The file exists and ``overwrite`` is false, or the file
            could not be written.
    """
    target = Path(path)
    if not overwrite and os.path.lexists(target):
        raise ConfigError(f"signing key file {target} already exists; refusing to overwrite it")
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    folder = target.parent
    try:
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"cannot write signing key file {target}: {exc.strerror}") from exc
    tmp = Path(tmp_name)
    try:
        try:
            os.fchmod(fd, 0o600)  # mkstemp already uses 0600; say it anyway
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if overwrite:
                os.replace(tmp, target)
            else:
                _link_or_replace(tmp, target)
        except FileExistsError as exc:
            raise ConfigError(
                f"signing key file {target} already exists; refusing to overwrite it"
            ) from exc
        except OSError as exc:
            raise ConfigError(f"cannot write signing key file {target}: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_folder(folder)


def _link_or_replace(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target`` unless ``target`` exists (FileExistsError)."""
    try:
        os.link(tmp, target)  # atomic "create if absent"
    except FileExistsError:
        raise
    except OSError as exc:
        # Some filesystems (FAT, some network and container mounts) have no
        # hard links; fall back to check-then-rename, which has a tiny race.
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from exc
        os.replace(tmp, target)


def _fsync_folder(folder: Path) -> None:
    # Make the rename durable. Best effort: not every platform can open folders.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load an unencrypted PEM PKCS#8 Ed25519 private key.

    The file must be a regular file (symbolic links to one are followed) that
    neither group nor others can read or write.

    Args:
        path: The key file.

    Returns:
        The private key.

    Raises:
        ConfigError: The file is missing, not a regular file, readable or
            writable by group or others, too large, not a PEM private key,
            encrypted, or not an Ed25519 key. The message names the path.
    """
    target = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not hang; fstat below rejects it.
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise ConfigError(f"signing key file {target} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"cannot open signing key file {target}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)  # of the opened file, so it cannot change under us
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"signing key file {target} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"signing key file {target} has permissions {mode:04o}, expected 0600 "
                f"(run: chmod 600 {target})"
            )
        if info.st_size > MAX_KEY_FILE_BYTES:
            raise ConfigError(
                f"signing key file {target} is {info.st_size} bytes, "
                f"more than the {MAX_KEY_FILE_BYTES} a key file can be"
            )
        data = _read_at_most(fd, MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read signing key file {target}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise ConfigError(f"signing key file {target} is larger than {MAX_KEY_FILE_BYTES} bytes")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # cryptography's signal for "needs a password"
        raise ConfigError(
            f"signing key file {target} is encrypted; hashfed needs an unencrypted PKCS#8 key"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"signing key file {target} is not a valid PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        kind = type(key).__name__.removesuffix("PrivateKey")
        raise ConfigError(f"signing key file {target} does not hold an Ed25519 key (found {kind})")
    return key


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
