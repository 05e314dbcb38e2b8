"""Signing keys, key files, key IDs and verifier-key strings (crypto/keys.py)."""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from crypto.errors import ConfigError
from crypto.key_files import MAX_KEY_FILE_BYTES, load_private_key, save_private_key
from crypto.keys import (
    NoteSigner,
    NoteVerifier,
    compute_key_id,
    fingerprint,
    generate_signing_key,
    is_valid_key_name,
    public_key_bytes,
)

# golang.org/x/mod/sumdb/note note_test.go: the published test keys.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
# cmd/go/internal/modfetch/key.go: the Go checksum database's real key. Its
# base64 part contains "+", which the parser must not cut at.
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"


def seeded_key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


def go_signer_key(skey: str) -> tuple[str, Ed25519PrivateKey]:
    """Read Go's "PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>" test format."""
    _, _, name, _, data = skey.split("+", 4)
    raw = base64.b64decode(data)
    assert raw[0] == 0x01
    return name, Ed25519PrivateKey.from_private_bytes(raw[1:])


# --- key IDs and verifier keys ---------------------------------------------------------------


def test_go_peter_neumann_key_reproduces_published_verifier_key() -> None:
    name, key = go_signer_key(PETER_SKEY)
    signer = NoteSigner(name, key)
    assert signer.key_id == bytes.fromhex("c74f20a3")
    assert signer.verifier_key == PETER_VKEY
    assert signer.verifier() == NoteVerifier.from_verifier_key(PETER_VKEY)


@pytest.mark.parametrize(
    ("vkey", "name", "key_id"),
    [
        (PETER_VKEY, "PeterNeumann", "c74f20a3"),
        (ENOCH_VKEY, "EnochRoot", "af0cfe78"),
        (SUMDB_VKEY, "sum.golang.org", "033de0ae"),
    ],
)
def test_published_verifier_keys_parse_and_round_trip(vkey: str, name: str, key_id: str) -> None:
    verifier = NoteVerifier.from_verifier_key(vkey)
    assert verifier.name == name
    assert verifier.key_id == bytes.fromhex(key_id)
    assert verifier.verifier_key == vkey


def test_key_id_is_the_c2sp_formula() -> None:
    key = seeded_key("formula")
    raw = public_key_bytes(key)
    want = hashlib.sha256(b"example.com/log" + b"\x0a" + b"\x01" + raw).digest()[:4]
    assert compute_key_id("example.com/log", raw) == want
    assert NoteSigner("example.com/log", key).key_id == want


def test_same_key_under_two_names_has_two_key_ids() -> None:
    key = seeded_key("two names")
    assert NoteSigner("a.example", key).key_id != NoteSigner("b.example", key).key_id


def test_every_mangled_verifier_key_rejected() -> None:
    # golang.org/x/mod/sumdb/note TestNewVerifier: every proper substring and
    # every single-character increment of a valid key must be refused.
    vkey = PETER_VKEY
    for i in range(len(vkey) + 1):
        for j in range(i + 1, len(vkey) + 1):
            if (i, j) != (0, len(vkey)):
                with pytest.raises(ConfigError):
                    NoteVerifier.from_verifier_key(vkey[i:j])
    for i in range(len(vkey)):
        mangled = vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :]
        with pytest.raises(ConfigError):
            NoteVerifier.from_verifier_key(mangled)


def test_wrong_length_key_with_adjusted_key_id_rejected() -> None:
    # From Go's TestNewVerifier: the key id matches, the key is too long.
    with pytest.raises(ConfigError):
        NoteVerifier.from_verifier_key(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )


def test_unknown_algorithm_with_adjusted_key_id_rejected() -> None:
    # From Go's TestNewVerifier: type byte 0x65 instead of 0x01.
    with pytest.raises(ConfigError):
        NoteVerifier.from_verifier_key(
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        )


def test_verifier_key_with_other_key_id_rejected() -> None:
    with pytest.raises(ConfigError):
        NoteVerifier.from_verifier_key(PETER_VKEY.replace("c74f20a3", "c74f20a4"))


