"""The API documentation: principals only, and nothing loaded from outside the node."""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _nodes import Identity, NodeProcess, free_port

from crypto.pki import create_ca, issue_certificate, save_certificate
from crypto.pki import save_private_key as save_tls_key

pytestmark = pytest.mark.network

DOC_PATHS = ("/docs", "/redoc", "/openapi.json", "/docs/static/swagger-ui-bundle.js")


@pytest.fixture(scope="module")
def trusted_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    folder = tmp_path_factory.mktemp("ca")
    key, cert = create_ca("federation CA")
    save_certificate(cert, folder / "ca.crt")
    return folder / "ca.crt", key, cert


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, trusted_ca: tuple[Path, Any, Any]
) -> Iterator[NodeProcess]:
    data = tmp_path_factory.mktemp("docs") / "au-argos"
    env = {
        "HASHFED_TLS_CLIENT_AUTH": "optional",
        "HASHFED_TLS_CA_FILES": json.dumps([str(trusted_ca[0])]),
    }
    n = NodeProcess("au-argos", data, free_port(), env=env).init()
    n.start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def stranger(
    tmp_path_factory: pytest.TempPathFactory, trusted_ca: tuple[Path, Any, Any]
) -> Identity:
    """A certificate the node's TLS accepts (a trusted CA issued it) of no registered principal."""
    folder = tmp_path_factory.mktemp("stranger")
    key, cert = issue_certificate(trusted_ca[1], trusted_ca[2], "stranger")
    save_tls_key(key, folder / "stranger.key")
    save_certificate(cert, folder / "stranger.crt")
    return Identity("stranger", folder / "stranger.crt", folder / "stranger.key")


@pytest.mark.parametrize("path", DOC_PATHS)
def test_unregistered_certificate_cannot_read_the_docs(
    node: NodeProcess, stranger: Identity, path: str
) -> None:
    with node.client(stranger) as c:
        r = c.get(path)
    assert r.status_code in (401, 403)
    assert "error" in r.json()


@pytest.mark.parametrize("path", DOC_PATHS)
def test_no_certificate_cannot_read_the_docs(node: NodeProcess, path: str) -> None:
    ctx = ssl.create_default_context(cafile=str(node.cert))
    with httpx.Client(base_url=node.url, verify=ctx, timeout=10) as c:
        r = c.get(path)
    assert r.status_code == 401


def test_swagger_ui_loads_only_local_assets(node: NodeProcess) -> None:
    with node.client() as c:
        page = c.get("/docs")
        assert page.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources, "the page names no asset"
        for src in sources:
            assert src.startswith("/"), f"asset from outside the node: {src}"
            assert c.get(src).status_code == 200
        redoc = c.get("/redoc")
        assert redoc.status_code == 200
        assert "cdn." not in redoc.text
        assert "fonts.googleapis" not in redoc.text
        assert c.get("/openapi.json").json()["info"]["title"] == "hashfed node"
        assert c.get("/docs/static/../../core.py").status_code == 404
