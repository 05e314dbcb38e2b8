"""Several ``hashfed serve`` processes of ONE node on one database, for integration tests.

A scaled-out node is one data folder (one identity: keys, certificate,
node.toml) initialised once, and N processes started from it, each on its
own port, all with the same ``database_url`` (a PostgreSQL schema made for
the test by :func:`fresh_pg_schema`). ``cluster.cli(...)`` runs the real CLI
against the same folder and database, as an operator on that host would.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import CompletedProcess
from urllib.parse import quote

import httpx
from _nodes import NodeProcess, cleanup, free_port
from sqlalchemy import create_engine, text


@contextmanager
def fresh_pg_schema(base_url: str) -> Iterator[str]:
    """A URL for a new, empty schema on the PostgreSQL at ``base_url``; dropped afterwards."""
    schema = "c_" + secrets.token_hex(6)
    admin = create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@dataclass
class Cluster:
    """The processes of one node; ``members[i]`` is the i-th ``hashfed serve``."""

    node_id: str
    data: Path
    members: list[NodeProcess] = field(default_factory=list)

    def cli(self, *args: str, check: bool = True) -> CompletedProcess[str]:
        """The real ``hashfed`` CLI on this node's folder and database."""
        return self.members[0].cli(*args, check=check)

    def stop(self) -> None:
        cleanup(self.members)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start_cluster(
    base: Path,
    *,
    count: int = 3,
    node_id: str = "au-argos",
    database_url: str | None = None,
    env: dict[str, str] | None = None,
    before_start: Callable[[Cluster], None] | None = None,
    **toml_extra: object,
) -> Cluster:
    """Initialise one node in ``base/node_id`` and start ``count`` serve processes of it.

    ``before_start`` runs once the folder exists (e.g. to create lists with the
    CLI). The first process starts alone, so only it migrates the database.
    """
    data = base / node_id
    common = dict(env or {})
    if database_url is not None:
        common["HASHFED_DATABASE_URL"] = database_url
    cluster = Cluster(node_id, data)
    for i in range(count):
        port = free_port()
        cluster.members.append(
            NodeProcess(
                node_id,
                data,
                port,
                env={**common, "HASHFED_PORT": str(port)},
                log_name=f"serve-{i}.log",
            )
        )
    try:
        cluster.members[0].init(**toml_extra)
        if before_start is not None:
            before_start(cluster)
        for member in cluster.members:
            member.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def hit_lists(client: httpx.Client, hash_type: str, value: str) -> list[tuple[str, str]]:
    """``(list, category)`` of every hit of one hash, over the API."""
    r = client.get(f"/api/v1/match/{hash_type}/{value}")
    r.raise_for_status()
    return sorted((h["list"], h["category"]) for res in r.json()["results"] for h in res["hits"])


def wait_until(pred: Callable[[], bool], timeout: float, *, every: float = 0.01) -> float:
    """Seconds until ``pred()`` held; AssertionError if not within ``timeout``."""
    t0 = time.monotonic()
    while True:
        if pred():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not reflected within {timeout} s")
        time.sleep(every)
