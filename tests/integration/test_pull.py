"""``hashfed pull`` (the real command, in a subprocess) against a real node, directly or
through a lying proxy: a real HTTPS server in a thread of the test process that
forwards to the node and can tamper with, replay, fork, cut or slow the feed.

Refusals are named after the attack they stop; each checks that nothing in
the output folder changed. A pull killed with SIGKILL at several points
resumes to exactly the files of an uninterrupted pull.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from _nodes import HASHFED, NodeProcess, free_port, make_identity

from crypto.checkpoint import Checkpoint, CheckpointSigner, list_origin
from crypto.cosignature import CosignatureSigner
from crypto.errors import (
    ForkError,
    HashfedError,
    InputError,
    NoTrustedSignatureError,
    PeerProtocolError,
    RollbackError,
    RootMismatchError,
)
from crypto.key_files import load_private_key
from crypto.keys import NoteSigner, generate_signing_key
from crypto.merkle import CompactRange, leaf_hash
from crypto.tls import server_context
from federation.client import FeedClient, token_context
from federation.feed_pull import PullResult, load_trust, pull
from federation.feed_pull.cli import DEFAULT_MAX_AGE
from federation.feed_pull.files import Changes, merge, splice
from node.log.entry import encode_leaf
from node.store import Store

pytestmark = pytest.mark.network

EXIT_VERIFICATION, EXIT_PEER = 4, 5


def rand_hex(n: int) -> str:
    return os.urandom(n).hex()


def admin(node: NodeProcess, method: str, path: str, body: object = None) -> Any:
    with node.client() as c:
        r = c.request(method, path, json=body, timeout=120)
    assert r.status_code < 300, r.text
    return r.json()


def add(node: NodeProcess, name: str, items: list[tuple[str, str]], publish: bool = True) -> None:
    for i in range(0, len(items), 50_000):
        chunk = [{"type": t, "value": v, "category": "A1"} for t, v in items[i : i + 50_000]]
        admin(node, "POST", f"/api/v1/lists/{name}/hashes", {"hashes": chunk})
    if publish:
        admin(node, "POST", f"/api/v1/lists/{name}/publish")


def remove(node: NodeProcess, name: str, items: list[tuple[str, str]]) -> None:
    admin(
        node,
        "POST",
        f"/api/v1/lists/{name}/remove",
        {"hashes": [{"type": t, "value": v} for t, v in items]},
    )
    admin(node, "POST", f"/api/v1/lists/{name}/publish")


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a pull folder but the lock, by relative path."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


def outputs(folder: Path) -> dict[str, list[str]]:
    return {p.stem: p.read_text().split() for p in sorted(folder.glob("*.txt"))}


def accepted(folder: Path) -> dict[str, Any]:
    state = json.loads((folder / ".hashfed-state.json").read_text())
    lists = {
        k: {f: v[f] for f in ("size", "compact_range", "counts")} for k, v in state["lists"].items()
    }
    contents = {
        (k, t): (folder / rel).read_bytes()
        for k, v in state["lists"].items()
        for t, rel in v["files"].items()
    }
    return {"lists": lists, "outputs": state["outputs"], "contents": contents}


# --- the node and the partner ----------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data = tmp_path_factory.mktemp("pull") / "au-argos"
    n = NodeProcess("au-argos", data, free_port(), env={"HASHFED_TLS_CLIENT_AUTH": "optional"})
    n.init().start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def token(node: NodeProcess) -> str:
    node.cli("principal", "add", "acme", "--role", "partner", "--labels", "baseline")
    return node.cli("token", "create", "acme").stdout.strip().split()[-1]


@pytest.fixture(scope="module")
def trust(node: NodeProcess) -> str:
    return " ".join("au-argos=" + k for k in node.verifier_keys())


class Pull:
    """Runs the real ``hashfed pull`` against a URL, pinning that server's certificate."""

    def __init__(self, url: str, pin: Path, token: str, trust: str) -> None:
        self.url, self.pin, self.token, self.trust = url, pin, token, trust

    def args(self, out: Path, *extra: str) -> list[str]:
        return [
            HASHFED,
            "pull",
            self.url,
            "--label",
            "baseline",
            "--out",
            str(out),
            "--pin",
            str(self.pin),
            *[arg for t in self.trust.split() for arg in ("--trust", t)],
            *extra,
        ]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "HASHFED_FEED_TOKEN": self.token}

    def run(self, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.args(out, *extra), capture_output=True, text=True, env=self.env, timeout=300
        )

    def ok(self, out: Path, *extra: str) -> str:
        p = self.run(out, *extra)
        assert p.returncode == 0, p.stdout + p.stderr
        return p.stdout

    def inproc(self, out: Path, *, label: str = "baseline") -> PullResult:
        """The same pull in this process: faster, and failures arrive as typed exceptions."""
        ctx = token_context(pinned_cert_files=[self.pin])
        with FeedClient(self.url, ssl_context=ctx, token=self.token) as client:
            return pull(
                client,
                label=label,
                out_dir=out,
                trust=load_trust(self.trust.split()),
                max_age_seconds=DEFAULT_MAX_AGE,
            )

    def start(self, out: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.args(out), env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )


