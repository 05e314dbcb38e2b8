"""Faults are clean, with real processes: a really full disk, a database that is gone.

Disk full: the node's data folder lives on a small tmpfs, `hashfed serve`
runs on it, and a filler file takes the last free byte. Every CLI write then
prints one line and exits non-zero, the API answers a 507 JSON body, match
queries keep answering, their audit records are kept and written once space
is freed; then the same commands succeed and everything committed before
verifies. Mounting needs root (as here and in CI): without it the test fails
in CI and is skipped, saying why, elsewhere.

Database gone: a node on its own PostgreSQL database, which stops accepting
connections and has every backend terminated: 503 JSON with Retry-After, the
CLI one line; when the database is back, the node carries on.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from _nodes import NodeProcess, free_port, run_cli
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.network

NODE_ID = "au-argos"
LIST = f"{NODE_ID}/series-2041"
TMPFS_SIZE = "2048k"  # a fresh data folder is ~120 kB; room for the content added first
EXIT_STORAGE_FULL, EXIT_DATABASE_UNAVAILABLE = 8, 9


def _hex(n: int) -> str:
    return secrets.token_hex(n)


def _need_root() -> None:
    if os.geteuid() == 0:
        return
    reason = "mounting a tmpfs needs root; run this test as root to exercise a real full disk"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of TMPFS_SIZE, unmounted afterwards whatever happened."""
    _need_root()
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mnt)], check=True
    )
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=False)  # still busy: detach


def _fill(folder: Path) -> Path:
    """Take every free byte of ``folder``'s file system."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as fh:
        for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
            _write_until_full(fh, b"\0" * chunk)
    return filler


def _write_until_full(fh: Any, chunk: bytes) -> None:
    try:
        while True:
            fh.write(chunk)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise


def _empty_wal(db: Path) -> None:
    # A WAL with free room takes small writes even on a full disk; emptied, the
    # next write must grow it, as it must on a node that has run for a while.
    conn = sqlite3.connect(db, timeout=10)
    try:
        for _ in range(100):
            if conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0:
                return
            time.sleep(0.05)
        raise AssertionError("the WAL could not be checkpointed")
    finally:
        conn.close()


def _one_clean_line(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode == code, output
    assert "Traceback" not in output
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, output
    for word in words:
        assert word in lines[0], lines[0]


def _cli_all(
    node: NodeProcess, *commands: tuple[str, ...], check: bool = False
) -> list[subprocess.CompletedProcess[str]]:
    """Run CLI commands at once (each is a Python start-up of a few seconds)."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: node.cli(*args, check=check), commands))


def _audit_rows(db: Path, after_id: int) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(
            "SELECT id, actor, action, count, detail FROM audit WHERE id > ? ORDER BY id",
            (after_id,),
        ).fetchall()
    finally:
        conn.close()


def _hashes(values: list[str]) -> dict[str, Any]:
    return {"hashes": [{"type": "sha256", "value": v, "category": "A1"} for v in values]}


def test_full_disk_gives_clear_errors_loses_nothing_and_recovers(
    small_disk: Path, tmp_path: Path
) -> None:
    node = NodeProcess(NODE_ID, small_disk / NODE_ID, free_port())
    node.log = tmp_path / "serve.log"  # the log must not need the full disk
    db = node.data / "hashfed.db"
    before = [_hex(32) for _ in range(40)]
    node.init().start()
    try:
        with node.client() as c:
            assert (
                c.post("/api/v1/lists", json={"name": LIST, "label": "baseline"}).status_code == 201
            )
            assert c.post(f"/api/v1/lists/{LIST}/hashes", json=_hashes(before)).status_code == 200
            assert c.post(f"/api/v1/lists/{LIST}/publish").status_code == 200
        last_audit = _audit_rows(db, 0)[-1][0]
        _empty_wal(db)
        filler = _fill(small_disk)

        # --- the disk is full ---------------------------------------------------------------
        new = _hex(32)
        commands = {
            "list add": ("list", "add", LIST, "sha256", new),
            "list remove": ("list", "remove", LIST, "sha256", before[0]),
            "list publish": ("list", "publish", LIST),
            "list create": ("list", "create", f"{NODE_ID}/other", "--label", "baseline"),
        }
        for name, proc in zip(commands, _cli_all(node, *commands.values()), strict=True):
            _one_clean_line(proc, EXIT_STORAGE_FULL, name, "disk is full")
            assert new not in proc.stderr
            assert before[0] not in proc.stderr
        with node.client() as c:
            r = c.post(f"/api/v1/lists/{LIST}/hashes", json=_hashes([new]))
            assert (r.status_code, r.json()["error"]) == (507, "storage_full"), r.text
            assert new not in r.text
            r = c.post("/api/v1/lists", json={"name": f"{NODE_ID}/other", "label": "baseline"})
            assert r.status_code == 507, r.text
            # Matching goes on; each query with a hit leaves an audit record to keep.
            queries_while_full = 5
            for v in before[1 : 1 + queries_while_full]:
                r = c.get(f"/api/v1/match/sha256/{v}")
                assert (r.status_code, r.json()["hits"]) == (200, 1), r.text
            time.sleep(1)  # several flush intervals, all refused
        assert _audit_rows(db, last_audit) == []

        # --- space is freed -----------------------------------------------------------------
        filler.unlink()
        deadline = time.monotonic() + 10
        while len(_audit_rows(db, last_audit)) < queries_while_full and time.monotonic() < deadline:
            time.sleep(0.1)
        kept = [r for r in _audit_rows(db, last_audit) if r[2] == "match"]
        assert len(kept) == queries_while_full  # every record made while full, none lost
        assert not [r for r in _audit_rows(db, last_audit) if r[2] == "audit.gap"]

        _cli_all(node, commands["list add"], commands["list create"], check=True)
        _cli_all(node, commands["list remove"], check=True)
        _cli_all(node, commands["list publish"], check=True)
        with node.client() as c:
            r = c.post(f"/api/v1/lists/{LIST}/hashes", json=_hashes([_hex(32)]))
            assert r.status_code == 200, r.text
        lists_ok, audit_ok, export = _cli_all(
            node,
            ("list", "verify"),
            ("audit", "verify"),
            ("list", "export", LIST, "--format", "ndjson"),
            check=True,
        )
        assert "FAIL" not in lists_ok.stdout
        assert "audit chain intact" in audit_ok.stdout
        assert "lost" not in audit_ok.stdout
        exported = export.stdout
        assert set(before[1:]) | {new} <= {json.loads(ln)["value"] for ln in exported.splitlines()}

        # --- full again, and the node stops before space is freed --------------------------
        last_audit = _audit_rows(db, 0)[-1][0]
        _empty_wal(db)
        filler = _fill(small_disk)
        with node.client() as c:
            for v in before[1:4]:
                assert c.get(f"/api/v1/match/sha256/{v}").json()["hits"] == 1
        node.stop()  # the last flush fails: the count is saved in the reserved file
        assert "3 records could not be written and are lost" in node.log.read_text()
        filler.unlink()
        assert "3 records lost at the last shutdown" in node.cli("audit", "verify").stdout
        node.start()
        deadline = time.monotonic() + 10
        while not _audit_rows(db, last_audit) and time.monotonic() < deadline:
            time.sleep(0.1)
        [gap] = _audit_rows(db, last_audit)
        assert (gap[2], gap[3]) == ("audit.gap", 3)
        verified = node.cli("audit", "verify").stdout
        assert "audit chain intact" in verified
        assert "3 records were lost in 1 gap" in verified
        assert node.cli("audit", "verify", "--strict", check=False).returncode == 10

        log = node.log.read_text()
        assert "storage_full" in log  # the operator reads the cause
        assert "audit records could not be written" in log
        assert not any(v in log for v in [*before, new])
    finally:
        node.stop()


