"""The node's own files: private to its user, and keys others can read are refused at start."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _nodes import HASHFED, NodeProcess, free_port

pytestmark = pytest.mark.network


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_data_folder_and_database_files_are_private_to_the_node(tmp_path: Path) -> None:
    node = NodeProcess("au-argos", tmp_path / "au-argos", free_port()).init()
    try:
        node.start()
        with node.client() as c:  # a write, so SQLite has its -wal and -shm files
            assert (
                c.post("/api/v1/lists", json={"name": "au-argos/x", "label": "private"}).status_code
                == 201
            )
        files = [node.data / n for n in ("hashfed.db", "hashfed.db-wal", "hashfed.db-shm")]
        assert all(f.exists() for f in files)
        assert mode(node.data) == 0o700
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        node.stop()


@pytest.mark.parametrize("key", ["tls/node.key", "keys/signing.key"])
def test_serve_refuses_a_private_key_others_can_read(tmp_path: Path, key: str) -> None:
    node = NodeProcess("au-argos", tmp_path / "au-argos", free_port()).init()
    (node.data / key).chmod(0o644)
    p = subprocess.run(
        [HASHFED, "serve", "--data", str(node.data)], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 3
    assert str(node.data / key) in p.stderr
    assert f"chmod 600 {node.data / key}" in p.stderr
