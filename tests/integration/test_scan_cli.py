"""`hashfed hash` and `hashfed scan` against a real node over mutual TLS."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pdqhash
import pytest
from _nodes import NodeProcess, free_port, run_cli
from PIL import Image

pytestmark = pytest.mark.network


def _textured(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = (rng.random((24, 24, 3)) * 255).astype("uint8")
    return Image.fromarray(small).resize((320, 320), Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = NodeProcess("au-scan", tmp_path_factory.mktemp("scan") / "au-scan", free_port()).init()
    n.start()
    yield n
    n.stop()


def _hash(path: Path) -> dict[str, object]:
    out = run_cli("hash", str(path))
    [row] = json.loads(out.stdout)
    return row  # type: ignore[no-any-return]


def _remote(node: NodeProcess) -> list[str]:
    return [
        "--node",
        node.url,
        "--cert",
        str(node.admin.cert),
        "--key",
        str(node.admin.key),
        "--server-cert",
        str(node.cert),
    ]


def test_scan_finds_exact_and_near_copies_through_the_node(
    node: NodeProcess, tmp_path: Path
) -> None:
    folder = tmp_path / "evidence"
    folder.mkdir()
    original, other = _textured(1), _textured(2)
    original.save(tmp_path / "original.png")
    original.resize((200, 200)).save(folder / "resized.jpg", quality=80)  # near copy
    other.save(folder / "unrelated.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "link").symlink_to(tmp_path / "original.png")  # points out of the folder
    known_file = folder / "exact.bin"
    known_file.write_bytes(b"known material stand-in")

    pdq = _hash(tmp_path / "original.png")["pdq"]
    sha = _hash(known_file)["sha256"]
    with node.client() as c:
        assert (
            c.post("/api/v1/lists", json={"name": "au-scan/l", "label": "baseline"}).status_code
            == 201
        )
        body = {
            "hashes": [
                {"type": "pdq", "value": pdq, "category": "A1"},
                {"type": "sha256", "value": sha, "category": "B"},
            ]
        }
        assert c.post("/api/v1/lists/au-scan/l/hashes", json=body).status_code == 200

    report = tmp_path / "r.csv"
    run_cli(
        "scan",
        str(folder),
        *_remote(node),
        "--csv",
        str(report),
        "--report",
        str(tmp_path / "r.html"),
        "--state",
        str(tmp_path / "state"),
    )
    with report.open() as fh:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(fh)}
    assert rows["resized.jpg"]["status"] == "known"
    assert rows["resized.jpg"]["matched_on"] == "pdq"
    assert 0 < int(rows["resized.jpg"]["distance"]) <= 31
    assert rows["exact.bin"]["status"] == "known"
    assert rows["exact.bin"]["category"] == "B"
    assert rows["unrelated.png"]["status"] == "unknown"
    assert rows["notes.txt"]["status"] == "unknown"
    assert rows.get("link", {}).get("status") != "known"  # the symlink was not followed
    assert "<img" not in (tmp_path / "r.html").read_text()


def test_node_down_stops_the_scan_clearly_and_resume_finishes(
    node: NodeProcess, tmp_path: Path
) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.bin").write_bytes(bytes([i]) * 100)
    state = tmp_path / "state"
    node.stop()
    try:
        failed = run_cli("scan", str(folder), *_remote(node), "--state", str(state), check=False)
    finally:
        node.start()
    assert failed.returncode != 0
    assert "--resume" in failed.stderr
    assert "Traceback" not in failed.stderr
    report = tmp_path / "r.csv"
    run_cli(
        "scan", str(folder), *_remote(node), "--state", str(state), "--resume", "--csv", str(report)
    )
    with report.open() as fh:
        assert sum(1 for _ in csv.DictReader(fh)) == 3


def test_hash_and_scan_say_which_pdq_of_an_oriented_photo_matched(
    node: NodeProcess, tmp_path: Path
) -> None:
    folder = tmp_path / "phone"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, displayed upright
    photo = folder / "IMG_0001.jpg"
    _textured(3).resize((480, 320)).save(photo, quality=92, exif=exif)
    row = _hash(photo)
    with Image.open(photo) as img:
        stored = np.ascontiguousarray(np.asarray(img.convert("RGB")))
    bits, quality = pdqhash.compute(stored)
    assert row["pdq"] == np.packbits(bits.astype("uint8")).tobytes().hex()  # as stored
    assert row["pdq_quality"] == quality
    oriented = row["pdq_oriented"]
    assert isinstance(oriented, str)
    assert oriented != row["pdq"]

    # A list made by a tool that applied the orientation holds the oriented hash.
    with node.client() as c:
        created = c.post("/api/v1/lists", json={"name": "au-scan/phones", "label": "old"})
        assert created.status_code == 201
        body = {"hashes": [{"type": "pdq", "value": oriented, "category": "C"}]}
        assert c.post("/api/v1/lists/au-scan/phones/hashes", json=body).status_code == 200
    report = tmp_path / "r.csv"
    run_cli(
        "scan", str(folder), *_remote(node), "--csv", str(report), "--state", str(tmp_path / "s")
    )
    with report.open() as fh:
        [hit] = [r for r in csv.DictReader(fh) if r["list"] == "au-scan/phones"]
    assert (hit["status"], hit["matched_on"], hit["distance"]) == ("known", "pdq", "0")
    assert hit["variant"] == "oriented"
    assert hit["pdq"] == row["pdq"]
    assert hit["pdq_oriented"] == oriented