def test_verifier_key_for_other_name_rejected() -> None:
    # Renaming a key changes its id; a key cannot be re-labelled.
    with pytest.raises(ConfigError):
        NoteVerifier.from_verifier_key(PETER_VKEY.replace("PeterNeumann", "PeterNeumanm"))


def test_verifier_key_with_uppercase_hex_accepted() -> None:
    # Go parses the id with strconv.ParseUint(hash16, 16, 32), which takes either case.
    verifier = NoteVerifier.from_verifier_key(PETER_VKEY.replace("c74f20a3", "C74F20A3"))
    assert verifier.verifier_key == PETER_VKEY


def test_verifier_constructor_checks_key_id() -> None:
    raw = public_key_bytes(seeded_key("ctor"))
    good = compute_key_id("ctor.example", raw)
    assert NoteVerifier("ctor.example", good, raw).key_id == good
    with pytest.raises(ConfigError):
        NoteVerifier("ctor.example", b"\x00\x00\x00\x00", raw)


def test_verifier_rejects_short_public_key() -> None:
    with pytest.raises(ConfigError):
        NoteVerifier.from_public_key("short.example", b"\x01" * 31)


def test_verifier_from_public_key_object_and_bytes_agree() -> None:
    key = seeded_key("agree")
    by_object = NoteVerifier.from_public_key("agree.example", key.public_key())
    by_bytes = NoteVerifier.from_public_key("agree.example", public_key_bytes(key))
    assert by_object == by_bytes
    assert hash(by_object) == hash(by_bytes)
    assert isinstance(by_object.public_key, Ed25519PublicKey)
    assert by_object.public_key_raw == public_key_bytes(key)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a b",
        "a+b",
        "a\tb",
        "a\nb",
        "a\x00b",
        "a\x85b",  # NEL: Unicode White_Space
        "a\xa0b",  # no-break space
        "a\u2003b",  # em space
        "a\u2028b",  # line separator
        "a\u3000b",  # ideographic space
        "a\ud800b",  # lone surrogate: not UTF-8
    ],
)
def test_invalid_key_name_rejected(name: str) -> None:
    assert not is_valid_key_name(name)
    with pytest.raises(ConfigError):
        NoteSigner(name, seeded_key("names"))


@pytest.mark.parametrize(
    "name", ["example.com/log42", "hashfed:node-a", "PeterNeumann", "ünïcødé", "a\u200bb"]
)
def test_valid_key_name_accepted(name: str) -> None:
    assert is_valid_key_name(name)
    assert NoteSigner(name, seeded_key("names")).name == name


def test_signer_and_verifier_agree() -> None:
    # golang.org/x/mod/sumdb/note testSignerAndVerifier.
    signer = NoteSigner("EnochRoot", generate_signing_key())
    verifier = signer.verifier()
    assert verifier.name == signer.name
    assert verifier.key_id == signer.key_id
    signature = bytearray(signer.sign(b"hi"))
    assert verifier.verify(b"hi", bytes(signature))
    signature[0] ^= 1
    assert not verifier.verify(b"hi", bytes(signature))
    assert not verifier.verify(b"hj", signer.sign(b"hi"))
    assert not verifier.verify(b"hi", signer.sign(b"hi")[:63])


def test_signer_repr_does_not_show_the_private_key() -> None:
    key = seeded_key("repr")
    seed = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    text = repr(NoteSigner("repr.example", key))
    assert seed.hex() not in text
    assert base64.b64encode(seed).decode() not in text


def test_public_key_bytes_and_fingerprint() -> None:
    key = seeded_key("fingerprint")
    raw = public_key_bytes(key)
    assert raw == public_key_bytes(key.public_key())
    assert len(raw) == 32
    assert fingerprint(raw) == "sha256:" + hashlib.sha256(raw).hexdigest()
    with pytest.raises(ValueError, match="32"):
        fingerprint(raw[:31])


