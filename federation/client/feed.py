"""A node's industry feeds over HTTPS (``hashfed pull``), with a client certificate or a token.

The NDJSON feed is downloaded into a spool file, bounded in bytes; the caller
(federation/feed_pull/) verifies it.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

import httpx

from crypto.errors import (
    HashfedError,
    PeerAuthError,
    PeerError,
    PeerLimitError,
    PeerProtocolError,
    PeerTimeoutError,
    PeerUnreachableError,
    is_auth_alert,
)
from federation.client.connect import CONNECT_SECONDS, describe
from federation.protocol import NDJSON

__all__ = ["FEED_MAX_BYTES", "FeedClient", "Fetched"]

# A whole feed of 10M hashes as NDJSON is ~1.5 GB; 4 GiB leaves room, and bounds a lying server.
FEED_MAX_BYTES = 4 * 1024**3
_FEED_READ_SECONDS = 120.0  # a large full feed may pause while the server pages its database
_MAX_ERROR_BYTES = 4096


@dataclass(frozen=True)
class Fetched:
    resync: bool  # the server refused the cursor: pull again without one
    bytes: int
    lines: int


class FeedClient:
    """A node's feed endpoints over HTTPS, with a client certificate or a token."""

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext,
        token: str | None = None,
        read_timeout: float = _FEED_READ_SECONDS,
    ) -> None:
        self.url = url.rstrip("/")
        self.peer = httpx.URL(self.url).host or self.url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url,
            verify=ssl_context,
            headers=headers,
            timeout=httpx.Timeout(read_timeout, connect=CONNECT_SECONDS),
            follow_redirects=False,
            trust_env=False,  # no proxies from the environment
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FeedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """The one place where httpx and ssl exceptions become PeerErrors."""
        try:
            yield
        except HashfedError:
            raise
        except httpx.TimeoutException as exc:
            raise PeerTimeoutError(
                peer=self.peer, reason=f"timed out ({type(exc).__name__})"
            ) from exc
        except (httpx.NetworkError, ssl.SSLError) as exc:
            if is_auth_alert(str(exc)):
                raise PeerAuthError(peer=self.peer, reason=describe(exc)) from exc
            raise PeerUnreachableError(peer=self.peer, reason=describe(exc)) from exc
        except (httpx.ProtocolError, httpx.DecodingError, httpx.TooManyRedirects) as exc:
            raise PeerProtocolError(peer=self.peer, reason=describe(exc)) from exc
        except httpx.HTTPError as exc:
            raise PeerError(peer=self.peer, reason=describe(exc)) from exc
        except OSError as exc:
            raise PeerUnreachableError(peer=self.peer, reason=describe(exc)) from exc

    def fetch(
        self,
        label: str,
        since: str | None,
        spool: IO[bytes],
        *,
        max_bytes: int = FEED_MAX_BYTES,
        on_bytes: Callable[[int], None] | None = None,
    ) -> Fetched:
        """Download the NDJSON feed into ``spool`` (bounded), or learn that a resync is needed.

        Raises:
            PeerError: the server is unreachable, times out, or answers other than 200/410.
            PeerLimitError: more than ``max_bytes``.
        """
        params = {"format": "ndjson"} | ({"since": since} if since else {})
        path = f"/feeds/v1/{label}/entries"
        with self._errors(), self._http.stream("GET", path, params=params) as resp:
            if resp.status_code == 410:
                return Fetched(True, 0, 0)
            if resp.status_code != 200:
                error = PeerAuthError if resp.status_code in (401, 403) else PeerProtocolError
                raise error(peer=self.peer, reason=f"{path}: {self._error_of(resp)}")
            ctype = resp.headers.get("content-type", "").split(";")[0].strip()
            if ctype != NDJSON:
                raise PeerProtocolError(peer=self.peer, reason=f"{path}: content type {ctype!r}")
            total = lines = 0
            for chunk in resp.iter_bytes(1 << 16):
                total += len(chunk)
                if total > max_bytes:
                    raise PeerLimitError(
                        peer=self.peer, limit="feed bytes", value=total, maximum=max_bytes
                    )
                lines += chunk.count(b"\n")
                spool.write(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
        return Fetched(False, total, lines)

    def _error_of(self, resp: httpx.Response) -> str:
        body = b""
        for chunk in resp.iter_bytes():
            body += chunk
            if len(body) > _MAX_ERROR_BYTES:
                break
        try:
            d = json.loads(body[:_MAX_ERROR_BYTES])
            code, detail = str(d.get("error", "?"))[:64], str(d.get("detail", ""))[:300]
        except (ValueError, AttributeError):
            code, detail = "?", ""
        return f"HTTP {resp.status_code} ({code}) {detail}".strip()
