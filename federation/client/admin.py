"""A node's own admin API over mutual TLS or a token.

The demo and the benchmarks drive nodes with it, and ``hashfed scan --node``
matches against a remote node with it (federation/scan_remote.py).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from crypto.errors import (
    InputError,
    PeerAuthError,
    PeerProtocolError,
    PeerUnreachableError,
    is_auth_alert,
)
from crypto.tls import client_context
from federation.client.connect import describe, token_context

__all__ = ["AdminClient"]


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
                raise PeerAuthError(peer=self.url, reason=describe(exc)) from None
            raise PeerUnreachableError(peer=self.url, reason=describe(exc)) from None
        except httpx.HTTPError as exc:
            raise PeerProtocolError(peer=self.url, reason=describe(exc)) from None
        if not 200 <= resp.status_code < 300:
            error = PeerAuthError if resp.status_code in (401, 403) else PeerProtocolError
            raise error(
                peer=self.url, reason=f"{method} {path}: HTTP {resp.status_code} {resp.text[:300]}"
            )
        return resp.json() if resp.content else None
