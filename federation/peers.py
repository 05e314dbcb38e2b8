"""Who is who: peers we pull from, owners whose keys we trust, and node.toml edits.

A peer is configured in ``node.toml``::

    [[peers]]
    node_id = "be-fccu"
    url = "https://fccu.example:8443"
    fingerprint = "sha256:…"          # optional: pin its TLS certificate
    signing_keys = ["be-fccu+1a2b3c4d+AQ…"]
    labels = ["baseline", "restricted"]  # what it may receive from us
    subscribe = ["be-fccu/*"]           # what we pull from it ([] = nothing)
    interval_seconds = 60
    witnesses = ["nl-nca+…"]            # optional: cosigner keys its lists need …
    witness_quorum = 1                  # … from this many of them
    cosigns = false                     # true: it witnesses our lists

and an owner whose lists reach us only through relays (we verify its
signature, whoever serves the list) in::

    [[trusted_owners]]
    node_id = "int-icse"
    signing_keys = ["int-icse+…"]

The keys that may sign ``owner``'s lists are the union of the two; a relay's
own key never counts for a list it does not own.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from config import NODE_TOML, NodeSettings, PeerSettings, TrustedOwner, load_settings
from crypto.errors import ConfigError, InputError
from crypto.keys import NoteVerifier
from federation.policy import parse_subscription
from node.identity.principals import add_principal, default_issuer, mark_changed
from node.identity.trust import TrustAnchors
from node.store import Store

__all__ = [
    "add_peer",
    "add_trusted_owner",
    "check_peer",
    "find_peer",
    "owner_verifiers",
    "register_peer",
    "remove_peer",
]

_NODE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_FINGERPRINT = re.compile(r"^sha256:[0-9a-f]{64}$")
_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?$")


def owner_verifiers(settings: NodeSettings, owner: str) -> list[NoteVerifier]:
    """The keys trusted to sign ``owner``'s lists: its peer entry and trusted-owner entry.

    Raises:
        ConfigError: a configured key is malformed.
    """
    keys: list[str] = []
    for peer in settings.peers:
        if peer.node_id == owner:
            keys.extend(peer.signing_keys)
    for trusted in settings.trusted_owners:
        if trusted.node_id == owner:
            keys.extend(trusted.signing_keys)
    return [NoteVerifier.from_verifier_key(k) for k in dict.fromkeys(keys)]


def find_peer(settings: NodeSettings, node_id: str) -> PeerSettings | None:
    return next((p for p in settings.peers if p.node_id == node_id), None)


def check_peer(peer: PeerSettings) -> None:
    """Validate a peer entry beyond its schema.

    Raises:
        InputError: a bad node id, URL, fingerprint, key, label or pattern.
    """
    if not _NODE_ID.fullmatch(peer.node_id):
        raise InputError("expected lowercase letters, digits and '-'", where="node_id")
    if not peer.url.startswith("https://"):
        raise InputError("peers are reached over https:// only", where="url")
    if peer.fingerprint is not None and not _FINGERPRINT.fullmatch(peer.fingerprint):
        raise InputError("expected sha256:<64 lowercase hex digits>", where="fingerprint")
    for i, key in enumerate(peer.signing_keys):
        _check_key(key, peer.node_id, where=f"signing_keys[{i}]")
    for i, pattern in enumerate(peer.subscribe):
        try:
            parse_subscription(pattern)
        except ConfigError as exc:
            raise InputError(exc.message, where=f"subscribe[{i}]") from None


def _check_key(key: str, node_id: str, *, where: str) -> None:
    try:
        verifier = NoteVerifier.from_verifier_key(key)
    except ConfigError as exc:
        raise InputError(exc.message, where=where) from None
    # A node signs with a key named after itself (node/datadir.py); another
    # name here is almost certainly a key pasted into the wrong peer.
    if verifier.name != node_id:
        raise InputError(f"the key is named {verifier.name!r}, not {node_id!r}", where=where)


# --- node.toml edits --------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        if any(ord(c) < 0x20 for c in escaped):
            raise InputError("control characters are not allowed", where="node.toml value")
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _table(name: str, values: dict[str, Any]) -> str:
    lines = [f"[[{name}]]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"


def _sections(text: str) -> list[tuple[str | None, str]]:
    """Split TOML text into (table header name or None for the top, section text)."""
    out: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in text.splitlines(keepends=True):
        m = _HEADER.match(line)
        if m:
            out.append((m.group(1), [line]))
        else:
            out[-1][1].append(line)
    return [(name, "".join(lines)) for name, lines in out]


def _edit(
    data_dir: Path, change: Callable[[str], str], check: Callable[[dict[str, Any]], None]
) -> None:
    """Rewrite node.toml atomically, after checking the result parses and validates."""
    path = data_dir / NODE_TOML
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; run `hashfed init` first") from None
    new = change(text)
    try:
        parsed = tomllib.loads(new)
    except tomllib.TOMLDecodeError as exc:  # pragma: no cover - our own writer
        raise ConfigError(f"{path}: the edit would not be valid TOML: {exc}") from None
    check(parsed)
    try:
        NodeSettings(data_dir=data_dir, **parsed)
    except ValueError as exc:
        raise ConfigError(f"{path}: the edit would make the settings invalid: {exc}") from None
    tmp = path.with_name(f".{NODE_TOML}.{os.getpid()}.tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)


def _append(text: str, block: str) -> str:
    # Arrays of tables may follow any table; a blank line keeps the file readable.
    return text.rstrip("\n") + "\n\n" + block


def add_peer(data_dir: Path, peer: PeerSettings) -> None:
    """Append a ``[[peers]]`` table to node.toml.

    Raises:
        InputError: the peer is invalid or already configured.
        ConfigError: node.toml is missing or the result would not load.
    """
    check_peer(peer)

    def check(parsed: dict[str, Any]) -> None:
        ids = [p.get("node_id") for p in parsed.get("peers", [])]
        if ids.count(peer.node_id) != 1:
            raise InputError(f"peer {peer.node_id!r} is configured already", where="node_id")

    values = peer.model_dump()
    _edit(data_dir, lambda text: _append(text, _table("peers", values)), check)


def remove_peer(data_dir: Path, node_id: str) -> bool:
    """Remove the ``[[peers]]`` table of ``node_id`` from node.toml; False if absent.

    Raises:
        ConfigError: node.toml is missing or the result would not load.
    """
    found = False

    def change(text: str) -> str:
        nonlocal found
        kept = []
        for name, section in _sections(text):
            if name == "peers":
                parsed = tomllib.loads(section)
                if parsed["peers"][0].get("node_id") == node_id:
                    found = True
                    continue
            kept.append(section)
        return "".join(kept)

    def check(parsed: dict[str, Any]) -> None:
        if any(p.get("node_id") == node_id for p in parsed.get("peers", [])):
            raise ConfigError(f"peer {node_id!r} is still in node.toml after removing it")

    _edit(data_dir, change, check)
    return found


def add_trusted_owner(data_dir: Path, owner: TrustedOwner) -> None:
    """Append (or extend) a ``[[trusted_owners]]`` table in node.toml.

    Raises:
        InputError: a bad node id or key.
        ConfigError: node.toml is missing or the result would not load.
    """
    if not _NODE_ID.fullmatch(owner.node_id):
        raise InputError("expected lowercase letters, digits and '-'", where="node_id")
    if not owner.signing_keys:
        raise InputError("at least one signing key is needed", where="signing_keys")
    for i, key in enumerate(owner.signing_keys):
        _check_key(key, owner.node_id, where=f"signing_keys[{i}]")
    _edit(
        data_dir,
        lambda text: _append(text, _table("trusted_owners", owner.model_dump())),
        lambda parsed: None,
    )


def register_peer(store: Store, data_dir: Path, peer: PeerSettings, *, actor: str) -> None:
    """Add ``peer`` to node.toml and register it as a principal (role peer, its labels).

    The principal is found by the pinned fingerprint if there is one, else by
    a CA-issued certificate naming the peer's node id (api/auth.py).

    Raises:
        InputError: the peer is invalid, or configured or registered already.
        ConfigError: node.toml is missing or the result would not load.
    """
    check_peer(peer)
    if store.get_principal(name=peer.node_id) is not None:
        raise InputError(f"a principal named {peer.node_id!r} exists already", where="node_id")
    if peer.fingerprint and store.get_principal(cert_fingerprint=peer.fingerprint) is not None:
        raise InputError("another principal has this certificate", where="fingerprint")
    # Without a pinned fingerprint the peer is CA-issued: bound to the node's one CA.
    issuer = (
        None
        if peer.fingerprint
        else default_issuer(TrustAnchors.from_settings(load_settings(data_dir)), strict=True)
    )
    add_peer(data_dir, peer)
    try:
        add_principal(
            store,
            name=peer.node_id,
            role="peer",
            labels=peer.labels,
            fingerprint=peer.fingerprint,
            actor=actor,
            issuer_fingerprint=issuer,
        )
    except BaseException:
        remove_peer(data_dir, peer.node_id)  # all or nothing
        raise
    mark_changed(data_dir)  # running API processes drop their cached principals
