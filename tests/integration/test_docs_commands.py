"""Every ``hashfed`` command in README.md, docs/FEEDS.md and docs/OPERATIONS.md, run as written.

How a document's shell blocks are read (keep this in mind when you add one):

1. Blocks fenced with ```sh, ```bash or ```console are read; other fences
   (plain ```, ```toml, ```python…) are not. In a ```console block only lines
   starting with ``$ `` are commands.
2. A line ending in ``\\`` continues on the next. ``# …`` comments are dropped
   (shell rules). Lines starting with ``hashfed`` or ``openssl`` run, in the
   order of the document; ``export NAME=value`` sets a variable for the lines
   after it; every other line (make, curl, loops, VAR=… prefixes) is not run.
3. Each document runs in a fresh temporary folder (the working directory)
   with ``HASHFED_DATA=./data`` and ``HASHFED_PORT`` set to a free port. If
   the first command is not ``hashfed init``, a node ``au-argos`` is
   initialised first. ``hashfed serve`` starts in the background (and stops
   when the document ends). Every command must exit 0.
4. The test's world, which placeholders stand for: a serving node
   ``agency-b`` (the README's peer, and the node a partner pulls from:
   ``https://node:8443``, ``https://node.example:8443``, ``https://10.0.0.2:8443``),
   with a ``baseline`` list, a partner ``acme`` with a token (``hf_…``),
   its certificate in ``agency-b.crt`` and ``node.crt``; files
   ``hashes.csv``, ``md5s.txt``, ``stock-icons.csv``, ``acme.crt`` (a self-signed end-entity
   certificate) in the working directory. Placeholders are replaced as in
   :data:`PLACEHOLDERS` (literal text → value); example owners' verifier
   keys become keys of the test's nodes.
5. A line that still holds ``…`` or a ``<placeholder>`` after that fails the
   test: add the placeholder to :data:`PLACEHOLDERS`, or mark the block.
6. To leave a block out, put ``<!-- docs-test: skip (the reason) -->`` on
   the line right before its fence. The reason is required (e.g. "needs
   PostgreSQL and systemd").
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from _nodes import NodeProcess, free_port, make_identity, run_cli, terminate

from crypto.keys import NoteSigner, generate_signing_key
from crypto.tls import client_context

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["README.md", "docs/FEEDS.md", "docs/OPERATIONS.md"]
HASHFED = str(Path(sys.executable).with_name("hashfed"))
RUNNABLE = {"hashfed", "openssl"}
SKIP_MARK = re.compile(r"^<!--\s*docs-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
SHELL_LANGS = {"sh", "bash", "console", "shell"}
# What is left after substitution when a placeholder was missed.
UNFILLED = re.compile(r"…|\.\.\.'|<[A-Za-z][^<>]*>")
SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
TIMEOUT = 120


@dataclass
class World:
    """The nodes and files placeholders stand for."""

    peer: NodeProcess
    token: str
    agency_c_key: str
    be_fccu_key: str
    local_key: Callable[[], str] = field(default=lambda: "")
    local_cosigner_key: Callable[[], str] = field(default=lambda: "")


def _key(name: str) -> str:
    return NoteSigner(name, generate_signing_key()).verifier_key


def placeholders(world: World) -> dict[str, Callable[[], str]]:
    """Literal text in the docs → what it becomes here (evaluated when a line runs)."""
    peer_key = (world.peer.data / "keys" / "signing.pub").read_text().strip()
    peer_cosigner = (world.peer.data / "keys" / "cosigning.pub").read_text().strip()
    url = world.peer.url
    return {
        "<64 hex>": lambda: SHA256,
        "'agency-b+a62fffc9+Ad+07…'": lambda: peer_key,
        "'agency-a+7c3b74d9+ARr2…'": lambda: peer_key,
        "'au-argos+9a268aa7+ASfdhsviMxFp/4pSQuTRAJjed3wlsU63RdmosXH3cfLy'": lambda: peer_key,
        "'au-argos+5e07c1d2+BGq3…'": lambda: peer_cosigner,
        "'agency-b+5c0e21d4+BP…'": lambda: peer_cosigner,
        "'agency-a+4d2e9f10+BK7q…'": lambda: peer_cosigner,
        "'be-fccu+0c1d2e3f+…'": lambda: world.be_fccu_key,
        "'agency-c+…'": lambda: world.agency_c_key,
        "'au-argos+…'": world.local_key,
        "'au-argos+729de2b7+AWDm…'": lambda: world.local_key(),
        "'au-argos+88aa526c+BJCa…'": lambda: world.local_cosigner_key(),
        "https://10.0.0.2:8443": lambda: url,
        "https://node.example:8443": lambda: url,
        "https://node:8443": lambda: url,
        "hf_1a2b3c4d_...": lambda: world.token,
        "hf_…": lambda: world.token,
        "/var/lib/baseline": lambda: "baseline-feed",
    }


@dataclass
class Block:
    doc: str
    line: int  # of the opening fence
    commands: list[tuple[int, str]]  # (line number, logical line)
    skip: str | None


def blocks(doc: str) -> Iterator[Block]:
    """The shell blocks of a document with their logical command lines."""
    lines = (ROOT / doc).read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group("lang"), i
        prev = lines[i - 1].strip() if i else ""
        skip = SKIP_MARK.match(prev)
        i += 1
        body: list[tuple[int, str]] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append((i + 1, lines[i]))
            i += 1
        i += 1
        if lang not in SHELL_LANGS:
            continue
        commands: list[tuple[int, str]] = []
        pending, first = "", 0
        for n, text in body:
            if lang == "console":
                if not text.startswith("$ ") and not pending:
                    continue
                text = text[2:] if text.startswith("$ ") else text
            if not pending:
                first = n
            if text.rstrip().endswith("\\"):
                pending += text.rstrip()[:-1] + " "
                continue
            commands.append((first, (pending + text).strip()))
            pending = ""
        yield Block(doc, start + 1, commands, skip.group("reason") if skip else None)


def test_every_skip_marker_has_a_reason_and_a_block() -> None:
    for doc in DOCS:
        lines = (ROOT / doc).read_text(encoding="utf-8").splitlines()
        for n, text in enumerate(lines):
            if "docs-test:" in text:
                assert SKIP_MARK.match(text.strip()), f"{doc}:{n + 1}: malformed marker"
                assert n + 1 < len(lines), f"{doc}:{n + 1}: a marker at the end"
                assert FENCE.match(lines[n + 1]), f"{doc}:{n + 1}: the marker must precede a fence"


def test_the_docs_have_commands_to_run() -> None:
    for doc in DOCS:
        runnable = [
            c
            for b in blocks(doc)
            if b.skip is None
            for _, c in b.commands
            if c.split(" ", 1)[0] in RUNNABLE
        ]
        assert runnable, f"{doc}: no hashfed command found (is the fence ```sh?)"


# --- the world ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("docs-world")
    # Partners may come with a token alone.
    env = {"HASHFED_TLS_CLIENT_AUTH": "optional"}
    peer = NodeProcess("agency-b", base / "agency-b", free_port(), env=env)
    peer.init()
    hashes = base / "b.csv"
    hashes.write_text("".join(f"sha256,{i:064x},A1\n" for i in range(1, 21)))
    peer.cli("list", "create", "agency-b/baseline-1", "--label", "baseline")
    peer.cli("list", "import", "agency-b/baseline-1", str(hashes))
    peer.cli("list", "publish", "agency-b/baseline-1")
    peer.cli("principal", "add", "acme", "--role", "partner", "--labels", "baseline")
    token = peer.cli("token", "create", "acme").stdout.strip().splitlines()[-1]
    peer.log = base / "agency-b.log"
    peer.start(timeout=180)  # a loaded machine starts slowly
    try:
        yield World(
            peer=peer, token=token, agency_c_key=_key("agency-c"), be_fccu_key=_key("be-fccu")
        )
    finally:
        peer.stop()


def _introduce(world: World, data: Path) -> None:
    """Let the document's node (au-argos) pull from agency-b: pin its certificate there."""
    b = world.peer
    run_cli("principal", "rm", "au-argos", data=b.data, check=False)
    run_cli(
        "principal", "add", "au-argos", "--role", "peer", "--labels", "baseline,restricted",
        "--cert", str(data / "tls" / "node.crt"), data=b.data,
    )  # fmt: skip
    ctx = client_context(data / "tls" / "node.crt", data / "tls" / "node.key",
                         pinned_cert_files=[b.cert])  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # a running node trusts new pins within seconds
        try:
            with httpx.Client(base_url=b.url, verify=ctx, timeout=5) as c:
                if c.get("/federation/v1/node").status_code == 200:
                    return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("agency-b never accepted au-argos's certificate")


