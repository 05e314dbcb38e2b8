"""HTTP content coding and validators for bulk responses (feeds, TAXII, MISP, exports).

**Compression.** :class:`CompressionMiddleware` encodes the responses of the
paths it is given with the best coding the client accepts: ``zstd`` (RFC 8878)
when asked for and the ``zstandard`` module is present, else ``gzip``, else
none. Bodies are compressed as they stream, a chunk at a time, so a 1M-hash
feed never sits in memory; responses without a body (304, HEAD) keep theirs.
Every such response says ``Vary: Accept-Encoding``.

**ETags.** An encoded representation is another representation (RFC 9110
§8.8.3): its ETag gets ``-gzip`` or ``-zstd`` inside the quotes, as Apache
and nginx do. :func:`etag_matches` is the ``If-None-Match`` test of RFC 9110
§13.1.2: the *weak* comparison (``W/"x"`` matches ``"x"``), ``*`` matches
anything, and a tag the client got with a content coding matches the
representation it came from.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

try:  # the zstd coding is offered only where the module is installed
    import zstandard
except ImportError:  # pragma: no cover - a runtime dependency; tested where present
    zstandard = None  # type: ignore[assignment]

__all__ = [
    "CompressionMiddleware",
    "choose_coding",
    "etag_matches",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_CODINGS = ("zstd", "gzip")
# gzip level 6 (zlib's default) costs ~3x level 1 for a few percent on hex;
# level 4 is the knee measured on a 1M-hash feed (docs/PERFORMANCE.md).
GZIP_LEVEL = 4
ZSTD_LEVEL = 3
# A body is sent as soon as this much compressed output is ready: the client
# sees progress on a long stream, and each chunk is worth a TLS record.
_FLUSH_BYTES = 1 << 16


def _parse_accept_encoding(header: str) -> dict[str, float]:
    prefs: dict[str, float] = {}
    for part in header.split(",")[:32]:  # a header is bounded; so is the work on it
        coding, *params = (p.strip().lower() for p in part.split(";"))
        if not coding:
            continue
        q = 1.0
        for p in params:
            name, _, value = p.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        prefs[coding] = q
    return prefs


def choose_coding(accept_encoding: str | None) -> str | None:
    """The content coding to answer with: ``"zstd"``, ``"gzip"`` or ``None`` (identity).

    The client's highest ``q`` wins; at equal ``q`` zstd (faster, smaller)
    before gzip. ``*`` stands for any coding not named.
    """
    if not accept_encoding:
        return None
    prefs = _parse_accept_encoding(accept_encoding)
    star = prefs.get("*", 0.0)
    best: tuple[float, str] | None = None
    for coding in _CODINGS:
        if coding == "zstd" and zstandard is None:
            continue
        q = prefs.get(coding, star)
        if q > 0 and (best is None or q > best[0]):
            best = (q, coding)
    return best[1] if best else None


def _opaque(tag: str) -> str:
    """An entity tag without ``W/`` and without a content-coding suffix."""
    tag = tag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    for coding in _CODINGS:
        suffix = f'-{coding}"'
        if tag.endswith(suffix):
            return tag[: -len(suffix)] + '"'
    return tag


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` matches ``etag`` by weak comparison (RFC 9110 §13.1.2)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    mine = _opaque(etag)
    return any(_opaque(t) == mine for t in if_none_match.split(",")[:64] if t.strip())


def _tag_etag(etag: bytes, coding: str) -> bytes:
    weak = etag.startswith(b"W/")
    body = etag[2:] if weak else etag
    if not (body.startswith(b'"') and body.endswith(b'"')):
        return etag
    return (b"W/" if weak else b"") + body[:-1] + b"-" + coding.encode() + b'"'


class _Encoder:
    def __init__(self, coding: str) -> None:
        self.coding = coding
        if coding == "gzip":
            self._z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        else:
            self._c = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()

    def feed(self, data: bytes) -> bytes:
        return self._z.compress(data) if self.coding == "gzip" else self._c.compress(data)

    def finish(self) -> bytes:
        return self._z.flush() if self.coding == "gzip" else self._c.flush()


class CompressionMiddleware:
    """Content-codes the responses of paths under ``prefixes`` or ending in ``suffixes``."""

    def __init__(
        self, app: ASGIApp, *, prefixes: tuple[str, ...], suffixes: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.prefixes = prefixes
        self.suffixes = suffixes

    def _applies(self, scope: Scope) -> bool:
        if scope["type"] != "http":
            return False
        path: str = scope.get("path", "")
        return path.startswith(self.prefixes) or path.endswith(self.suffixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._applies(scope):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        coding = choose_coding(headers.get(b"accept-encoding", b"").decode("latin-1"))
        encoder: _Encoder | None = None
        pending: list[bytes] = []
        pending_size = 0

        async def wrapped(message: Message) -> None:
            nonlocal encoder, pending_size
            if message["type"] == "http.response.start":
                raw = list(message.get("headers") or [])
                out: list[tuple[bytes, bytes]] = []
                already = False
                for k, v in raw:
                    name = k.lower()
                    if name == b"content-encoding":
                        already = True
                    out.append((k, v))
                status = message["status"]
                encode = (
                    coding is not None
                    and not already
                    and status not in (204, 304)
                    and scope.get("method") != "HEAD"
                    and status < 300
                )
                final: list[tuple[bytes, bytes]] = []
                for k, v in out:
                    name = k.lower()
                    if encode and name == b"content-length":
                        continue
                    if name == b"etag" and coding is not None and not already:
                        # A 304 names the tag of the representation the client would get.
                        v = _tag_etag(v, coding)
                    final.append((k, v))
                final.append((b"vary", b"Accept-Encoding"))
                if encode:
                    assert coding is not None
                    final.append((b"content-encoding", coding.encode()))
                    encoder = _Encoder(coding)
                await send({**message, "headers": final})
                return
            if message["type"] != "http.response.body" or encoder is None:
                await send(message)
                return
            more = message.get("more_body", False)
            chunk = encoder.feed(message.get("body", b""))
            if chunk:
                pending.append(chunk)
                pending_size += len(chunk)
            if not more:
                pending.append(encoder.finish())
            if not more or pending_size >= _FLUSH_BYTES:
                body = b"".join(pending)
                pending.clear()
                pending_size = 0
                await send({"type": "http.response.body", "body": body, "more_body": more})

        await self.app(scope, receive, wrapped)
