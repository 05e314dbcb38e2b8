"""Ed25519 signing keys: key files, key IDs and C2SP signed-note key names.

A node signs checkpoints with one Ed25519 key kept in a PEM (PKCS#8) file that
only its owner may read. Peers know the matching public key as a *verifier
key*, the plain-text string used by golang.org/x/mod/sumdb/note::

    <name>+<key id, 8 hex digits>+<base64(0x01 || 32-byte public key)>

The key ID follows c2sp.org/signed-note for Ed25519 (signature type 0x01)::

    key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]

This module does no I/O; key files are :mod:`crypto.key_files`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import NewType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from crypto.errors import ConfigError

__all__ = [
    "ED25519_SIGNATURE_TYPE",
    "KeyId",
    "NoteSigner",
    "NoteVerifier",
    "compute_key_id",
    "fingerprint",
    "generate_signing_key",
    "is_valid_key_name",
    "public_key_bytes",
]

KeyId = NewType("KeyId", bytes)
"""The 4-byte key ID of a signed-note key (big-endian uint32 in Go)."""

# c2sp.org/signed-note "Signature types": 0x01 is Ed25519.
ED25519_SIGNATURE_TYPE = 0x01

_PUBLIC_KEY_SIZE = 32  # RFC 8032 §5.1.5
_SIGNATURE_SIZE = 64  # RFC 8032 §5.1.6
_KEY_ID_SIZE = 4  # c2sp.org/signed-note: "the uint32 key ID"

# The Unicode White_Space property, which is what Go's unicode.IsSpace tests
# (golang.org/x/mod/sumdb/note isValidName: "neither Unicode spaces nor plus").
_UNICODE_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_CONTROL = re.compile(r"[\x00-\x1f]")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")


# --- key names and IDs -----------------------------------------------------------------------


def is_valid_key_name(name: str) -> bool:
    """Report whether ``name`` may name a signed-note key.

    c2sp.org/signed-note: key names "MUST be non-empty and MUST NOT contain any
    Unicode spaces or plus (U+002B) characters". Control characters are
    refused too, since a signed note may not contain them anywhere.

    Args:
        name: The candidate key name.

    Returns:
        True if the name is valid.
    """
    if not name or "+" in name or _CONTROL.search(name):
        return False
    if any(c in _UNICODE_SPACES for c in name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates are not valid UTF-8
        return False
    return True


def compute_key_id(
    name: str, public_raw: bytes, signature_type: int = ED25519_SIGNATURE_TYPE
) -> KeyId:
    """Compute the c2sp.org/signed-note key ID of an Ed25519 key.

    Args:
        name: The key name (not validated here).
        public_raw: The raw 32-byte Ed25519 public key.
        signature_type: 0x01 for note signatures, 0x04 for
            c2sp.org/tlog-cosignature cosignatures.

    Returns:
        The first 4 bytes of SHA-256(name || 0x0A || type || public key).

    Raises:
        ValueError: ``public_raw`` is not 32 bytes long.
    """
    if len(public_raw) != _PUBLIC_KEY_SIZE:
        raise ValueError(f"Ed25519 public key is {len(public_raw)} bytes, expected 32")
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([signature_type]) + public_raw
    ).digest()
    return KeyId(digest[:_KEY_ID_SIZE])


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """Return the raw 32-byte public key of ``key``.

    Args:
        key: An Ed25519 private or public key.

    Returns:
        The RFC 8032 encoding of the public key.
    """
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public_raw: bytes) -> str:
    """Return ``"sha256:" + hex(SHA-256(public key))`` for display and pinning.

    Args:
        public_raw: The raw 32-byte Ed25519 public key.

    Returns:
        The fingerprint string, 71 characters long.

    Raises:
        ValueError: ``public_raw`` is not 32 bytes long.
    """
    if len(public_raw) != _PUBLIC_KEY_SIZE:
        raise ValueError(f"Ed25519 public key is {len(public_raw)} bytes, expected 32")
    return "sha256:" + hashlib.sha256(public_raw).hexdigest()


def _verifier_key_string(
    name: str, kid: bytes, public_raw: bytes, signature_type: int = ED25519_SIGNATURE_TYPE
) -> str:
    encoded = base64.b64encode(bytes([signature_type]) + public_raw).decode("ascii")
    return f"{name}+{kid.hex()}+{encoded}"


# --- signers and verifiers -------------------------------------------------------------------


class NoteSigner:
    """A named Ed25519 key that signs notes.

    Args:
        name: The key name written in signature lines.
        private_key: The Ed25519 private key.

    Raises:
        ConfigError: ``name`` is not a valid key name.
    """

    __slots__ = ("_key", "_key_id", "_name", "_public_raw")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not is_valid_key_name(name):
            raise ConfigError(
                f"invalid signing key name {name!r}: it must be non-empty and contain "
                "no spaces, no '+' and no control characters"
            )
        if not isinstance(private_key, Ed25519PrivateKey):
            raise ConfigError(f"signing key {name!r} is not an Ed25519 private key")
        self._name = name
        self._key = private_key
        self._public_raw = public_key_bytes(private_key)
        self._key_id = compute_key_id(name, self._public_raw)

    @property
    def name(self) -> str:
        """The key name."""
        return self._name

    @property
    def key_id(self) -> KeyId:
        """The 4-byte key ID."""
        return self._key_id

    @property
    def public_key_raw(self) -> bytes:
        """The raw 32-byte public key."""
        return self._public_raw

    @property
    def verifier_key(self) -> str:
        """The verifier key string ``<name>+<hex key id>+<base64(0x01 || key)>``."""
        return _verifier_key_string(self._name, self._key_id, self._public_raw)

    def verifier(self) -> NoteVerifier:
        """Return the verifier for this signer's public key."""
        return NoteVerifier(self._name, self._key_id, self._public_raw)

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` and return the 64-byte Ed25519 signature."""
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"NoteSigner({self._name!r}, key_id={self._key_id.hex()})"


class NoteVerifier:
    """A named, trusted Ed25519 public key that verifies note signatures.

    Signatures are matched to a verifier by key name *and* key ID together.

    Args:
        name: The key name.
        key_id: The 4-byte key ID; it must be the one computed from ``name``
            and the public key.
        public_key: The public key, as an object or 32 raw bytes.

    Raises:
        ConfigError: The name is invalid, the public key is not 32 bytes, or
            ``key_id`` does not match the name and key.
    """

    __slots__ = ("_key", "_key_id", "_name", "_public_raw")

    # The signed-note signature type this verifier checks; a subclass for
    # another type (crypto.cosignature) overrides it and ``verify``.
    SIGNATURE_TYPE = ED25519_SIGNATURE_TYPE

    def __init__(self, name: str, key_id: bytes, public_key: Ed25519PublicKey | bytes) -> None:
        if not is_valid_key_name(name):
            raise ConfigError(
                f"invalid verifier key name {name!r}: it must be non-empty and contain "
                "no spaces, no '+' and no control characters"
            )
        if isinstance(public_key, Ed25519PublicKey):
            key = public_key
        else:
            if len(public_key) != _PUBLIC_KEY_SIZE:
                raise ConfigError(
                    f"verifier key {name!r}: public key is {len(public_key)} bytes, expected 32"
                )
            try:
                key = Ed25519PublicKey.from_public_bytes(bytes(public_key))
            except ValueError as exc:
                raise ConfigError(f"verifier key {name!r}: invalid Ed25519 public key") from exc
        public_raw = public_key_bytes(key)
        expected = compute_key_id(name, public_raw, self.SIGNATURE_TYPE)
        if bytes(key_id) != expected:
            raise ConfigError(
                f"verifier key {name!r}: key id {bytes(key_id).hex()} does not match "
                f"the name and public key (expected {expected.hex()})"
            )
        self._name = name
        self._key_id = expected
        self._key = key  # loaded once: from_public_bytes is slow (pyca/cryptography#9463)
        self._public_raw = public_raw

    @classmethod
    def from_public_key(cls, name: str, public_key: Ed25519PublicKey | bytes) -> NoteVerifier:
        """Build a verifier, computing the key ID from the name and key.

        Args:
            name: The key name.
            public_key: The public key, as an object or 32 raw bytes.

        Returns:
            The verifier.

        Raises:
            ConfigError: The name or the public key is invalid.
        """
        raw = public_key if isinstance(public_key, bytes) else public_key_bytes(public_key)
        if len(raw) != _PUBLIC_KEY_SIZE:
            raise ConfigError(f"verifier key {name!r}: public key is {len(raw)} bytes, expected 32")
        return cls(name, compute_key_id(name, raw, cls.SIGNATURE_TYPE), public_key)

    @classmethod
    def from_verifier_key(cls, vkey: str) -> NoteVerifier:
        """Parse a verifier key string ``<name>+<hex key id>+<base64 key>``.

        The format is golang.org/x/mod/sumdb/note's NewVerifier: the string is
        cut at the first two ``+`` (the base64 part may itself contain ``+``),
        the key ID is exactly 8 hex digits, the key data is the signature type
        byte 0x01 followed by the 32-byte Ed25519 public key, and the key ID
        must be the one computed from the name and key.

        Args:
            vkey: The verifier key string.

        Returns:
            The verifier.

        Raises:
            ConfigError: The string is malformed, names another algorithm, or
                its key ID does not match.
        """
        name, sep1, rest = vkey.partition("+")
        hex_id, sep2, key64 = rest.partition("+")
        if not sep1 or not sep2:
            raise ConfigError("malformed verifier key: expected <name>+<8 hex digits>+<base64 key>")
        if not is_valid_key_name(name):
            raise ConfigError(f"malformed verifier key: invalid key name {name!r}")
        if not _HEX8.fullmatch(hex_id):
            raise ConfigError(f"malformed verifier key {name!r}: key id is not 8 hex digits")
        data = _strict_b64decode(key64)
        if data is None:
            raise ConfigError(f"malformed verifier key {name!r}: key data is not base64")
        target = _verifier_class(data[0]) if data else None
        if target is None or not issubclass(target, cls):
            raise ConfigError(
                f"verifier key {name!r}: unknown signature type, only Ed25519 (0x01) and "
                "Ed25519 cosignatures (0x04) are supported"
            )
        if len(data) != 1 + _PUBLIC_KEY_SIZE:
            raise ConfigError(
                f"malformed verifier key {name!r}: Ed25519 key data is {len(data)} bytes, "
                "expected 33"
            )
        return target(name, bytes.fromhex(hex_id), data[1:])

    @property
    def name(self) -> str:
        """The key name."""
        return self._name

    @property
    def key_id(self) -> KeyId:
        """The 4-byte key ID."""
        return self._key_id

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The Ed25519 public key."""
        return self._key

    @property
    def public_key_raw(self) -> bytes:
        """The raw 32-byte public key."""
        return self._public_raw

    @property
    def verifier_key(self) -> str:
        """The verifier key string ``<name>+<hex key id>+<base64(type || key)>``."""
        return _verifier_key_string(self._name, self._key_id, self._public_raw, self.SIGNATURE_TYPE)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Report whether ``signature`` is this key's Ed25519 signature of ``message``."""
        if len(signature) != _SIGNATURE_SIZE:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NoteVerifier):
            return NotImplemented
        return (self.SIGNATURE_TYPE, self._name, self._public_raw) == (
            other.SIGNATURE_TYPE,
            other._name,
            other._public_raw,
        )

    def __hash__(self) -> int:
        return hash((self.SIGNATURE_TYPE, self._name, self._public_raw))

    def __repr__(self) -> str:
        return f"NoteVerifier.from_verifier_key({self.verifier_key!r})"


def _verifier_class(signature_type: int) -> type[NoteVerifier] | None:
    if signature_type == ED25519_SIGNATURE_TYPE:
        return NoteVerifier
    # Imported here: crypto.cosignature builds on this module.
    from crypto.cosignature import COSIGNATURE_V1_TYPE, CosignatureVerifier

    return CosignatureVerifier if signature_type == COSIGNATURE_V1_TYPE else None


def _strict_b64decode(text: str) -> bytes | None:
    """Decode standard padded base64, refusing anything but the canonical form."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(data).decode("ascii") != text:
        return None  # non-zero pad bits: another spelling of the same bytes
    return data


# --- new keys --------------------------------------------------------------------------------


def generate_signing_key() -> Ed25519PrivateKey:
    """Generate a new Ed25519 signing key from the operating system's CSPRNG."""
    return Ed25519PrivateKey.generate()