class DocRun:
    """One document's commands in one temporary folder."""

    def __init__(self, world: World, cwd: Path) -> None:
        self.world, self.cwd = world, cwd
        self.data = cwd / "data"
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HASHFED_")}
        env.update(HASHFED_DATA=str(self.data), HASHFED_PORT=str(self.port), COLUMNS="200")
        env.pop("HASHFED_FEED_TOKEN", None)
        self.env = env
        self.servers: list[subprocess.Popen[bytes]] = []
        world.local_key = lambda: (self.data / "keys" / "signing.pub").read_text().strip()
        world.local_cosigner_key = lambda: (
            (self.data / "keys" / "cosigning.pub").read_text().strip()
        )
        self.subst = placeholders(world)
        shutil.copy(world.peer.cert, cwd / "agency-b.crt")
        shutil.copy(world.peer.cert, cwd / "node.crt")
        ident = make_identity(cwd / ".ids", "acme")
        shutil.copy(ident.cert, cwd / "acme.crt")
        (cwd / "hashes.csv").write_text(
            "type,value,category\n" + "".join(f"sha256,{i:064x},A2\n" for i in range(100, 110))
        )
        (cwd / "md5s.txt").write_text("".join(f"{i:032x}\n" for i in range(1, 6)))
        (cwd / "stock-icons.csv").write_text(f"sha256,{'e' * 64},stock\n")

    def fill(self, text: str) -> str:
        for literal, value in self.subst.items():
            if literal in text:
                text = text.replace(literal, value())
        return text

    def run(self, where: str, line: str) -> None:
        head = line.split(" ", 1)[0]
        if head not in RUNNABLE and head != "export":
            return  # curl, make, loops…: shown to people, not run here
        line = self.fill(line)
        if UNFILLED.search(line):
            raise AssertionError(
                f"{where}: a placeholder is left in {line!r}: add it to PLACEHOLDERS in "
                "tests/integration/test_docs_commands.py, or mark the block "
                "<!-- docs-test: skip (reason) -->"
            )
        argv = shlex.split(line, comments=True)
        if not argv:
            return
        if argv[0] == "export" and len(argv) == 2 and "=" in argv[1]:
            name, value = argv[1].split("=", 1)
            self.env[name] = value
            return
        if argv[0] not in RUNNABLE:
            return
        if argv[0] == "hashfed":
            if argv[1:2] != ["init"] and not (self.data / "node.toml").exists():
                self._init()
            if argv[1:2] == ["serve"]:
                self._serve(where, argv)
                return
            argv[0] = HASHFED
        proc = subprocess.run(
            argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=TIMEOUT
        )
        assert proc.returncode == 0, (
            f"{where}: `{line}` exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
        if argv[1:2] == ["init"]:
            _introduce(self.world, self.data)

    def _init(self) -> None:
        run_cli("init", "--node-id", "au-argos", env=self.env)
        _introduce(self.world, self.data)

    def _serve(self, where: str, argv: list[str]) -> None:
        log = (self.cwd / "serve.log").open("ab")
        proc = subprocess.Popen([HASHFED, *argv[1:]], cwd=self.cwd, env=self.env,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        log.close()
        self.servers.append(proc)
        tls = self.data / "tls"
        ctx = client_context(
            tls / "node.crt", tls / "node.key", pinned_cert_files=[tls / "node.crt"]
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, (
                f"{where}: serve exited\n{(self.cwd / 'serve.log').read_text()}"
            )
            try:
                with httpx.Client(verify=ctx, timeout=5) as c:
                    if c.get(f"https://127.0.0.1:{self.port}/healthz").status_code == 200:
                        return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{where}: serve did not answer")

    def close(self) -> None:
        for proc in self.servers:
            terminate(proc)


@pytest.mark.timeout(1800)  # ~30 commands a document, each a Python start (loaded: 30 s)
@pytest.mark.parametrize("doc", DOCS)
def test_doc_commands_run_as_written(doc: str, world: World, tmp_path: Path) -> None:
    run = DocRun(world, tmp_path)
    ran = 0
    try:
        for block in blocks(doc):
            if block.skip is not None:
                continue
            for n, line in block.commands:
                run.run(f"{doc}:{n}", line)
                ran += line.split(" ", 1)[0] in RUNNABLE
    finally:
        run.close()
    assert ran, f"{doc}: no command ran"
