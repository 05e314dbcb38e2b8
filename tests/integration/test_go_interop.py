"""An outside implementation reads our vectors: Go's sumdb/note and sumdb/tlog, unmodified.

tests/interop/verifier/main.go opens every signed-note vector with
golang.org/x/mod/sumdb/note (plus a note.Verifier for C2SP tlog-cosignature,
which that package lets a caller supply), checks every inclusion and
consistency probe with golang.org/x/mod/sumdb/tlog, and checks the protocol
vectors (log export, match proof) as a client would. This test builds it in
GOPATH mode (Debian packages golang-go and golang-golang-x-mod-dev) and
compares each verdict with what the vector expects.

Without Go the test is skipped, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"
SOURCE = ROOT / "tests" / "interop" / "verifier"
GOPATH = Path("/usr/share/gocode")  # golang-golang-x-mod-dev installs here
X_MOD = GOPATH / "src" / "golang.org" / "x" / "mod" / "sumdb"

# Where Go's note.Open is laxer than hashfed, by design of each (see
# docs/PROTOCOL.md, "Signed note"): Go verifies only the first signature by a
# key and skips repeats, and Go accepts non-canonical base64.
GO_ACCEPTS_WHAT_WE_REFUSE = {"forged-beside-valid", "non-canonical-signature-base64"}


def _go() -> str:
    go = shutil.which("go")
    missing = (
        "go is not installed" if go is None else f"{X_MOD} is missing" if not X_MOD.is_dir() else ""
    )
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}: apt-get install golang-go golang-golang-x-mod-dev")
        pytest.skip(missing)
    assert go is not None
    return go


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict[str, Any]]:
    go = _go()
    out = tmp_path_factory.mktemp("go") / "verifier"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOFLAGS": ""}
    if not os.access(Path(env.get("GOCACHE", Path.home() / ".cache")), os.W_OK):
        env["GOCACHE"] = str(tmp_path_factory.mktemp("gocache"))
    build = subprocess.run(
        [go, "build", "-o", str(out), "."],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run(
        [str(out), str(VECTORS)], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    got: dict[tuple[str, str], dict[str, Any]] = {}
    for line in run.stdout.splitlines():
        v = json.loads(line)
        got[(v["check"], v["name"])] = v
    return got


def test_go_opens_every_note_vector_as_we_do(
    verdicts: dict[tuple[str, str], dict[str, Any]],
) -> None:
    index = json.loads((VECTORS / "notes" / "index.json").read_text("utf-8"))
    assert index
    for vector in index:
        got = verdicts[("note", vector["name"])]
        want = vector["want"]
        if vector["name"] in GO_ACCEPTS_WHAT_WE_REFUSE:
            assert "error" in want, vector["name"]
            assert got["ok"], vector["name"]
            continue
        assert got["ok"] == ("error" not in want), (vector["name"], got)
        if "checkpoint" in want:
            cp = want["checkpoint"]
            root = base64.b64decode(cp["root_hash"]).hex()
            assert (got.get("size", 0), got["root"], got["timestamp"]) == (
                cp["size"],
                root,
                cp["timestamp"],
            ), vector["name"]
        elif "text" in want:
            assert got["text"] == want["text"]


@pytest.mark.parametrize("kind", ["inclusion", "consistency"])
def test_go_tlog_agrees_on_every_proof_probe(
    kind: str, verdicts: dict[tuple[str, str], dict[str, Any]]
) -> None:
    files = sorted((VECTORS / "merkle" / kind).glob("*.json"))
    assert files
    checked = 0
    for path in files:
        for probe in json.loads(path.read_text("utf-8"))["probes"]:
            got = verdicts[(kind, f"{path.name}/{probe['mutation']}")]
            checked += 1
            if kind == "consistency" and probe["size1"] == 0:
                # Go's CheckTree takes only an old size >= 1; from the empty
                # tree hashfed (like RFC 9162) needs no proof, so a client skips it.
                assert not got["ok"], got
                continue
            assert got["ok"] == (not probe["wantErr"]), (path.name, probe["mutation"], got)
    assert checked == sum(1 for k in verdicts if k[0] == kind)


def test_go_checks_the_protocol_vectors_like_a_client(
    verdicts: dict[tuple[str, str], dict[str, Any]],
) -> None:
    protocol = {
        k: v for k, v in verdicts.items() if k[0] not in ("note", "inclusion", "consistency")
    }
    assert {k[0] for k in protocol} == {
        "export-checkpoint",
        "leaf-hash",
        "export-root",
        "match-proof",
    }
    assert all(v["ok"] for v in protocol.values()), protocol
