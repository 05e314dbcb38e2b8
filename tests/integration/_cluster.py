"""Several real ``hashfed serve`` processes of one node on one PostgreSQL schema.

What docs/OPERATIONS.md offers to scale out: one data folder (keys, TLS
certificate, node.toml), one database, N processes on their own ports. Each
process gets ``HASHFED_PORT`` and ``HASHFED_DATABASE_URL`` in its
environment (the environment overrides node.toml) and its own log file.
Processes start one after another, so the first one started holds the
scheduler. Also: :func:`pg_schema` (a fresh schema, dropped afterwards) and
:class:`HAProxy` (the real binary in ``mode tcp`` in front of a cluster).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
from _nodes import Identity, NodeProcess, free_port, run_cli, terminate
from sqlalchemy import create_engine, text

PG_URL = os.environ.get("HASHFED_TEST_DATABASE_URL")
OPERATIONS_MD = Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md"
# What the scheduler logs when a process takes the lock (federation/scheduler.py).
SCHEDULER_STARTED = "federation scheduler started"


@contextmanager
def pg_schema() -> Iterator[str]:
    """A database URL on a fresh PostgreSQL schema (through ``search_path``), dropped after."""
    assert PG_URL, "HASHFED_TEST_DATABASE_URL is not set"
    schema = "t_" + secrets.token_hex(6)
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@dataclass
class ClusterProcess(NodeProcess):
    """One serve process of a cluster: the node's data folder, its own port and log."""

    index: int = 0

    def __post_init__(self) -> None:
        self.log_name = f"serve-{self.index}.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def runs_scheduler(self) -> bool:
        """Whether this (live) process has taken the scheduler lock, by its log."""
        return self.alive and self.log is not None and SCHEDULER_STARTED in self.log.read_text()


@dataclass
class Cluster:
    """N serve processes of one node identity on one database."""

    node_id: str
    data: Path
    database_url: str
    processes: list[ClusterProcess] = field(default_factory=list)

    @classmethod
    def create(cls, node_id: str, data: Path, database_url: str, n: int = 3) -> Cluster:
        """Initialise the data folder and database; ``n`` processes, not started yet."""
        cluster = cls(node_id, data, database_url)
        env = cluster.env
        ports = [free_port() for _ in range(n)]
        cluster.processes = [
            ClusterProcess(node_id, data, port, env={**env, "HASHFED_PORT": str(port)}, index=i)
            for i, port in enumerate(ports)
        ]
        run_cli("init", "--node-id", node_id, "--port", str(ports[0]), data=data, env=env)
        return cluster

    @property
    def env(self) -> dict[str, str]:
        return {"HASHFED_DATABASE_URL": self.database_url}

    @property
    def cert(self) -> Path:
        return self.data / "tls" / "node.crt"

    @property
    def admin(self) -> Identity:
        return self.processes[0].admin

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, data=self.data, env=self.env, check=check)

    def start(self) -> Cluster:
        """Start every process, one after another: the first started holds the scheduler."""
        for p in self.processes:
            p.start()
        return self

    def holders(self) -> list[int]:
        """Indexes of the live processes that run the scheduler (one, when all is well)."""
        return [p.index for p in self.processes if p.runs_scheduler]

    def stop(self) -> None:
        for p in self.processes:
            p.stop()


class HAProxy:
    """The real ``haproxy`` in ``mode tcp`` on a free 127.0.0.1 port, in front of ``servers``.

    TLS passes through untouched: the nodes see the client's certificate
    and authenticate it themselves.
    """

    def __init__(self, folder: Path, servers: list[int]) -> None:
        self.binary = shutil.which("haproxy")
        if self.binary is None:
            raise AssertionError("haproxy is not installed (.ci/run installs the Debian package)")
        self.port = free_port()
        self.folder = folder
        self.config = folder / "haproxy.cfg"
        self.config.write_text(haproxy_config(self.port, servers))
        self.log = folder / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> HAProxy:
        assert self.binary is not None
        check = subprocess.run(
            [self.binary, "-c", "-f", str(self.config)], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise AssertionError(f"haproxy refused its config:\n{check.stdout}{check.stderr}")
        fh = self.log.open("ab")
        # -db: stay in the foreground, so the test owns (and stops) the process.
        self.proc = subprocess.Popen(
            [self.binary, "-db", "-f", str(self.config)], stdout=fh, stderr=subprocess.STDOUT
        )
        fh.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"haproxy exited:\n{self.log.read_text()}")
            try:
                with socket_to(self.port):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"haproxy did not listen:\n{self.log.read_text()}")

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None


def haproxy_config(port: int, servers: list[int]) -> str:
    """docs/OPERATIONS.md's haproxy.cfg, bound to 127.0.0.1:``port`` in front of ``servers``.

    The test runs the documented file itself, only the addresses changed, so
    the documentation cannot drift from what is tested.
    """
    doc = OPERATIONS_MD.read_text(encoding="utf-8")
    block = doc.split("<!-- haproxy.cfg begin -->", 1)[1].split("<!-- haproxy.cfg end -->", 1)[0]
    cfg = block.strip().removeprefix("```").removesuffix("```").strip("\n") + "\n"
    cfg, binds = re.subn(r"(?m)^(\s*bind )\S+$", rf"\g<1>127.0.0.1:{port}", cfg)
    documented = re.findall(r"(?m)^\s*server (\S+) \S+$", cfg)
    assert binds == 1, "expected one bind line in the documented haproxy.cfg"
    assert len(documented) == len(servers), (documented, servers)
    for name, server_port in zip(documented, servers, strict=True):
        cfg = re.sub(rf"(?m)^(\s*server {name} )\S+$", rf"\g<1>127.0.0.1:{server_port}", cfg)
    return cfg


@contextmanager
def socket_to(port: int) -> Iterator[None]:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=1):
        yield


def hit_lists(client: httpx.Client, hash_type: str, value: str) -> list[tuple[str, str]]:
    """``(list, category)`` of every hit of one hash, over the API."""
    r = client.get(f"/api/v1/match/{hash_type}/{value}")
    r.raise_for_status()
    return sorted((h["list"], h["category"]) for res in r.json()["results"] for h in res["hits"])


def wait_until(
    pred: Callable[[], bool], timeout: float, *, every: float = 0.01, what: str = "reflected"
) -> float:
    """Seconds until ``pred()`` held; AssertionError if not within ``timeout``."""
    t0 = time.monotonic()
    while True:
        if pred():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not {what} within {timeout} s")
        time.sleep(every)
