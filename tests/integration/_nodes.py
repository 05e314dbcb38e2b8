"""Real ``hashfed serve`` processes on 127.0.0.1 for integration tests.

Each node has its own data folder, keys, self-signed TLS certificate and
database, and listens on a free port. Clients connect over real mutual TLS
with :func:`client`, pinning the node's certificate.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from crypto.pki import cert_fingerprint, create_self_signed, load_certificate, save_certificate
from crypto.pki import save_private_key as save_tls_key
from crypto.tls import client_context

HASHFED = str(Path(sys.executable).with_name("hashfed"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(
    *args: str, data: Path | None = None, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the real ``hashfed`` command."""
    cmd = [HASHFED, *args] + (["--data", str(data)] if data is not None else [])
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@dataclass
class Identity:
    """A client certificate and key on disk."""

    name: str
    cert: Path
    key: Path

    @property
    def fingerprint(self) -> str:
        return cert_fingerprint(load_certificate(self.cert))


def make_identity(folder: Path, name: str) -> Identity:
    """A self-signed client identity (to pin on the server as a principal)."""
    key, cert = create_self_signed(name)
    folder.mkdir(parents=True, exist_ok=True)
    save_tls_key(key, folder / f"{name}.key")
    save_certificate(cert, folder / f"{name}.crt")
    return Identity(name, folder / f"{name}.crt", folder / f"{name}.key")


@dataclass
class NodeProcess:
    node_id: str
    data: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    # Several processes of one node share its data folder: one log file each.
    log_name: str = "serve.log"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def cert(self) -> Path:
        return self.data / "tls" / "node.crt"

    def verifier_keys(self) -> list[str]:
        """The node's log key and cosigner key, as peers configure them."""
        return [
            (self.data / "keys" / name).read_text().strip()
            for name in ("signing.pub", "cosigning.pub")
        ]

    def key_args(self) -> list[str]:
        """``--signing-key`` options naming both of the node's verifier keys."""
        return [arg for key in self.verifier_keys() for arg in ("--signing-key", key)]

    @property
    def admin(self) -> Identity:
        """The node's own certificate: its operator, an administrator."""
        return Identity(self.node_id, self.cert, self.data / "tls" / "node.key")

    def init(self, **toml_extra: object) -> NodeProcess:
        run_cli("init", "--node-id", self.node_id, "--port", str(self.port), data=self.data)
        if toml_extra:
            with (self.data / "node.toml").open("a") as fh:
                for k, v in toml_extra.items():
                    fh.write(f"{k} = {_toml(v)}\n")
        return self

    def start(self, timeout: float = 30.0) -> NodeProcess:
        if self.log is None:  # set it beforehand to keep the log out of the data folder
            self.log = self.data / self.log_name
        fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            [HASHFED, "serve", "--data", str(self.data)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )
        fh.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.node_id} exited at start:\n{self.log.read_text()}")
            try:
                with self.client() as c:
                    if c.get("/healthz").json().get("status") == "ok":
                        return self
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.node_id} did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def client(self, identity: Identity | None = None, **kw: object) -> httpx.Client:
        """An httpx client over mutual TLS (default: the node's own admin identity)."""
        ident = identity or self.admin
        ctx = client_context(ident.cert, ident.key, pinned_cert_files=[self.cert])
        return httpx.Client(base_url=self.url, verify=ctx, timeout=30, **kw)  # type: ignore[arg-type]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, data=self.data, env=self.env, check=check)


def terminate(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 10 s; nothing if the process has ended."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def cleanup(nodes: list[NodeProcess]) -> None:
    for n in nodes:
        n.stop()


def copy_data(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)
