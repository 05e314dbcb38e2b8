"""The real `hashfed` command, run as a subprocess against a data folder in tmp.

One node is initialised per module and copied for each test (init generates
keys and a TLS identity, which is the slow part). Commands that only read run
concurrently to keep the suite fast. The list lifecycle and the tamper test
also run on PostgreSQL when HASHFED_TEST_DATABASE_URL is set, through
HASHFED_DATABASE_URL.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from config import load_settings
from crypto.key_files import save_private_key
from crypto.keys import generate_signing_key
from node.node import Node
from node.store import Store

HASHFED = Path(sys.executable).with_name("hashfed")
NODE_ID = "au-argos"
LIST = f"{NODE_ID}/series-2041"
TIMEOUT = 120

if not HASHFED.exists():  # pragma: no cover
    pytest.skip(
        "the hashfed entry point is not installed (pip install -e .)", allow_module_level=True
    )


@dataclass
class Data:
    """A node's data folder and the environment its commands run with."""

    path: Path
    env: dict[str, str]

    def open_node(self) -> Node:
        overrides = {}
        if "HASHFED_DATABASE_URL" in self.env:
            overrides["database_url"] = self.env["HASHFED_DATABASE_URL"]
        return Node.open(load_settings(self.path, **overrides))


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHFED_")}
    # Wide enough that rich never wraps a root hash; no colour codes.
    env.update({"COLUMNS": "300", "NO_COLOR": "1", "TERM": "dumb"})
    env.update(extra or {})
    return env


def _argv(args: Sequence[str], data: Path | None) -> list[str]:
    return [str(HASHFED), *args, *(["--data", str(data)] if data is not None else [])]


def hashfed(data: Data, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _argv(args, data.path),
        capture_output=True,
        text=True,
        env=data.env,
        timeout=TIMEOUT,
        check=False,
    )


