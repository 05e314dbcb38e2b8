"""Feed cursors: where a partner stands, as an opaque token only this node can make.

A **cursor** is where a partner stands: for each list, the checkpoint size
it has and the first 8 bytes of that checkpoint's root. It is opaque to the
partner and authenticated here::

    hf1.<base64url(JSON payload)>.<base64url(HMAC-SHA256(secret, payload)[:16])>

with the node id and the label in the payload and a 32-byte secret kept in
the data folder (``keys/feed.secret``, made on first use), so a cursor of
another node, of another label, or altered in any byte is refused (400)
rather than silently misread. TAXII ``next`` tokens (node/feeds/stix.py) are
sealed the same way, under another domain.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crypto.errors import ConfigError
from node.feeds.errors import CursorError

__all__ = [
    "CURSOR_PREFIX",
    "FEED_SECRET_FILE",
    "MAX_CURSOR_CHARS",
    "Cursor",
    "Position",
    "decode_cursor",
    "encode_cursor",
    "load_feed_secret",
    "mac",
    "seal",
    "unseal",
]

FEED_SECRET_FILE = "keys/feed.secret"  # noqa: S105  (a path, not a secret)
CURSOR_PREFIX = "hf1"
# A cursor names every list of a feed (~60 bytes each): 16 KiB is ~250 lists,
# far more than a label holds, and short enough for a query string.
MAX_CURSOR_CHARS = 16_384
_MAC_BYTES = 16  # 128-bit tag: forging one is out of reach; halves the cursor overhead
_LIST_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}/[a-z0-9][a-z0-9._-]{0,99}$")
_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]*$")


# --- the per-node secret ----------------------------------------------------------------------


def load_feed_secret(path: Path) -> bytes:
    """The node's 32-byte feed secret, created on first use (mode 0600, atomically).

    Raises:
        ConfigError: the file exists but is not 64 hex digits.
    """
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if another worker made one first: use theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        text = path.read_text().strip()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ConfigError(f"{path}: expected 64 hex digits (delete it to make a new one)")
    return bytes.fromhex(text)


def mac(secret: bytes, domain: bytes, payload: bytes) -> bytes:
    """A truncated HMAC-SHA256 tag, domain-separated (cursor vs TAXII ``next``)."""
    return hmac.new(secret, domain + b"\x00" + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _B64URL_RE.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(secret: bytes, domain: bytes, payload: dict[str, Any]) -> str:
    """``hf1.<payload>.<tag>``: an opaque, authenticated token."""
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return f"{CURSOR_PREFIX}.{_b64(raw)}.{_b64(mac(secret, domain, raw))}"


def unseal(secret: bytes, domain: bytes, token: str, *, node_id: str) -> dict[str, Any]:
    """Open a token made by :func:`seal` on this node.

    Raises:
        CursorError: too long, malformed, from another node, or altered.
    """
    if len(token) > MAX_CURSOR_CHARS:
        raise CursorError(reason=f"longer than {MAX_CURSOR_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != CURSOR_PREFIX:
        raise CursorError(reason=f"expected {CURSOR_PREFIX}.<payload>.<tag>")
    try:
        raw, tag = _unb64(parts[1]), _unb64(parts[2])
        payload = json.loads(raw)
    except ValueError:
        raise CursorError(reason="not valid base64url JSON") from None
    if type(payload) is not dict:
        raise CursorError(reason="payload is not an object")
    # The node id is read before the tag only to say *why* it fails: a cursor
    # of another node can never verify under this node's secret anyway.
    if payload.get("n") != node_id:
        raise CursorError(reason="issued by another node")
    if not hmac.compare_digest(tag, mac(secret, domain, raw)):
        raise CursorError(reason="altered, or issued under another secret")
    return payload


# --- cursors ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """Where a partner stands in one list: a checkpoint size and its root's first bytes."""

    size: int
    root_prefix: bytes


@dataclass(frozen=True)
class Cursor:
    node_id: str
    label: str
    issued_ms: int
    positions: dict[str, Position]


_CURSOR_DOMAIN = b"hashfed feed cursor v1"


def encode_cursor(secret: bytes, cursor: Cursor) -> str:
    """The opaque, authenticated form of ``cursor``."""
    return seal(
        secret,
        _CURSOR_DOMAIN,
        {
            "n": cursor.node_id,
            "l": cursor.label,
            "t": cursor.issued_ms,
            "p": {k: [p.size, p.root_prefix.hex()] for k, p in sorted(cursor.positions.items())},
        },
    )


def decode_cursor(secret: bytes, token: str, *, node_id: str, label: str) -> Cursor:
    """Check and open a cursor for ``label`` on this node.

    Raises:
        CursorError: malformed, altered, of another node or another label.
    """
    payload = unseal(secret, _CURSOR_DOMAIN, token, node_id=node_id)
    if payload.get("l") != label:
        raise CursorError(reason="issued for another feed")
    issued, raw_pos = payload.get("t"), payload.get("p")
    if type(issued) is not int or type(raw_pos) is not dict:
        raise CursorError(reason="payload fields are missing")
    positions: dict[str, Position] = {}
    for name, value in raw_pos.items():
        ok = (
            _LIST_RE.fullmatch(name)
            and type(value) is list
            and len(value) == 2
            and type(value[0]) is int
            and 0 <= value[0] < 2**63
            and type(value[1]) is str
            and re.fullmatch(r"[0-9a-f]{16}", value[1])
        )
        if not ok:
            raise CursorError(reason="a list position is malformed")
        positions[name] = Position(value[0], bytes.fromhex(value[1]))
    return Cursor(node_id, label, issued, positions)
