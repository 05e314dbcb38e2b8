"""Guessing tokens against a real `hashfed serve`: failures are limited per source address."""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Iterator

import httpx
import pytest
from _nodes import NodeProcess, free_port

# serial: it measures time (see tests/conftest.py).
pytestmark = [pytest.mark.network, pytest.mark.serial]

MISS = "/api/v1/match/md5/" + "0" * 32
BURST = 20  # limits.auth_failure_burst's default


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = NodeProcess(
        "au-argos",
        tmp_path_factory.mktemp("logins") / "au-argos",
        free_port(),
        env={"HASHFED_TLS_CLIENT_AUTH": "optional"},
    ).init()
    n.start()
    yield n
    n.stop()


def guess() -> str:
    return f"hf_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"


def test_token_guessing_is_cut_off_with_429_and_retry_after(node: NodeProcess) -> None:
    ctx = ssl.create_default_context(cafile=str(node.cert))
    statuses: list[int] = []
    retry_after: str | None = None
    with httpx.Client(base_url=node.url, verify=ctx, timeout=30) as c:
        for _ in range(BURST + 30):
            r = c.get(MISS, headers={"Authorization": f"Bearer {guess()}"})
            statuses.append(r.status_code)
            if r.status_code == 429:
                retry_after = r.headers.get("retry-after")
    assert set(statuses) == {401, 429}
    assert statuses.count(401) <= BURST + 2  # the bucket refills a little meanwhile
    assert statuses[-10:] == [429] * 10
    assert retry_after is not None
    assert int(retry_after) >= 1