def hashfed_many(data: Data, *commands: Sequence[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run independent commands at the same time; results in the given order."""
    procs = [
        (
            cmd,
            subprocess.Popen(
                _argv(cmd, data.path),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=data.env,
            ),
        )
        for cmd in commands
    ]
    results = []
    for cmd, p in procs:
        out, err = p.communicate(timeout=TIMEOUT)
        results.append(subprocess.CompletedProcess(_argv(cmd, data.path), p.returncode, out, err))
    return results


def assert_clean_failure(r: subprocess.CompletedProcess[str], code: int) -> None:
    assert r.returncode == code, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert "Traceback" not in r.stdout
    assert r.stderr.strip(), "a failure must say why"


def ok(r: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert r.returncode == 0, (r.args, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    return r


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def initialised(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    path = tmp_path_factory.mktemp("template") / "data"
    r = subprocess.run(
        _argv(["init", "--node-id", NODE_ID], path),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=TIMEOUT,
        check=False,
    )
    return path, r


@pytest.fixture
def data(initialised: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> Data:
    """A fresh copy of the initialised node, on SQLite in its data folder."""
    template, r = initialised
    ok(r)
    path = tmp_path / "data"
    shutil.copytree(template, path)  # copy2 keeps the key file's 0600
    return Data(path, _env())


@pytest.fixture
def data_any(data: Data, db_url: str) -> Data:
    """The same, on every configured backend."""
    if db_url.startswith("sqlite"):
        return data
    data.env["HASHFED_DATABASE_URL"] = db_url
    return data


def _v(prefix: str, i: int, width: int) -> str:
    return (f"{prefix}{i:x}" * width)[:width]


# --- init ----------------------------------------------------------------------------------------


def test_init_creates_a_node(initialised: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    path, r = initialised
    ok(r)
    assert NODE_ID in r.stdout
    key = path / "keys" / "signing.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    for rel in ("node.toml", "keys/signing.pub", "tls/node.crt", "tls/node.key", "hashfed.db"):
        assert (path / rel).is_file(), rel
    assert load_settings(path).node_id == NODE_ID
    assert (path / "keys" / "signing.pub").read_text().startswith(f"{NODE_ID}+")


def test_init_refuses_to_replace_the_signing_key(data: Data) -> None:
    key = data.path / "keys" / "signing.key"
    before = key.read_bytes()
    r = hashfed(data, "init", "--node-id", NODE_ID)
    assert_clean_failure(r, 3)
    assert "--force" in r.stderr
    assert key.read_bytes() == before

    ok(hashfed(data, "init", "--node-id", NODE_ID, "--force"))
    assert key.read_bytes() != before
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


# --- the list lifecycle ---------------------------------------------------------------------------


def _import_text_with_progress(data: Data, path: Path) -> tuple[int, str]:
    """Run a text import with stderr on a pseudo-terminal, so the progress bar is live."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        _argv(
            ["list", "import", LIST, str(path), "--type", "sha256", "--category", "A1"], data.path
        ),
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
        env={**data.env, "TERM": "xterm"},
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    out, _ = proc.communicate(timeout=TIMEOUT)
    os.close(master)
    tty_text = b"".join(chunks).decode(errors="replace")
    assert "Traceback" not in tty_text, tty_text
    assert "reading" in tty_text  # the progress display was live (its first stage)
    return proc.returncode, out


def test_list_lifecycle(data_any: Data, tmp_path: Path) -> None:
    d = data_any
    md5s = [_v("a", i, 32) for i in range(6)]
    sha256s = [_v("b", i, 64) for i in range(7)]
    extra = _v("c", 1, 32)

    csv_file = tmp_path / "in.csv"
    csv_file.write_text(
        "type,value,category\n"
        + "".join(f"md5,{v.upper()},A1\n" for v in md5s)
        + f"md5,{md5s[0]},B2\n"  # a duplicate: skipped
        + "\n# done\n"
    )
    txt_file = tmp_path / "in.txt"
    txt_file.write_text("".join(f"{v}\n" for v in sha256s))

    ok(hashfed(d, "list", "create", LIST, "--label", "baseline", "--description", "test"))
    r = ok(hashfed(d, "list", "import", LIST, str(csv_file)))
    assert "6 added, 1 already present, size 6" in r.stdout
    code, out = _import_text_with_progress(d, txt_file)
    assert code == 0
    assert "7 added, 0 already present, size 13" in out
    assert (
        "added (size 14)"
        in ok(hashfed(d, "list", "add", LIST, "md5", extra, "--category", "C")).stdout
    )
    assert "size 15" in ok(hashfed(d, "list", "remove", LIST, "md5", md5s[1])).stdout
    r = ok(hashfed(d, "list", "publish", LIST))
    assert "size 15" in r.stdout

    # Everything below changes no entry, so it runs at once.
    absent = _v("d", 9, 32)
    out_csv = tmp_path / "out.csv"
    (
        show,
        ls,
        exp_csv,
        exp_ndjson,
        verify,
        keys,
        audit,
        upgrade,
        dup_create,
        dup_add,
        remove_absent,
    ) = hashfed_many(
        d,
        ["list", "show", LIST],
        ["list", "ls"],
        ["list", "export", LIST, "--out", str(out_csv)],
        ["list", "export", LIST, "--format", "ndjson"],
        ["list", "verify"],
        ["keys", "show"],
        ["audit", "verify"],
        ["db", "upgrade"],
        ["list", "create", LIST, "--label", "baseline"],
        ["list", "add", LIST, "MD5", extra.upper()],
        ["list", "remove", LIST, "md5", absent],
    )
    for r in (show, ls, exp_csv, exp_ndjson, verify, keys, audit, upgrade, dup_add):
        ok(r)
    assert_clean_failure(dup_create, 2)
    assert_clean_failure(remove_absent, 2)
    assert absent not in remove_absent.stderr + remove_absent.stdout
    assert "already present (size 15)" in dup_add.stdout

    expected = (
        {("md5", v, "A1") for v in md5s if v != md5s[1]}
        | {("sha256", v, "A1") for v in sha256s}
        | {("md5", extra, "C")}
    )
    rows = list(csv.reader(io.StringIO(out_csv.read_text())))
    assert rows[0] == ["type", "value", "category"]
    assert {tuple(r) for r in rows[1:]} == expected
    assert len(rows) - 1 == len(expected)
    ndjson = [json.loads(line) for line in exp_ndjson.stdout.splitlines() if line.strip()]
    assert {(o["type"], o["value"], o["category"]) for o in ndjson} == expected
    assert len(ndjson) == len(expected)

    assert LIST in show.stdout
    assert "entries      15" in show.stdout
    assert f"hashes       {len(expected)}" in show.stdout
    assert "size 15" in show.stdout
    assert LIST in ls.stdout
    assert f"ok  {LIST}" in verify.stdout
    assert "FAIL" not in verify.stdout
    assert NODE_ID in keys.stdout
    assert "sha256:" in keys.stdout
    assert "intact" in audit.stdout

    # The exported CSV imports back as a no-op: export equals the imported set.
    r = ok(hashfed(d, "list", "import", LIST, str(out_csv)))
    assert f"0 added, {len(expected)} already present, size 15" in r.stdout


# --- tampering: the acceptance criterion ----------------------------------------------------------


def test_tampered_database_fails_list_verify_naming_the_list(data_any: Data) -> None:
    """Edit stored entries with SQL behind the node's back; `hashfed list verify` must fail."""
    d = data_any
    names = {c: f"{NODE_ID}/tamper-{c}" for c in ("value", "category", "op", "deleted")}
    untouched = f"{NODE_ID}/untouched"
    node = d.open_node()
    try:
        for full in [*names.values(), untouched]:
            node.create_list(full, label="baseline", actor="test")
            node.add_raw(full, [("md5", _v("e", i, 32), "A1") for i in range(5)], actor="test")
            node.remove(full, [("md5", _v("e", 0, 32))], actor="test")
            node.publish(full, actor="test")
        ids = {c: node.get_list(n).id for c, n in names.items()}
        store: Store = node.store
        with store.engine.begin() as conn:
            for column, new in (("value", _v("f", 1, 32)), ("category", "B2"), ("op", "remove")):
                changed = conn.execute(
                    # column comes from the fixed tuple above, never from input
                    text(
                        f"UPDATE log_entry SET {column} = :new "  # noqa: S608
                        "WHERE list_id = :l AND seq = 2"
                    ),
                    {"new": new, "l": ids[column]},
                ).rowcount
                assert changed == 1
            conn.execute(
                text("DELETE FROM log_entry WHERE list_id = :l AND seq = 3"), {"l": ids["deleted"]}
            )
    finally:
        node.close()

    every, one, good = hashfed_many(
        d, ["list", "verify"], ["list", "verify", names["value"]], ["list", "verify", untouched]
    )

    assert_clean_failure(every, 4)
    for full in names.values():
        assert f"FAIL  {full}" in every.stdout
        assert full in every.stderr
    assert f"ok  {untouched}" in every.stdout
    assert untouched not in every.stderr
    assert_clean_failure(one, 4)
    assert names["value"] in one.stdout + one.stderr
    ok(good)


def test_tampered_audit_log_fails_audit_verify(data: Data) -> None:
    node = data.open_node()
    try:
        node.create_list(LIST, label="baseline", actor="test")
        node.add_raw(LIST, [("md5", _v("a", 1, 32), "")], actor="test")
        node.publish(LIST, actor="test")
        victim = node.store.audit_records()[1].id
        with node.store.engine.begin() as conn:
            conn.execute(text("UPDATE audit SET count = 0 WHERE id = :id"), {"id": victim})
    finally:
        node.close()
    r = hashfed(data, "audit", "verify")
    assert_clean_failure(r, 4)
    assert str(victim) in r.stderr


# --- refusals -------------------------------------------------------------------------------------


def test_malformed_import_names_lines_and_imports_nothing(data: Data, tmp_path: Path) -> None:
    node = data.open_node()
    try:
        node.create_list(LIST, label="baseline", actor="test")
    finally:
        node.close()
    bad_value = "0123456789abcdef0123456789abcde"  # 31 characters
    bad = tmp_path / "bad.csv"
    bad.write_text(
        f"type,value,category\nmd5,{'ab' * 16}\nmd5,{bad_value}\nsha512,{'cd' * 64}\n"
        f"md5,{'ef' * 16},A1\n"
    )
    r = hashfed(data, "list", "import", LIST, str(bad))
    assert_clean_failure(r, 2)
    assert f"{bad}:3" in r.stderr
    assert f"{bad}:4" in r.stderr
    assert f"{bad}:2:" not in r.stderr
    for value in (bad_value, "ab" * 16, "cd" * 64, "ef" * 16):
        assert value not in r.stderr + r.stdout

    store = Store.open(load_settings(data.path).effective_database_url, migrate=False)
    try:
        assert store.count_rows("entries") == 0
        assert store.count_rows("content") == 0
    finally:
        store.close()


def test_key_file_problems_are_clear_errors_at_start(data: Data, tmp_path: Path) -> None:
    garbage = data
    key = garbage.path / "keys" / "signing.key"
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n")
    key.chmod(0o600)

    open_key = Data(tmp_path / "data-0644", data.env)
    shutil.copytree(garbage.path, open_key.path)
    (open_key.path / "keys" / "signing.key").unlink()
    # A valid key, readable by everyone.
    save_private_key(open_key.path / "keys" / "signing.key", generate_signing_key())
    (open_key.path / "keys" / "signing.key").chmod(0o644)

    binary = Data(tmp_path / "data-binary", data.env)
    shutil.copytree(garbage.path, binary.path)
    (binary.path / "keys" / "signing.key").write_bytes(os.urandom(64))

    missing = Data(tmp_path / "data-missing", data.env)
    shutil.copytree(garbage.path, missing.path)
    (missing.path / "keys" / "signing.key").unlink()

    cases = [
        (garbage, "list", "ls"),
        (open_key, "keys", "show"),
        (binary, "list", "ls"),
        (missing, "list", "publish", LIST),
    ]
    procs = [
        subprocess.Popen(
            _argv(args, d.path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=d.env,
        )
        for d, *args in cases
    ]
    for p, (d, *_args) in zip(procs, cases, strict=True):
        out, err = p.communicate(timeout=TIMEOUT)
        r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        assert_clean_failure(r, 3)
        assert "signing.key" in r.stderr, d.path
        if d is open_key:
            assert "0644" in r.stderr


def test_missing_data_folder_is_a_config_error(tmp_path: Path) -> None:
    d = Data(tmp_path / "nowhere", _env())
    r = hashfed(d, "list", "ls")
    assert_clean_failure(r, 3)
    assert "node.toml" in r.stderr
    assert not (tmp_path / "nowhere" / "hashfed.db").exists()


def test_input_errors_exit_2(data: Data) -> None:
    unknown, owner, bad_hash, bad_fmt = hashfed_many(
        data,
        ["list", "show", f"{NODE_ID}/none"],
        ["list", "create", "nl-politie/x", "--label", "baseline"],
        ["list", "add", f"{NODE_ID}/none", "md5", "xyz"],
        ["list", "export", f"{NODE_ID}/none", "--format", "xml"],
    )
    for r in (unknown, owner, bad_hash, bad_fmt):
        assert_clean_failure(r, 2)
