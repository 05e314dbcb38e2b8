"""Talking to peers over mutual TLS: the only module of hashfed that dials out.

Every network failure becomes a ``PeerError`` here, in one place
(:meth:`PeerClient._errors`):

    httpx.TimeoutException, pull deadline passed  → PeerTimeoutError
    httpx.NetworkError, ssl.SSLError, OSError     → PeerUnreachableError
    bad status, content type, body, or TLS peer  → PeerProtocolError
    more bytes, entries or line bytes than allowed → PeerLimitError

and every response is bounded: bytes (``limits.max_response_bytes``, counted
after any content decoding, so a compressed bomb is cut too), entries per page
(exactly what was asked), bytes per line, and time (``pull_timeout_seconds``
for a whole pull, checked between chunks, so a peer trickling bytes is cut
as surely as one that sends nothing).

The server certificate must chain to our trust anchors (federation CAs and
pinned certificates) *and* belong to the peer we meant to reach: its pinned
fingerprint if one is configured, else a certificate naming the peer's node id.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import httpx
from cryptography import x509
from pydantic import BaseModel, ValidationError

from config import Limits, NodeSettings, PeerSettings
from crypto.errors import (
    HashfedError,
    InputError,
    PeerAuthError,
    PeerError,
    PeerLimitError,
    PeerProtocolError,
    PeerTimeoutError,
    PeerUnreachableError,
    is_auth_alert,
)
from crypto.pki import cert_fingerprint, node_id_from_certificate
from crypto.tls import MIN_TLS_VERSION, TLS12_CIPHERS, client_context
from federation.protocol import (
    MAX_ENTRY_LINE_BYTES,
    NDJSON,
    Catalog,
    ConsistencyProof,
    EntryParser,
    NodeInfo,
    NotifyRequest,
    NotifyResponse,
    decode_proof,
)
from node.identity.trust import PINNED_DIR

if TYPE_CHECKING:
    from node.store import EntryTuple

__all__ = ["AdminClient", "PeerClient", "trust_anchors"]

M = TypeVar("M", bound=BaseModel)

_API = "/federation/v1"
# JSON documents (node info, catalog, proofs) are far smaller than a page of
# entries; a catalog of 10,000 lists with 1 KB notes is ~15 MB.
_MAX_JSON_BYTES = 32 * 1024 * 1024
# An error body is read only to name the error code.
_MAX_ERROR_BYTES = 4096
# A single request may wait this long for a connection or the next bytes
# (the pull deadline cuts the whole pull shorter when it is near).
_CONNECT_SECONDS = 10.0
_READ_SECONDS = 30.0
_NOTIFY_SECONDS = 5.0


def trust_anchors(settings: NodeSettings) -> tuple[list[Path], list[Path]]:
    """CA files and pinned certificate files this node trusts for peers."""
    cas = [settings.path(p) for p in settings.tls_ca_files]
    own_ca = settings.path("ca/ca.crt")
    if own_ca.exists() and own_ca not in cas:
        cas.append(own_ca)
    pinned = [settings.path(p) for p in settings.tls_pinned_cert_files]
    folder = settings.path(PINNED_DIR)
    if folder.is_dir():
        pinned += sorted(folder.glob("*.crt"))
    return cas, pinned


class PeerClient:
    """One peer's federation endpoints, with every response bounded."""

    def __init__(
        self,
        *,
        peer_id: str,
        url: str,
        ssl_context: ssl.SSLContext,
        limits: Limits,
        fingerprint: str | None = None,
    ) -> None:
        self.peer_id = peer_id
        self.limits = limits
        self.fingerprint = fingerprint
        self.deadline: float | None = None
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            verify=ssl_context,
            timeout=httpx.Timeout(_READ_SECONDS, connect=_CONNECT_SECONDS),
            follow_redirects=False,
            trust_env=False,  # no proxies from the environment: peers are dialled directly
        )

    @classmethod
    def for_peer(cls, settings: NodeSettings, peer: PeerSettings) -> PeerClient:
        """A client for ``peer`` presenting this node's certificate.

        Raises:
            ConfigError: the node's TLS files or trust anchors are unusable.
        """
        cas, pinned = trust_anchors(settings)
        ctx = client_context(
            settings.path(settings.tls_cert_file),
            settings.path(settings.tls_key_file),
            ca_files=cas,
            pinned_cert_files=pinned,
        )
        return cls(
            peer_id=peer.node_id,
            url=peer.url,
            ssl_context=ctx,
            limits=settings.limits,
            fingerprint=peer.fingerprint,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PeerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the one place foreign exceptions become ours ------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        peer = self.peer_id
        try:
            yield
        except HashfedError:
            raise
        except httpx.TimeoutException as exc:
            raise PeerTimeoutError(peer=peer, reason=f"timed out ({type(exc).__name__})") from None
        except (httpx.NetworkError, ssl.SSLError) as exc:
            if is_auth_alert(str(exc)):
                raise PeerAuthError(peer=peer, reason=_describe(exc)) from None
            raise PeerUnreachableError(peer=peer, reason=_describe(exc)) from None
        except (httpx.ProtocolError, httpx.DecodingError, httpx.TooManyRedirects) as exc:
            raise PeerProtocolError(peer=peer, reason=_describe(exc)) from None
        except httpx.HTTPError as exc:
            raise PeerError(peer=peer, reason=_describe(exc)) from None
        except OSError as exc:
            raise PeerUnreachableError(peer=peer, reason=_describe(exc)) from None

    def _timeout(self, seconds: float = _READ_SECONDS) -> httpx.Timeout:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise PeerTimeoutError(peer=self.peer_id, reason="the pull took too long")
            seconds = min(seconds, left)
        return httpx.Timeout(seconds, connect=min(_CONNECT_SECONDS, seconds))

    def _check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise PeerTimeoutError(peer=self.peer_id, reason="the pull took too long")

    def _check_server(self, resp: httpx.Response) -> None:
        """The TLS peer is the node we meant: pinned fingerprint, or its node id."""
        stream = resp.extensions.get("network_stream")
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        # httpcore hands out the low-level _ssl object: the flag is positional there.
        der = ssl_object.getpeercert(True) if ssl_object is not None else None
        if not der:
            raise PeerProtocolError(peer=self.peer_id, reason="no server certificate to check")
        if self.fingerprint is not None:
            got = cert_fingerprint(der)
            if got != self.fingerprint:
                raise PeerProtocolError(
                    peer=self.peer_id,
                    reason=f"server certificate {got} is not the pinned {self.fingerprint}",
                )
            return
        named = node_id_from_certificate(x509.load_der_x509_certificate(der))
        if named != self.peer_id:
            raise PeerProtocolError(
                peer=self.peer_id,
                reason=f"server certificate names node {named!r}, expected {self.peer_id!r}",
            )

    def _check_status(self, resp: httpx.Response, what: str) -> None:
        if resp.status_code == 200:
            return
        body = b""
        for chunk in resp.iter_bytes():
            body += chunk
            if len(body) > _MAX_ERROR_BYTES:
                break
        code = "?"
        try:
            import json

            parsed = json.loads(body[:_MAX_ERROR_BYTES])
            if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
                code = parsed["error"][:64]
        except ValueError:
            pass
        error = PeerAuthError if resp.status_code in (401, 403) else PeerProtocolError
        raise error(peer=self.peer_id, reason=f"{what}: HTTP {resp.status_code} ({code})")

    def _read(self, resp: httpx.Response, cap: int) -> bytes:
        body = bytearray()
        for chunk in resp.iter_bytes():
            body += chunk
            if len(body) > cap:
                raise PeerLimitError(
                    peer=self.peer_id, limit="response bytes", value=len(body), maximum=cap
                )
            self._check_deadline()
        return bytes(body)

    def _get_json(self, path: str, model: type[M], params: dict[str, Any] | None = None) -> M:
        cap = min(_MAX_JSON_BYTES, self.limits.max_response_bytes)
        with (
            self._errors(),
            self._http.stream("GET", path, params=params, timeout=self._timeout()) as resp,
        ):
            self._check_server(resp)
            self._check_status(resp, path)
            body = self._read(resp, cap)
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"]) if exc.errors() else "?"
            raise PeerProtocolError(
                peer=self.peer_id, reason=f"{path}: malformed answer at {where}"
            ) from None

    # --- endpoints -----------------------------------------------------------------------------

    def node_info(self) -> NodeInfo:
        """``GET /federation/v1/node``."""
        return self._get_json(f"{_API}/node", NodeInfo)

    def catalog(self) -> Catalog:
        """``GET /federation/v1/lists``."""
        return self._get_json(f"{_API}/lists", Catalog)

    def consistency_proof(self, owner: str, name: str, size1: int, size2: int) -> list[bytes]:
        """``GET .../proof/consistency``: hashes, checked for shape only."""
        got = self._get_json(
            f"{_API}/lists/{owner}/{name}/proof/consistency",
            ConsistencyProof,
            {"from": size1, "to": size2},
        )
        if (got.size1, got.size2) != (size1, size2):
            raise PeerProtocolError(peer=self.peer_id, reason="consistency proof for other sizes")
        return decode_proof(got.proof, peer=self.peer_id)

    def entries(self, owner: str, name: str, *, start: int, limit: int) -> list[EntryTuple]:
        """``GET .../entries``: exactly ``limit`` entries from ``start``, parsed and checked.

        Raises:
            PeerLimitError: more bytes than ``max_response_bytes``, more entries
                than asked for, or an overlong line (an oversized page, an endless stream).
            PeerTimeoutError: the pull's deadline passed (a slow stream).
            PeerProtocolError: fewer entries, a malformed line, a wrong seq.
        """
        cap = self.limits.max_response_bytes
        parser = EntryParser(peer=self.peer_id, next_seq=start)
        out: list[EntryTuple] = []
        parse = parser.parse
        append = out.append
        path = f"{_API}/lists/{owner}/{name}/entries"
        with (
            self._errors(),
            self._http.stream(
                "GET", path, params={"start": start, "limit": limit}, timeout=self._timeout()
            ) as resp,
        ):
            self._check_server(resp)
            self._check_status(resp, path)
            ctype = resp.headers.get("content-type", "").split(";")[0].strip()
            if ctype != NDJSON:
                raise PeerProtocolError(peer=self.peer_id, reason=f"{path}: content type {ctype!r}")
            received = 0
            tail = b""
            for chunk in resp.iter_bytes():
                received += len(chunk)
                if received > cap:
                    raise PeerLimitError(
                        peer=self.peer_id, limit="response bytes", value=received, maximum=cap
                    )
                self._check_deadline()
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                if len(tail) > MAX_ENTRY_LINE_BYTES:
                    raise PeerLimitError(
                        peer=self.peer_id,
                        limit="entry line bytes",
                        value=len(tail),
                        maximum=MAX_ENTRY_LINE_BYTES,
                    )
                if len(out) + len(lines) > limit:
                    raise PeerLimitError(
                        peer=self.peer_id,
                        limit="entries per page",
                        value=len(out) + len(lines),
                        maximum=limit,
                    )
                for line in lines:
                    append(parse(line))
            if tail:
                raise PeerProtocolError(peer=self.peer_id, reason="the last line is cut off")
        if len(out) != limit:
            raise PeerProtocolError(
                peer=self.peer_id, reason=f"asked for {limit} entries from {start}, got {len(out)}"
            )
        return out

    def post_sighting(self, note: str) -> bool:
        """``POST /federation/v1/sightings``: hand a signed sighting to the next hop.

        True if the peer took it, False if it had it already (a replay is
        what a retry after a lost answer looks like: the note arrived).

        Raises:
            PeerProtocolError: any other refusal (the error code is in the reason).
        """
        with self._errors():
            resp = self._http.post(
                f"{_API}/sightings", json={"note": note}, timeout=self._timeout(_NOTIFY_SECONDS)
            )
            self._check_server(resp)
            if resp.status_code in (200, 201, 202):
                return True
            if resp.status_code == 409:
                return False
            self._check_status(resp, f"{_API}/sightings")
        return True

    def notify(self, owner: str, name: str, size: int) -> bool:
        """``POST /federation/v1/notify``; True if the peer scheduled a pull."""
        body = NotifyRequest(owner=owner, name=name, size=size).model_dump()
        with self._errors():
            resp = self._http.post(
                f"{_API}/notify", json=body, timeout=self._timeout(_NOTIFY_SECONDS)
            )
            self._check_server(resp)
            if resp.status_code not in (200, 202):
                raise PeerProtocolError(
                    peer=self.peer_id, reason=f"notify: HTTP {resp.status_code}"
                )
            if len(resp.content) > _MAX_ERROR_BYTES:
                raise PeerProtocolError(peer=self.peer_id, reason="notify: answer too large")
        try:
            return NotifyResponse.model_validate_json(resp.content).scheduled
        except ValidationError:
            raise PeerProtocolError(peer=self.peer_id, reason="notify: malformed answer") from None


class AdminClient:
    """A node's own admin API over mutual TLS (the demo and benchmarks drive nodes with it)."""

    def __init__(
        self,
        url: str,
        *,
        cert_file: Path | None,
        key_file: Path | None,
        ca_files: Sequence[Path] = (),
        pinned_cert_files: Sequence[Path] = (),
        timeout: float = 60.0,
        token: str | None = None,
    ) -> None:
        if cert_file is not None and key_file is not None:
            ctx = client_context(
                cert_file, key_file, ca_files=ca_files, pinned_cert_files=pinned_cert_files
            )
        elif token is not None:
            ctx = token_context(ca_files=ca_files, pinned_cert_files=pinned_cert_files)
        else:
            raise InputError("give a client certificate and key, or a token", where="--cert")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url
        self._http = httpx.Client(
            base_url=url, verify=ctx, timeout=timeout, trust_env=False, headers=headers
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, json: Any = None) -> Any:
        """Send a request and return the decoded JSON answer.

        Raises:
            PeerUnreachableError: the node does not answer (yet).
            PeerProtocolError: a status other than 2xx (the error body's detail
                is in the reason).
        """
        try:
            resp = self._http.request(method, path, json=json)
        except (httpx.NetworkError, httpx.TimeoutException, ssl.SSLError, OSError) as exc:
            if is_auth_alert(str(exc)):
                raise PeerAuthError(peer=self.url, reason=_describe(exc)) from None
            raise PeerUnreachableError(peer=self.url, reason=_describe(exc)) from None
        except httpx.HTTPError as exc:
            raise PeerProtocolError(peer=self.url, reason=_describe(exc)) from None
        if not 200 <= resp.status_code < 300:
            error = PeerAuthError if resp.status_code in (401, 403) else PeerProtocolError
            raise error(
                peer=self.url, reason=f"{method} {path}: HTTP {resp.status_code} {resp.text[:300]}"
            )
        return resp.json() if resp.content else None


def _describe(exc: BaseException) -> str:
    # httpx and ssl messages name hosts and TLS alerts, never request bodies.
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"


# A whole feed of 10M hashes as NDJSON is ~1.5 GB; 4 GiB leaves room, and bounds a lying server.
FEED_MAX_BYTES = 4 * 1024**3
_FEED_READ_SECONDS = 120.0  # a large full feed may pause while the server pages its database
_MAX_ERROR_BYTES = 4096


# --- industry feeds (`hashfed pull`) ----------------------------------------------------


def token_context(
    *, ca_files: Sequence[Path] = (), pinned_cert_files: Sequence[Path] = ()
) -> ssl.SSLContext:
    """A client context without a client certificate (token auth), checking the server.

    With neither CAs nor pins it uses the system's trust store (a node behind a
    public TLS front end); otherwise exactly the given anchors.
    """
    if not ca_files and not pinned_cert_files:
        ctx = ssl.create_default_context()
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        for path in [*ca_files, *pinned_cert_files]:
            try:
                ctx.load_verify_locations(cafile=os.fspath(path))
            except (ssl.SSLError, OSError) as exc:
                raise InputError(f"cannot load as a trust anchor: {exc}", where=str(path)) from None
    ctx.minimum_version = MIN_TLS_VERSION
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return ctx


def cert_context(
    cert: Path, key: Path, *, ca_files: Sequence[Path] = (), pinned_cert_files: Sequence[Path] = ()
) -> ssl.SSLContext:
    """A client context presenting ``cert`` (crypto/tls.py's hardened one)."""
    return client_context(cert, key, ca_files=ca_files, pinned_cert_files=pinned_cert_files)


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
            timeout=httpx.Timeout(read_timeout, connect=_CONNECT_SECONDS),
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
                raise PeerAuthError(peer=self.peer, reason=_describe(exc)) from exc
            raise PeerUnreachableError(peer=self.peer, reason=_describe(exc)) from exc
        except (httpx.ProtocolError, httpx.DecodingError, httpx.TooManyRedirects) as exc:
            raise PeerProtocolError(peer=self.peer, reason=_describe(exc)) from exc
        except httpx.HTTPError as exc:
            raise PeerError(peer=self.peer, reason=_describe(exc)) from exc
        except OSError as exc:
            raise PeerUnreachableError(peer=self.peer, reason=_describe(exc)) from exc

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
