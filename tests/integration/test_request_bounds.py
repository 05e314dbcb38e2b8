"""What a caller can break: oversized or stalled requests against a real node.

Each test performs the attack over a real mutual-TLS connection to a
`hashfed serve` process and checks that the node refuses it early, stays
responsive, and does not grow its memory.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _nodes import NodeProcess, free_port

from api._http_bounds import BODY_IDLE_SECONDS, HEAD_TIMEOUT_SECONDS, MAX_HEAD_BYTES, MAX_HEADERS
from crypto.tls import client_context

# serial: it measures time (see tests/conftest.py).
pytestmark = [pytest.mark.network, pytest.mark.serial]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data = tmp_path_factory.mktemp("bounds") / "au-argos"
    n = NodeProcess("au-argos", data, free_port()).init()
    n.start()
    yield n
    n.stop()


def _tls(node: NodeProcess) -> ssl.SSLSocket:
    ctx = client_context(node.admin.cert, node.admin.key, pinned_cert_files=[node.cert])
    raw = socket.create_connection(("127.0.0.1", node.port), timeout=30)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def _read_response(sock: ssl.SSLSocket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (or ``timeout``)."""
    sock.settimeout(timeout)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (TimeoutError, ssl.SSLError, ConnectionResetError):
        pass
    return out


def _rss_kb(node: NodeProcess) -> int:
    assert node.proc is not None
    status = Path(f"/proc/{node.proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))


def _healthz_seconds(node: NodeProcess) -> float:
    started = time.monotonic()
    with node.client() as c:
        assert c.get("/healthz").status_code == 200
    return time.monotonic() - started


def test_endless_header_is_refused_before_memory_grows(node: NodeProcess) -> None:
    before = _rss_kb(node)
    socks = []
    for _ in range(4):
        s = _tls(node)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ")
        socks.append(s)
    answers = []
    for s in socks:
        try:
            for _ in range(64):  # 4 MiB each, far past the bound, never a newline
                s.sendall(b"a" * 65536)
        except (ssl.SSLError, OSError):
            pass  # the server closed the connection: what we want
        answers.append(_read_response(s, 5))
        s.close()
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert b'"headers_too_large"' in answer
    assert _healthz_seconds(node) < 1.0
    assert _rss_kb(node) - before < 50_000  # KiB: nothing near the 16 MiB sent was kept


def test_too_many_header_lines_are_refused(node: NodeProcess) -> None:
    s = _tls(node)
    lines = b"".join(b"X-H%d: 1\r\n" % i for i in range(MAX_HEADERS + 5))
    assert len(lines) < MAX_HEAD_BYTES
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
    answer = _read_response(s, 5)
    s.close()
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_head_within_bounds_is_served(node: NodeProcess) -> None:
    s = _tls(node)
    pad = b"X-Pad: " + b"a" * (MAX_HEAD_BYTES // 2) + b"\r\n"
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + pad + b"\r\n")
    answer = _read_response(s, 5)
    s.close()
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_stalled_head_is_dropped(node: NodeProcess) -> None:
    s = _tls(node)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
    started = time.monotonic()
    answer = _read_response(s, HEAD_TIMEOUT_SECONDS + 10)
    took = time.monotonic() - started
    s.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert took < HEAD_TIMEOUT_SECONDS + 3


def test_stalled_body_is_dropped(node: NodeProcess) -> None:
    s = _tls(node)
    s.sendall(
        b"POST /api/v1/match HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + b'{"hashes": ['
    )
    started = time.monotonic()
    answer = _read_response(s, BODY_IDLE_SECONDS + 10)
    took = time.monotonic() - started
    s.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert took < BODY_IDLE_SECONDS + 3


def _batch(n: int) -> bytes:
    return json.dumps({"hashes": [{"type": "md5", "value": "00" * 16}] * n}).encode()


def test_oversized_batch_is_refused_at_its_declared_length(node: NodeProcess) -> None:
    body = _batch(99_999)  # 5.8 MB, under the 8 MiB body bound
    started = time.monotonic()
    with node.client() as c:
        r = c.post("/api/v1/match", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"] == "too_large"
    assert time.monotonic() - started < 2.0


def test_batch_over_max_items_is_refused_before_models_are_built(node: NodeProcess) -> None:
    # Short values fit many items under the byte bound: the count is checked
    # on the parsed JSON, before 100,000 request models would be built.
    body = json.dumps({"hashes": [{"type": "md5", "value": "0"}] * 90_000}).encode()
    with node.client() as c:
        started = time.monotonic()
        r = c.post("/api/v1/match", content=body, headers={"content-type": "application/json"})
        took = time.monotonic() - started
    assert r.status_code in (413, 422)
    assert took < 1.0


def test_batch_at_the_limit_is_answered(node: NodeProcess) -> None:
    with node.client() as c:
        r = c.post(
            "/api/v1/match", content=_batch(10_000), headers={"content-type": "application/json"}
        )
    assert r.status_code == 200
    assert r.json()["queries"] == 10_000


def test_chunked_body_over_the_bound_is_413_not_400(node: NodeProcess) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"hashes": ['
        for _ in range(10 * 16):  # 10 MiB
            yield b" " * 65536

    with node.client() as c:
        r = c.post("/api/v1/match", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert r.json()["error"] == "too_large"
        r = c.post(
            "/api/v1/lists",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413


def test_chunked_body_within_the_bound_is_served(node: NodeProcess) -> None:
    body = _batch(100)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    with node.client() as c:
        r = c.post("/api/v1/match", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 200
    assert r.json()["queries"] == 100
