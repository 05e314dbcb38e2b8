"""The CLI as a new user meets it: real ``hashfed`` subprocesses against a real ``serve``.

Listings have ``--json`` and never cut names in a pipe; help names what to
type; errors are one line in the CLI's own words; a refused credential exits
differently from a network error; a scan keeps its state in the data folder.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from _nodes import NodeProcess, free_port, run_cli

LONG = "au-argos/series-2041-operation-with-a-rather-long-name-for-eighty-columns"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    base = tmp_path_factory.mktemp("ux")
    n = NodeProcess("au-argos", base / "data", free_port(), env={"COLUMNS": "80"})
    n.env["HASHFED_TLS_CLIENT_AUTH"] = "optional"  # token-only partners
    n.init()
    n.cli("list", "create", LONG, "--label", "baseline")
    n.cli("list", "add", LONG, "sha256", "ab" * 32)
    n.cli("list", "publish", LONG)
    n.cli("principal", "add", "acme", "--role", "partner", "--labels", "baseline")
    n.log = base / "serve.log"
    n.start(timeout=180)  # a loaded machine starts slowly
    try:
        yield n
    finally:
        n.stop()


def _one_line_error(r: object) -> str:
    stderr = r.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return str(lines[0])


def test_listings_have_json_and_never_cut_names_in_a_pipe(node: NodeProcess) -> None:
    table = node.cli("list", "ls").stdout  # a pipe, COLUMNS=80
    assert LONG in table
    rows = json.loads(node.cli("list", "ls", "--json").stdout)
    assert [r["list"] for r in rows] == [LONG]
    assert rows[0]["hashes"] == 1
    principals = json.loads(node.cli("principal", "ls", "--json").stdout)
    assert {p["name"] for p in principals} == {"acme"}
    token = node.cli("token", "create", "acme").stdout.strip()
    tokens = json.loads(node.cli("token", "ls", "--json").stdout)
    assert [t["principal"] for t in tokens] == ["acme"]
    assert token not in json.dumps(tokens)  # never the token itself
    assert json.loads(node.cli("peer", "ls", "--json").stdout) == []
    audit = json.loads(node.cli("audit", "ls", "--json", "--action", "list.*").stdout)
    assert {a["action"] for a in audit} >= {"list.create", "list.publish"}
    assert all(a["action"].startswith("list.") for a in audit)
    assert "ab" * 32 not in json.dumps(audit)  # hash values never reach the audit log


def test_audit_export_csv_and_json(node: NodeProcess, tmp_path: Path) -> None:
    node.cli("audit", "export", "--format", "csv", "--out", str(tmp_path / "a.csv"))
    lines = (tmp_path / "a.csv").read_text().splitlines()
    assert lines[0] == "id,time,actor,action,target,count,detail,record_hash"
    records = json.loads(node.cli("audit", "export", "--format", "json", "--since", "1d").stdout)
    assert len(records) == len(lines) - 1
    assert records[0]["id"] < records[-1]["id"]
    r = node.cli("audit", "ls", "--since", "yesterday-ish", check=False)
    assert r.returncode == 2
    assert "--since" in _one_line_error(r)


def test_help_names_values_types_and_the_category_rule(node: NodeProcess) -> None:
    text = run_cli("list", "import", "--help", env={"COLUMNS": "200"}).stdout
    for tag in ("<str>", "<bool>", "<path>"):
        assert tag not in text
    for word in ("md5", "sha1", "sha256", "pdq", "photodna", "letters, digits"):
        assert word in text
    assert "--type" in text


def test_list_add_errors_speak_cli_not_api(node: NodeProcess) -> None:
    r = node.cli("list", "add", LONG, "sha256", "abc", check=False)
    assert r.returncode == 2
    line = _one_line_error(r)
    assert "VALUE" in line
    assert "hashes[" not in line
    assert "abc" not in line.split("VALUE", 1)[1]  # the value is never echoed


@pytest.mark.parametrize("text", ["", "# a comment only\n\n"])
def test_import_of_an_empty_file_says_so(node: NodeProcess, tmp_path: Path, text: str) -> None:
    (tmp_path / "empty.txt").write_text(text)
    r = node.cli("list", "import", LONG, str(tmp_path / "empty.txt"), check=False)
    assert r.returncode == 2
    line = _one_line_error(r)
    assert "no hashes" in line
    assert "--type" not in line


def test_import_of_an_oversized_quoted_field_is_one_line_and_4xx(
    node: NodeProcess, tmp_path: Path
) -> None:
    body = f'type,value\nsha256,"{"a" * 131_073}"\n'
    (tmp_path / "big.csv").write_text(body)
    r = node.cli("list", "import", LONG, str(tmp_path / "big.csv"), check=False)
    assert r.returncode == 2
    assert "big.csv:2" in r.stderr
    assert "Traceback" not in r.stderr
    with node.client() as c:
        resp = c.post(f"/api/v1/lists/{LONG}/import?format=csv", content=body.encode())
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.json()["error"]


def test_refused_token_exits_6_unreachable_node_exits_5(node: NodeProcess, tmp_path: Path) -> None:
    key = (node.data / "keys" / "signing.pub").read_text().strip()
    common = ["--label", "baseline", "--pin", str(node.cert), "--trust", key]
    refused = run_cli(
        "pull", node.url, "--out", str(tmp_path / "a"), "--token", "hf_00000000_bad", *common,
        check=False,
    )  # fmt: skip
    assert refused.returncode == 6, refused.stderr
    closed = f"https://127.0.0.1:{free_port()}"
    down = run_cli(
        "pull", closed, "--out", str(tmp_path / "b"), "--token", "hf_00000000_bad", *common,
        check=False,
    )  # fmt: skip
    assert down.returncode == 5, down.stderr


def test_scan_with_a_token_keeps_its_state_private_in_the_data_folder(
    node: NodeProcess, tmp_path: Path
) -> None:
    token = node.cli("token", "create", "acme", "--scopes", "match").stdout.strip()
    folder = tmp_path / "evidence"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"not an image")
    data = tmp_path / "scanner-data"
    run_cli(
        "scan", str(folder), "--node", node.url, "--token", token,
        "--server-cert", str(node.cert), "--data", str(data),
    )  # fmt: skip
    assert not list(tmp_path.glob(".*hashfed-scan"))  # nothing beside the scanned folder
    (state,) = (data / "scans").glob("*.hashfed-scan")
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "scans").stat().st_mode) == 0o700
