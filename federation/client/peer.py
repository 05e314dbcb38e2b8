"""Talking to peers over mutual TLS: a peer's federation endpoints.

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

import base64
import ssl
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from cryptography import x509
from pydantic import BaseModel, ValidationError

from config import Limits, NodeSettings, PeerSettings
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
from crypto.pki import cert_fingerprint, node_id_from_certificate
from crypto.tls import client_context
from federation.client.connect import CONNECT_SECONDS, describe, trust_anchors
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

if TYPE_CHECKING:
    from node.store import EntryTuple

__all__ = ["PeerClient"]

M = TypeVar("M", bound=BaseModel)

_API = "/federation/v1"
_WITNESS_ADD = "/witness/v1/add-checkpoint"
# JSON documents (node info, catalog, proofs) are far smaller than a page of
# entries; a catalog of 10,000 lists with 1 KB notes is ~15 MB.
_MAX_JSON_BYTES = 32 * 1024 * 1024
# An error body is read only to name the error code.
_MAX_ERROR_BYTES = 4096
# A single request may wait this long for the next bytes (the pull deadline
# cuts the whole pull shorter when it is near).
_READ_SECONDS = 30.0
_NOTIFY_SECONDS = 5.0


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
            timeout=httpx.Timeout(_READ_SECONDS, connect=CONNECT_SECONDS),
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
                raise PeerAuthError(peer=peer, reason=describe(exc)) from None
            raise PeerUnreachableError(peer=peer, reason=describe(exc)) from None
        except (httpx.ProtocolError, httpx.DecodingError, httpx.TooManyRedirects) as exc:
            raise PeerProtocolError(peer=peer, reason=describe(exc)) from None
        except httpx.HTTPError as exc:
            raise PeerError(peer=peer, reason=describe(exc)) from None
        except OSError as exc:
            raise PeerUnreachableError(peer=peer, reason=describe(exc)) from None

    def _timeout(self, seconds: float = _READ_SECONDS) -> httpx.Timeout:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise PeerTimeoutError(peer=self.peer_id, reason="the pull took too long")
            seconds = min(seconds, left)
        return httpx.Timeout(seconds, connect=min(CONNECT_SECONDS, seconds))

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

    def add_checkpoint(self, *, old_size: int, proof: Sequence[bytes], note: str) -> str | int:
        """``POST /witness/v1/add-checkpoint`` (c2sp.org/tlog-witness) of one of our checkpoints.

        Returns:
            The witness's cosignature line, or, when it last cosigned another
            size than ``old_size`` (409), that size: submit again from it.

        Raises:
            PeerProtocolError: any other refusal (a fork, an inconsistent
                proof, an origin it does not know), or a malformed answer.
        """
        lines = [f"old {old_size}", *(base64.b64encode(h).decode("ascii") for h in proof)]
        body = ("\n".join(lines) + "\n\n" + note).encode("utf-8")
        with self._errors():
            resp = self._http.post(
                _WITNESS_ADD,
                content=body,
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=self._timeout(_NOTIFY_SECONDS),
            )
            self._check_server(resp)
            text = self._read(resp, _MAX_ERROR_BYTES).decode("utf-8", "replace")
        if resp.status_code == 409 and resp.headers.get("content-type", "").startswith(
            "text/x.tlog.size"
        ):
            size = text.strip()
            if size.isdigit() and len(size) < 20:
                return int(size)
        if resp.status_code == 200:
            line = text if text.endswith("\n") else text + "\n"
            if line.startswith("— ") and line.count("\n") == 1:
                return line
            raise PeerProtocolError(peer=self.peer_id, reason="add-checkpoint: malformed answer")
        raise PeerProtocolError(
            peer=self.peer_id,
            reason=f"add-checkpoint: HTTP {resp.status_code}: {text.strip()[:200]}",
        )

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
