"""A real node as a C2SP tlog-witness: ``POST /witness/v1/add-checkpoint``, one test per rule.

The log is owner ``a``, whose keys the witness node ``w`` trusts; its
checkpoints are signed here with throwaway keys over a real Merkle tree.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _nodes import NodeProcess, free_port

from crypto.checkpoint import Checkpoint, CheckpointSigner, format_checkpoint, list_origin
from crypto.cosignature import CosignatureVerifier
from crypto.errors import NoTrustedSignatureError
from crypto.merkle import TreeLevels, leaf_hash
from crypto.note import open_note

LOG = CheckpointSigner.generate("a")
STRANGER = CheckpointSigner.generate("a")  # a's name, another key
TREE = TreeLevels(leaf_hash(f"leaf {i}".encode()) for i in range(40))
PATH = "/witness/v1/add-checkpoint"


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = NodeProcess("w", tmp_path_factory.mktemp("witness") / "w", free_port()).init()
    keys = [arg for v in LOG.verifiers() for arg in ("--signing-key", v.verifier_key)]
    node.cli("peer", "trust", "a", *keys)
    node.start()
    try:
        yield node
    finally:
        node.stop()


def note(name: str, size: int, *, by: CheckpointSigner = LOG, root: bytes | None = None) -> str:
    cp = Checkpoint(list_origin("a", name), size, root or TREE.root(size))
    return by.sign(cp, int(time.time()))


def body(old: int, checkpoint: str, proof: list[bytes] | None = None) -> bytes:
    lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof or [])]
    return ("\n".join(lines) + "\n\n" + checkpoint).encode()


def post(w: NodeProcess, data: bytes) -> httpx.Response:
    with w.client() as c:
        return c.post(PATH, content=data)


def cosigner(w: NodeProcess) -> CosignatureVerifier:
    vkey = (Path(w.data) / "keys" / "cosigning.pub").read_text().strip()
    v = CosignatureVerifier.from_verifier_key(vkey)
    assert isinstance(v, CosignatureVerifier)
    return v


def test_first_checkpoint_is_cosigned_with_the_witness_key(w: NodeProcess) -> None:
    cp = note("first", 5)
    r = post(w, body(0, cp))
    assert r.status_code == 200, r.text
    assert r.text.startswith("— w ")
    # The client appends the lines to its note and verifies with the witness key.
    opened = open_note(cp + r.text, [cosigner(w)])
    assert opened.verified_by[0][0] == "w"


def test_stale_old_size_gets_409_with_the_current_size(w: NodeProcess) -> None:
    assert post(w, body(0, note("stale", 5))).status_code == 200
    r = post(w, body(0, note("stale", 7)))
    assert r.status_code == 409
    assert r.text == "5\n"
    assert r.headers["content-type"].startswith("text/x.tlog.size")


def test_consistent_growth_is_cosigned(w: NodeProcess) -> None:
    assert post(w, body(0, note("grow", 5))).status_code == 200
    r = post(w, body(5, note("grow", 13), TREE.consistency_proof(5, 13)))
    assert r.status_code == 200, r.text


def test_inconsistent_growth_is_refused_with_422(w: NodeProcess) -> None:
    assert post(w, body(0, note("fork", 5))).status_code == 200
    other = TreeLevels(leaf_hash(f"other {i}".encode()) for i in range(13))
    forked = note("fork", 13, root=other.root())
    r = post(w, body(5, forked, other.consistency_proof(5, 13)))
    assert r.status_code == 422
    # Nothing moved: the honest successor is still cosigned.
    assert post(w, body(5, note("fork", 13), TREE.consistency_proof(5, 13))).status_code == 200


def test_split_view_same_size_another_root_is_refused_with_409(w: NodeProcess) -> None:
    assert post(w, body(0, note("split", 8))).status_code == 200
    r = post(w, body(8, note("split", 8, root=hashlib.sha256(b"x").digest())))
    assert r.status_code == 409
    assert r.text == "8\n"


def test_unknown_origin_is_404(w: NodeProcess) -> None:
    cp = CheckpointSigner.generate("zz").sign(
        Checkpoint(list_origin("zz", "l"), 1, TREE.root(1)), 1
    )
    assert post(w, body(0, cp)).status_code == 404


def test_checkpoint_not_signed_by_the_logs_key_is_403(w: NodeProcess) -> None:
    assert post(w, body(0, note("stranger", 3, by=STRANGER))).status_code == 403


@pytest.mark.parametrize(
    "data",
    [
        b"old 01\n\nx",
        b"new 0\n\nx",
        b"old 0\nnot-base64\n\nx",
        b"old 0\n",
        b"\xff\xfe",
    ],
)
def test_malformed_request_is_400(w: NodeProcess, data: bytes) -> None:
    assert post(w, data).status_code == 400


def test_old_size_above_the_checkpoint_is_400(w: NodeProcess) -> None:
    assert post(w, body(9, note("above", 3))).status_code == 400


def test_too_many_proof_lines_is_400(w: NodeProcess) -> None:
    assert post(w, body(1, note("many", 3), [b"\x00" * 32] * 64)).status_code == 400


def test_witness_race_two_submissions_from_one_view_get_one_cosignature(w: NodeProcess) -> None:
    assert post(w, body(0, note("race", 4))).status_code == 200
    results: list[int] = []

    def submit(size: int) -> None:
        results.append(
            post(w, body(4, note("race", size), TREE.consistency_proof(4, size))).status_code
        )

    threads = [threading.Thread(target=submit, args=(s,)) for s in (20, 30, 20, 30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(200) == 1, results
    assert sorted(results)[1:] == [409, 409, 409]


def test_cosignature_does_not_verify_as_the_log_key(w: NodeProcess) -> None:
    cp = note("notlog", 2)
    r = post(w, body(0, cp))
    assert r.status_code == 200
    text = format_checkpoint(Checkpoint(list_origin("a", "notlog"), 2, TREE.root(2)))
    w_as_log = CheckpointSigner.generate("w").verifiers()[:1]
    with pytest.raises(NoTrustedSignatureError):
        open_note(text + "\n" + r.text, w_as_log)