# --- the database is gone -----------------------------------------------------------------------

PG_URL = os.environ.get("HASHFED_TEST_DATABASE_URL")


@pytest.fixture
def own_pg_database() -> Iterator[tuple[str, Any]]:
    """A PostgreSQL database of the test's own, so that it can be taken away."""
    if not PG_URL:
        pytest.skip("needs HASHFED_TEST_DATABASE_URL")
    name = f"hf_gone_{_hex(5)}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}", (admin, name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


def _take_away(admin: Any, name: str, *, gone: bool) -> None:
    with admin.connect() as conn:
        conn.execute(text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {'false' if gone else 'true'}"))
        if gone:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                {"d": name},
            )


def test_database_gone_gives_503_and_one_line_and_the_node_carries_on(
    own_pg_database: tuple[str, Any], tmp_path: Path
) -> None:
    url, (admin, name) = own_pg_database
    node = NodeProcess(NODE_ID, tmp_path / NODE_ID, free_port(), env={"HASHFED_DATABASE_URL": url})
    before = [_hex(32) for _ in range(10)]
    node.init().start()
    try:
        with node.client() as c:
            assert (
                c.post("/api/v1/lists", json={"name": LIST, "label": "baseline"}).status_code == 201
            )
            assert c.post(f"/api/v1/lists/{LIST}/hashes", json=_hashes(before)).status_code == 200
            assert c.post(f"/api/v1/lists/{LIST}/publish").status_code == 200

        _take_away(admin, name, gone=True)
        new = _hex(32)
        proc = node.cli("list", "add", LIST, "sha256", new, check=False)
        _one_clean_line(proc, EXIT_DATABASE_UNAVAILABLE, "list add", "database is unavailable")
        with node.client() as c:
            r = c.post(f"/api/v1/lists/{LIST}/hashes", json=_hashes([new]))
            assert (r.status_code, r.json()["error"]) == (503, "database_unavailable"), r.text
            assert int(r.headers["retry-after"]) > 0
            for v in before[:3]:  # answered from memory, or a clean JSON 503
                r = c.get(f"/api/v1/match/sha256/{v}")
                assert r.status_code in (200, 503), r.text
                assert r.headers["content-type"].startswith("application/json")
            time.sleep(0.5)

        _take_away(admin, name, gone=False)
        with node.client() as c:
            r = c.post(f"/api/v1/lists/{LIST}/hashes", json=_hashes([new]))
            assert r.status_code == 200, r.text
        node.cli("list", "add", LIST, "sha256", _hex(32))
        node.cli("list", "publish", LIST)
        assert "FAIL" not in node.cli("list", "verify").stdout
        assert "audit chain intact" in node.cli("audit", "verify").stdout
    finally:
        node.stop()


def test_database_error_escaping_the_store_is_still_one_line(tmp_path: Path) -> None:
    # `db upgrade` runs the migrations on the raw engine, outside the store's
    # translation: the CLI's last resort must still print one line, exit 9.
    node = NodeProcess(NODE_ID, tmp_path / NODE_ID, free_port()).init()
    gone = "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"
    proc = run_cli("db", "upgrade", data=node.data, env={"HASHFED_DATABASE_URL": gone}, check=False)
    _one_clean_line(proc, EXIT_DATABASE_UNAVAILABLE, "db upgrade", "database is unavailable")
