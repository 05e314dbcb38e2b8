"""What every API benchmark does first: a real ``hashfed serve`` on a free port, ready.

One principal drives each load, so the per-principal rate limit (which
protects a node from one partner) is lifted: it would measure itself.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from crypto.tls import client_context

HASHFED = str(Path(sys.executable).with_name("hashfed"))
UNLIMITED = {
    "HASHFED_LIMITS__RATE_LIMIT_PER_SECOND": "1000000",
    "HASHFED_LIMITS__RATE_LIMIT_BURST": "1000000",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin_context(data: Path) -> ssl.SSLContext:
    """The node's own certificate (its administrator) over mutual TLS."""
    tls = data / "tls"
    return client_context(tls / "node.crt", tls / "node.key", pinned_cert_files=[tls / "node.crt"])


def start_serve(
    data: Path, port: int, env: dict[str, str] | None = None, *, timeout: float = 600.0
) -> tuple[subprocess.Popen[bytes], float]:
    """Start the node in ``data`` on ``port``; returns the process and seconds to ready."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [HASHFED, "serve", "--data", str(data), "--port", str(port)],
        env={**os.environ, **UNLIMITED, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=(data / "serve.log").open("wb"),
    )
    ctx = admin_context(data)
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit((data / "serve.log").read_text())
        try:
            r = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=ctx, timeout=2)
            if r.json().get("status") == "ok":
                return proc, time.perf_counter() - t0
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"hashfed serve did not start within {timeout:.0f} s")


def partner_token(data: Path, name: str = "acme", labels: str = "baseline") -> str:
    """Add a partner cleared for ``labels`` to the node in ``data``; a new API token of its."""

    def run(*a: str) -> str:
        return subprocess.run(
            [HASHFED, *a, "--data", str(data)], check=True, capture_output=True, text=True
        ).stdout

    run("principal", "add", name, "--role", "partner", "--labels", labels)
    return run("token", "create", name).strip().split()[-1]