def test_generated_keys_differ() -> None:
    assert public_key_bytes(generate_signing_key()) != public_key_bytes(generate_signing_key())


# --- key files -------------------------------------------------------------------------------


def test_saved_key_loads_back_with_mode_0600(tmp_path: Path) -> None:
    key = seeded_key("file")
    path = tmp_path / "node.key"
    save_private_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8
    assert public_key_bytes(load_private_key(path)) == public_key_bytes(key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]  # no temp file left


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    save_private_key(path, seeded_key("first"))
    before = path.read_bytes()
    with pytest.raises(ConfigError) as excinfo:
        save_private_key(path, seeded_key("second"))
    assert str(path) in str(excinfo.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]


def test_save_refuses_to_replace_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "node.key").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError):
        save_private_key(tmp_path / "node.key", seeded_key("link"))
    assert not (tmp_path / "elsewhere").exists()


def test_save_overwrites_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    save_private_key(path, seeded_key("first"))
    path.chmod(0o644)
    save_private_key(path, seeded_key("second"), overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_key_bytes(load_private_key(path)) == public_key_bytes(seeded_key("second"))


def test_save_into_missing_folder_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        save_private_key(tmp_path / "missing" / "node.key", seeded_key("nowhere"))


def test_missing_key_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "absent.key"
    with pytest.raises(ConfigError) as excinfo:
        load_private_key(path)
    assert str(path) in str(excinfo.value)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o666])
def test_group_or_other_accessible_key_rejected(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    save_private_key(path, seeded_key("perm"))
    path.chmod(mode)
    with pytest.raises(ConfigError) as excinfo:
        load_private_key(path)
    assert str(path) in str(excinfo.value)
    assert f"{mode:04o}" in str(excinfo.value)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_key_accepted(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    save_private_key(path, seeded_key("owner"))
    path.chmod(mode)
    assert isinstance(load_private_key(path), Ed25519PrivateKey)


def test_symlink_to_private_key_file_followed(tmp_path: Path) -> None:
    save_private_key(tmp_path / "real.key", seeded_key("link"))
    (tmp_path / "node.key").symlink_to(tmp_path / "real.key")
    assert isinstance(load_private_key(tmp_path / "node.key"), Ed25519PrivateKey)


def test_directory_as_key_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.mkdir(mode=0o700)
    with pytest.raises(ConfigError) as excinfo:
        load_private_key(path)
    assert str(path) in str(excinfo.value)


def test_fifo_as_key_file_rejected_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    os.mkfifo(path, 0o600)
    with pytest.raises(ConfigError):
        load_private_key(path)


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a key\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"\x00" * 48,
    ],
)
def test_corrupt_key_file_rejected(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "node.key"
    _write_private(path, data)
    with pytest.raises(ConfigError) as excinfo:
        load_private_key(path)
    assert str(path) in str(excinfo.value)


def test_truncated_key_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    save_private_key(path, seeded_key("truncated"))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ConfigError):
        load_private_key(path)


def test_rsa_key_file_rejected(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "node.key"
    _write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    with pytest.raises(ConfigError) as excinfo:
        load_private_key(path)
    assert str(path) in str(excinfo.value)


def test_ec_key_file_rejected(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "node.key"
    _write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    with pytest.raises(ConfigError):
        load_private_key(path)


def test_encrypted_key_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    _write_private(
        path,
        seeded_key("encrypted").private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        ),
    )
    with pytest.raises(ConfigError):
        load_private_key(path)


def test_oversized_key_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    save_private_key(path, seeded_key("big"))
    with path.open("ab") as handle:
        handle.write(b"#" * MAX_KEY_FILE_BYTES)
    with pytest.raises(ConfigError):
        load_private_key(path)


def test_save_without_hard_links_still_refuses_to_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "node.key"
    save_private_key(path, seeded_key("no links"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(ConfigError):
        save_private_key(path, seeded_key("second"))
    assert public_key_bytes(load_private_key(path)) == public_key_bytes(seeded_key("no links"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]