@pytest.fixture(scope="module")
def direct(node: NodeProcess, token: str, trust: str) -> Pull:
    return Pull(node.url, node.cert, token, trust)


# --- a lying proxy --------------------------------------------------------------------------------


class Proxy:
    """Forwards GETs to the node with the partner's token; ``mode`` decides how it lies."""

    def __init__(self, node: NodeProcess, token: str, folder: Path) -> None:
        self.node, self.token = node, token
        ident = make_identity(folder, "proxy")
        self.cert = ident.cert
        self.mode = "pass"
        self.recorded: bytes | None = None
        self.crafted: bytes | None = None
        ctx = server_context(
            ident.cert, ident.key, pinned_cert_files=[ident.cert], require_client_cert=False
        )
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy.serve(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def upstream(self, path: str) -> tuple[int, bytes]:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=str(self.node.cert))
        with httpx.Client(
            base_url=self.node.url,
            verify=ctx,
            timeout=60,
            headers={"Authorization": f"Bearer {self.token}"},
        ) as c:
            r = c.get(path)
        return r.status_code, r.content

    def serve(self, h: BaseHTTPRequestHandler) -> None:
        status, body = self.upstream(h.path)
        mode = self.mode
        if status == 200 and mode != "pass":
            body = self.lie(mode, body)
        h.send_response(status)
        h.send_header(
            "content-type", "application/x-ndjson" if status == 200 else "application/json"
        )
        h.end_headers()
        if mode == "slow" and status == 200:  # the first 64 KB trickle, the rest flows
            for i in range(0, min(len(body), 1 << 16), 4096):
                h.wfile.write(body[i : i + 4096])
                h.wfile.flush()
                time.sleep(0.02)
            h.wfile.write(body[1 << 16 :])
        else:
            h.wfile.write(body)

    def lie(self, mode: str, body: bytes) -> bytes:
        lines = body.split(b"\n")
        entries = [i for i, x in enumerate(lines) if x.startswith(b'{"list"') and b'"seq"' in x]
        if mode == "tamper":  # one hex digit of one value
            i = entries[len(entries) // 2]
            at = lines[i].index(b'"value":"') + 12
            lines[i] = (
                lines[i][:at]
                + (b"0" if lines[i][at : at + 1] != b"0" else b"1")
                + lines[i][at + 1 :]
            )
        elif mode == "drop":
            del lines[entries[len(entries) // 2]]
        elif mode == "reorder":
            a, b = entries[0], entries[1]
            lines[a], lines[b] = lines[b], lines[a]
        elif mode in ("replay", "fork"):
            crafted = self.recorded if mode == "replay" else self.crafted
            assert crafted is not None
            return crafted
        return b"\n".join(lines)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def proxy(
    node: NodeProcess, token: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    p = Proxy(node, token, tmp_path_factory.mktemp("proxy"))
    yield p
    p.close()


@pytest.fixture(scope="module")
def via_proxy(proxy: Proxy, token: str, trust: str) -> Pull:
    return Pull(proxy.url, proxy.cert, token, trust)


@pytest.fixture(scope="module")
def lists(node: NodeProcess) -> dict[str, list[tuple[str, str]]]:
    """Two baseline lists that share a few hashes, and a restricted one."""
    a = [("sha256", rand_hex(32)) for _ in range(300)] + [("pdq", rand_hex(32)) for _ in range(20)]
    b = a[:5] + [("md5", rand_hex(16)) for _ in range(30)]
    secret = [("sha256", rand_hex(32)) for _ in range(5)]
    for name, label, items in (
        ("a", "baseline", a),
        ("b", "baseline", b),
        ("secret", "restricted", secret),
    ):
        admin(node, "POST", "/api/v1/lists", {"name": f"au-argos/{name}", "label": label})
        add(node, f"au-argos/{name}", items)
    return {"a": a, "b": b, "secret": secret}


def expected(lists: dict[str, list[tuple[str, str]]]) -> dict[str, list[str]]:
    out: dict[str, set[str]] = {}
    for name in ("a", "b"):
        for t, v in lists[name]:
            out.setdefault(t, set()).add(v)
    return {t: sorted(vs) for t, vs in sorted(out.items())}


# --- pulls that work ------------------------------------------------------------------------------


def test_first_pull_writes_one_sorted_file_per_type(
    direct: Pull, lists: dict[str, list[tuple[str, str]]], tmp_path: Path
) -> None:
    out = tmp_path / "feed"
    stdout = direct.ok(out)
    assert "full pull" in stdout
    assert outputs(out) == expected(lists)
    state = json.loads((out / ".hashfed-state.json").read_text())
    assert set(state["lists"]) == {"au-argos/a", "au-argos/b"}  # not the restricted one
    a = state["lists"]["au-argos/a"]
    assert a["size"] == 320
    assert a["checkpoint"].startswith("hashfed:au-argos/a\n320\n")
    assert CompactRange.from_bytes(bytes.fromhex(a["compact_range"])).root().hex() == a["root"]
    assert sorted(p.name for p in (out / ".hashfed").iterdir()) == ["lists", "lock"]


def test_incremental_pulls_follow_adds_and_removes(
    node: NodeProcess, direct: Pull, lists: dict[str, list[tuple[str, str]]], tmp_path: Path
) -> None:
    out = tmp_path / "feed"
    direct.inproc(out)
    new_a = [("sha256", rand_hex(32)) for _ in range(7)] + [("sha1", rand_hex(20))]
    add(node, "au-argos/a", new_a)
    shared, only_a = lists["a"][:2], lists["a"][10:13]
    remove(node, "au-argos/a", shared + only_a)
    lists["a"] = [x for x in lists["a"] if x not in shared + only_a] + new_a
    stdout = direct.ok(out)  # the command, as a partner runs it
    assert "incremental pull, 13 entries" in stdout
    # a hash removed from a but still in b stays; one only a held goes
    got = outputs(out)
    assert got == expected(lists)
    assert all(v in got["sha256"] for _t, v in shared if _t == "sha256")
    nothing = direct.inproc(out)
    assert (nothing.full, nothing.entries) == (False, 0)
    assert got == outputs(out)
    (out / "sha256.txt").unlink()  # deleted by hand: the next pull puts it back
    direct.inproc(out)
    assert got == outputs(out)


def test_pull_with_a_client_certificate(
    node: NodeProcess, direct: Pull, lists: dict[str, list[tuple[str, str]]], tmp_path: Path
) -> None:
    ident = make_identity(tmp_path / "ids", "globex")
    node.cli(
        "principal",
        "add",
        "globex",
        "--role",
        "partner",
        "--labels",
        "baseline",
        "--cert",
        str(ident.cert),
    )
    time.sleep(2.5)  # the running node trusts newly pinned certificates within 2 s
    out = tmp_path / "feed"
    owners = tmp_path / "owners.txt"
    lines = "".join(t.replace("=", " ", 1) + "\n" for t in direct.trust.split())
    owners.write_text("# list owners we trust\n" + lines)
    p = subprocess.run(
        [
            HASHFED,
            "pull",
            node.url,
            "--label",
            "baseline",
            "--out",
            str(out),
            "--cert",
            str(ident.cert),
            "--key",
            str(ident.key),
            "--pin",
            str(node.cert),
            "--trust-file",
            str(owners),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "HASHFED_FEED_TOKEN"},
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert outputs(out) == expected(lists)


def test_resync_when_the_server_refuses_the_cursor(
    node: NodeProcess, direct: Pull, lists: dict[str, list[tuple[str, str]]], tmp_path: Path
) -> None:
    admin(node, "POST", "/api/v1/lists", {"name": "au-argos/gone", "label": "baseline"})
    doomed = [("sha256", rand_hex(32)) for _ in range(3)]
    add(node, "au-argos/gone", doomed)
    out = tmp_path / "feed"
    direct.inproc(out)
    assert all(v in outputs(out)["sha256"] for _t, v in doomed)
    store = Store.open(f"sqlite:///{node.data / 'hashfed.db'}", migrate=False)
    try:
        row = store.get_list(owner="au-argos", name="gone")
        assert row is not None
        store.update_list(list_id=row.id, frozen_reason="test: freeze")
    finally:
        store.close()
    result = direct.inproc(out)
    assert result.resynced
    assert result.dropped == ["au-argos/gone"]
    assert outputs(out) == expected(lists)


# --- pulls that must be refused, writing nothing --------------------------------------------------


@pytest.fixture
def pulled(via_proxy: Pull, proxy: Proxy, lists: object, tmp_path: Path) -> Iterator[Path]:
    proxy.mode = "pass"
    out = tmp_path / "feed"
    via_proxy.inproc(out)
    yield out
    proxy.mode = "pass"


def refused(puller: Pull, out: Path, error: type[HashfedError]) -> None:
    before = snapshot(out)
    with pytest.raises(error):
        puller.inproc(out)
    assert snapshot(out) == before


def test_tampered_entry_is_refused(
    node: NodeProcess, via_proxy: Pull, proxy: Proxy, pulled: Path
) -> None:
    add(node, "au-argos/a", [("sha256", rand_hex(32)) for _ in range(20)])
    proxy.mode = "tamper"
    refused(via_proxy, pulled, RootMismatchError)


def test_dropped_entry_is_refused(
    node: NodeProcess, via_proxy: Pull, proxy: Proxy, pulled: Path
) -> None:
    add(node, "au-argos/a", [("sha256", rand_hex(32)) for _ in range(20)])
    proxy.mode = "drop"
    refused(via_proxy, pulled, PeerProtocolError)


def test_reordered_entries_are_refused(
    node: NodeProcess, via_proxy: Pull, proxy: Proxy, pulled: Path
) -> None:
    add(node, "au-argos/a", [("sha256", rand_hex(32)) for _ in range(20)])
    proxy.mode = "reorder"
    refused(via_proxy, pulled, PeerProtocolError)


def test_rolled_back_feed_is_refused(
    node: NodeProcess, via_proxy: Pull, proxy: Proxy, pulled: Path
) -> None:
    _status, proxy.recorded = proxy.upstream("/feeds/v1/baseline/entries?format=ndjson")
    add(node, "au-argos/a", [("sha256", rand_hex(32)) for _ in range(3)])
    via_proxy.inproc(pulled)  # the partner has seen the larger list
    proxy.mode = "replay"  # ... and is now shown the older, smaller one
    refused(via_proxy, pulled, RollbackError)


def test_forked_history_is_refused(
    node: NodeProcess, via_proxy: Pull, proxy: Proxy, pulled: Path
) -> None:
    # The owner's own key signs another history of the same size: only the
    # partner's memory of the first one can tell.
    _status, body = proxy.upstream("/feeds/v1/baseline/entries?format=ndjson")
    lines = [json.loads(x) for x in body.decode().splitlines()]
    signer = CheckpointSigner(
        NoteSigner("au-argos", load_private_key(node.data / "keys" / "signing.key")),
        CosignatureSigner("au-argos", load_private_key(node.data / "keys" / "cosigning.key")),
    )
    out_lines: list[dict[str, Any]] = []
    for line in lines:
        if "checkpoint" in line and line["list"] == "au-argos/a":
            header = line
            out_lines.append(header)
            continue
        if line.get("list") == "au-argos/a" and line.get("seq") == 0:
            line = {**line, "category": "Z9"}
        out_lines.append(line)
    a_entries = [x for x in out_lines if x.get("list") == "au-argos/a" and "seq" in x]
    cr = CompactRange()
    cr.extend(
        leaf_hash(
            encode_leaf(e["seq"], e["op"], e["type"], e["value"], e["category"], e["timestamp_ms"])
        )
        for e in a_entries
    )
    cp = Checkpoint(list_origin("au-argos", "a"), cr.size, cr.root())
    header["checkpoint"] = signer.sign(cp, int(time.time()))
    proxy.crafted = (
        "\n".join(json.dumps(x, separators=(",", ":")) for x in out_lines) + "\n"
    ).encode()
    proxy.mode = "fork"
    refused(via_proxy, pulled, ForkError)


def test_owner_key_not_trusted_is_refused(via_proxy: Pull, pulled: Path) -> None:
    other = NoteSigner("au-argos", generate_signing_key())
    fake = Pull(via_proxy.url, via_proxy.pin, via_proxy.token, f"au-argos={other.verifier_key}")
    refused(fake, pulled, NoTrustedSignatureError)


def test_folder_of_another_feed_is_refused(direct: Pull, pulled: Path) -> None:
    before = snapshot(pulled)
    with pytest.raises(InputError):
        direct.inproc(pulled, label="restricted")
    assert snapshot(pulled) == before


@pytest.mark.parametrize(("mode", "code"), [("tamper", EXIT_VERIFICATION), ("drop", EXIT_PEER)])
def test_the_command_refuses_with_the_exit_code_of_the_failure(
    node: NodeProcess, via_proxy: Pull, proxy: Proxy, pulled: Path, mode: str, code: int
) -> None:
    add(node, "au-argos/a", [("sha256", rand_hex(32)) for _ in range(20)])
    proxy.mode = mode
    before = snapshot(pulled)
    p = via_proxy.run(pulled)
    assert p.returncode == code, p.stdout + p.stderr
    assert p.stderr.startswith("error: ")
    assert snapshot(pulled) == before


# --- a pull killed midway ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def big(node: NodeProcess) -> None:
    """Enough entries that replacing the output files takes a moment to kill into."""
    admin(node, "POST", "/api/v1/lists", {"name": "au-argos/big", "label": "baseline"})
    admin(node, "POST", "/api/v1/lists", {"name": "au-argos/big2", "label": "baseline"})
    add(node, "au-argos/big", [("sha256", rand_hex(32)) for _ in range(30_000)])
    add(node, "au-argos/big2", [("md5", rand_hex(16)) for _ in range(10_000)])


def change_big(node: NodeProcess, rnd: random.Random) -> None:
    add(node, "au-argos/big", [("sha256", rand_hex(32)) for _ in range(rnd.randint(500, 3000))])
    add(
        node,
        "au-argos/big2",
        [("md5", rand_hex(16)) for _ in range(200)]
        + [("sha256", rand_hex(32)) for _ in range(10_000)],
    )


Ready = Callable[[Path], bool]


def spooled(n: int) -> Ready:
    """The download has begun: more than ``n`` bytes are in the spool."""

    def ready(work: Path) -> bool:
        spool = work / ".hashfed" / "spool.ndjson"
        with contextlib.suppress(FileNotFoundError):
            return spool.stat().st_size > n
        return False

    return ready


def replacing(work: Path) -> bool:
    """Output files are being replaced: the marker a pull writes before the first one."""
    return (work / ".hashfed" / "pending").exists()


def after(seconds: float) -> Ready:
    deadline = time.monotonic() + seconds
    return lambda _work: time.monotonic() >= deadline


def killed_then_resumed(
    pull: Pull,
    start: Path,
    reference: Path,
    work: Path,
    ready: Callable[[], Ready],
    *,
    must_kill: bool = True,
) -> bool:
    """Copy ``start``, pull into it, SIGKILL the pull once ``ready``, resume, compare.

    Returns whether the pull was killed (a pull that ends first, allowed with
    ``must_kill=False``, must leave the same files too).
    """
    for _attempt in range(8 if must_kill else 1):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(start, work)
        proc = pull.start(work)
        is_ready, hit = ready(), False
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if is_ready(work):
                hit = True
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = hit and proc.returncode == -signal.SIGKILL
        if killed or not must_kill:
            break
    else:
        pytest.fail("the pull always finished before it could be killed")
    pull.ok(work)  # resume
    assert outputs(work) == outputs(reference)
    assert accepted(work) == accepted(reference)
    return killed


def test_pull_killed_while_replacing_files_resumes_to_the_same_files(
    node: NodeProcess, direct: Pull, lists: object, big: None, tmp_path: Path
) -> None:
    start, reference = tmp_path / "start", tmp_path / "reference"
    direct.inproc(start)
    change_big(node, random.Random(1))
    shutil.copytree(start, reference)
    direct.inproc(reference)  # uninterrupted
    killed_then_resumed(direct, start, reference, tmp_path / "killed", lambda: replacing)


def test_pull_killed_while_downloading_resumes_to_the_same_files(
    via_proxy: Pull, direct: Pull, proxy: Proxy, lists: object, tmp_path: Path
) -> None:
    empty, reference = tmp_path / "empty", tmp_path / "reference"
    empty.mkdir()
    direct.inproc(reference)
    proxy.mode = "slow"  # 4 KB every 20 ms at first
    try:
        killed_then_resumed(
            via_proxy, empty, reference, tmp_path / "killed", lambda: spooled(8_000)
        )
    finally:
        proxy.mode = "pass"


@pytest.mark.slow
def test_pull_killed_at_many_moments_always_resumes_to_the_same_files(
    node: NodeProcess, direct: Pull, lists: object, big: None, tmp_path: Path
) -> None:
    empty, start, reference = tmp_path / "empty", tmp_path / "start", tmp_path / "reference"
    empty.mkdir()
    direct.inproc(start)
    change_big(node, random.Random(7))
    shutil.copytree(start, reference)
    direct.inproc(reference)
    kills = 0
    for origin in (start, empty):
        killed_then_resumed(direct, origin, reference, tmp_path / "killed", lambda: replacing)
        for delay in (0.2, 0.5, 0.8, 1.2, 1.6, 2.0, 2.5, 3.0):
            kills += killed_then_resumed(
                direct,
                origin,
                reference,
                tmp_path / "killed",
                lambda d=delay: after(d),  # type: ignore[misc]
                must_kill=False,
            )
    assert kills >= 6  # most moments fall inside a pull (each takes 1.5 s or more)


# --- the sorted-file helpers against a set model --------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_splice_and_merge_apply_changes_like_a_set(tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    base = sorted(
        {
            hashlib.md5(str(rnd.random()).encode()).hexdigest().encode()  # noqa: S324
            for _ in range(rnd.choice([0, 1, 50, 3000]))
        }
    )
    old = tmp_path / "old.txt"
    old.write_bytes(b"".join(v + b"\n" for v in base))
    model = set(base)
    ch = Changes(tmp_path / "tmp")
    pool = base + [hashlib.md5(str(i).encode()).hexdigest().encode() for i in range(100)]  # noqa: S324
    for _ in range(rnd.choice([0, 5, 400])):
        v, present = rnd.choice(pool), rnd.random() < 0.5
        ch.add(v, present)
        (model.add if present else model.discard)(v)
    want = b"".join(v + b"\n" for v in sorted(model))
    for fn in ("splice", "merge"):
        out = tmp_path / f"{fn}.txt"
        with out.open("wb") as fh:
            n = (
                splice(old, ch.items(), fh, len(base))
                if fn == "splice"
                else merge(old, ch.items(), fh)
            )
        assert out.read_bytes() == want, fn
        assert n == len(model), fn


def test_changes_spill_to_sorted_runs_and_last_op_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import federation.feed_pull.files as fp

    monkeypatch.setattr(fp, "RUN_ENTRIES", 4)
    ch = Changes(tmp_path / "tmp")
    model: dict[bytes, bool] = {}
    rnd = random.Random(1)
    for _ in range(200):
        v, p = str(rnd.randrange(30)).encode(), rnd.random() < 0.5
        ch.add(v, p)
        model[v] = p
    assert ch.runs
    assert list(ch.items()) == sorted(model.items())
