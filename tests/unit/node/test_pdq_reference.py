"""PDQ as Meta computes it: ThreatExchange's test images against the C++ hasher's hashes.

The images and the hashes Meta's reference hasher (``pdq-photo-hasher``)
publishes for them live in ``shared/pdq-reference/`` beside the repository
(see its README). Decoders differ (PIL here, CImg there), so the rule is
Meta's own for matching implementations: within 10 bits at quality >= 80.
Against the ``pdqhash`` package on the same decoded pixels, the hash of the
pixels as stored must be bit-exact: that is what Hasher-Matcher-Actioner
computes.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pdqhash
import pytest
from PIL import Image, ImageOps

from node.local.hashing import FileHashes, hash_file

REPO_ROOT = Path(__file__).resolve().parents[3]
#: Meta's threshold for two implementations agreeing on one image.
MAX_BITS_FROM_CPP = 10
#: The rows expected.csv holds: a folder copied in part must fail, not pass on less.
EXPECTED_ROWS = 12


def _candidates() -> list[Path]:
    """``../shared`` beside the repository; in a git worktree, also beside its main checkout."""
    out = [REPO_ROOT.parent / "shared"]
    git = REPO_ROOT / ".git"
    if git.is_file():  # a worktree: "gitdir: <main>/.git/worktrees/<name>"
        gitdir = Path(git.read_text(encoding="utf-8").removeprefix("gitdir:").strip())
        commondir = gitdir / "commondir"
        if commondir.is_file():
            common = (gitdir / commondir.read_text(encoding="utf-8").strip()).resolve()
            out.append(common.parent.parent / "shared")
    return [c / "pdq-reference" for c in out]


@pytest.fixture(scope="module")
def reference() -> list[tuple[Path, str]]:
    """``(image, C++ hash)`` for every row of expected.csv."""
    folder = next((c for c in _candidates() if (c / "expected.csv").is_file()), None)
    if folder is None:
        reason = "shared/pdq-reference/ not found beside the repository"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with (folder / "expected.csv").open(encoding="utf-8", newline="") as fh:
        rows = [(folder / row["file"], row["pdq"]) for row in csv.DictReader(fh)]
    assert len(rows) == EXPECTED_ROWS
    return rows


@pytest.fixture(scope="module")
def hashed(reference: list[tuple[Path, str]]) -> dict[Path, FileHashes]:
    """``hash_file`` of every reference image, once (they are up to 12 megapixels)."""
    out = {}
    for path, _ in reference:
        result = hash_file(path)
        assert result.error is None, path.name
        assert result.pdq is not None, path.name
        out[path] = result
    return out


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def hma_pdq(img: Image.Image) -> tuple[str, int]:
    """PDQ the way python-threatexchange's pdq_hasher computes it, written out here:
    PIL's pixels as stored, grey stacked into three channels, bits packed MSB first."""
    pixels = np.asarray(img.convert("RGB") if img.mode == "LA" else img)
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=2)
    bits, quality = pdqhash.compute(pixels)
    return f"{int(''.join(str(int(b)) for b in bits), 2):064x}", int(quality)


def test_every_reference_image_is_within_10_bits_of_the_cpp_hasher(
    reference: list[tuple[Path, str]], hashed: dict[Path, FileHashes]
) -> None:
    for path, cpp in reference:
        result = hashed[path]
        assert result.pdq is not None
        assert result.pdq_quality is not None
        assert result.pdq_quality >= 80, path.name
        assert distance(result.pdq, cpp) <= MAX_BITS_FROM_CPP, path.name


def test_every_reference_image_is_bit_exact_with_pdqhash_on_the_raw_pixels(
    reference: list[tuple[Path, str]], hashed: dict[Path, FileHashes]
) -> None:
    for path, _ in reference:
        result = hashed[path]
        with Image.open(path) as img:
            assert (result.pdq, result.pdq_quality) == hma_pdq(img), path.name


def test_orientation_tag_does_not_carry_the_hash_away_from_metas(
    reference: list[tuple[Path, str]], hashed: dict[Path, FileHashes]
) -> None:
    # Applying the tag put exif-rotn-3/6/8 128-132 bits from Meta's values:
    # no match against any hash Meta's tools made. The oriented hash is kept
    # beside it, equal to the hash of the pixels as displayed.
    rotated = {p.name: (p, cpp) for p, cpp in reference if p.name.startswith("exif-rotn-")}
    assert set(rotated) == {f"exif-rotn-{n}.jpg" for n in (1, 3, 6, 8)}
    for name, (path, cpp) in sorted(rotated.items()):
        result = hashed[path]
        assert result.pdq is not None
        assert distance(result.pdq, cpp) <= MAX_BITS_FROM_CPP, name
        if name == "exif-rotn-1.jpg":
            assert result.pdq_oriented is None
            continue
        assert result.pdq_oriented is not None
        assert distance(result.pdq_oriented, cpp) > 100, name
        with Image.open(path) as img:
            upright = ImageOps.exif_transpose(img)
            expected = hma_pdq(upright)
        assert (result.pdq_oriented, result.pdq_oriented_quality) == expected, name
