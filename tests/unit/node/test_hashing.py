"""node.local.hashing and node.local.pdq: exact hashes, PDQ equal to the reference binding
on the pixels as stored (plus the oriented variant), per-file errors."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pdqhash
import pytest
from PIL import Image, ImageDraw, ImageOps

from node.local import hashing
from node.local.hashing import FileHashes, hash_file, sniff_kind
from node.local.pdq import (
    exif_orientation,
    pdq_bits_to_hex,
    pdq_from_image,
    pdq_hex_to_bits,
    pdq_variants,
)


def textured_image(seed: int, size: tuple[int, int] = (400, 300)) -> Image.Image:
    """Smooth random noise plus a few shapes: enough structure for a quality PDQ."""
    rng = np.random.default_rng(seed)
    w, h = size
    coarse = (rng.random((h // 25 + 1, w // 25 + 1, 3)) * 255).astype(np.uint8)
    img = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
        x1, y1 = x0 + int(rng.integers(30, 150)), y0 + int(rng.integers(30, 150))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    return img


def reference_pdq(img: Image.Image) -> tuple[str, int]:
    """pdqhash called directly, converted the way python-threatexchange's pdq_hasher does."""
    bits, quality = pdqhash.compute(np.asarray(img.convert("RGB")))
    bin_str = "".join(str(x) for x in bits)
    hex_str = "%0*X" % ((len(bin_str) + 3) // 4, int(bin_str, 2))  # noqa: UP031 - as upstream
    return hex_str.lower(), quality


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def save(img: Image.Image, path: Path, **kwargs: Any) -> Path:
    img.save(path, **kwargs)
    return path


# --- PDQ: bit-for-bit equal to the reference binding -----------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"])
def test_hash_file_pdq_equals_pdqhash_on_the_same_pixels(tmp_path: Path, fmt: str) -> None:
    path = save(textured_image(1), tmp_path / f"img.{fmt.lower()}", format=fmt)
    result = hash_file(path)
    with Image.open(path) as img:
        expected = reference_pdq(img)
    assert result.kind == "image"
    assert result.error is None
    assert (result.pdq, result.pdq_quality) == expected
    assert result.pdq_quality is not None
    assert result.pdq_quality >= 50


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "CMYK", "1", "LA"])
def test_pdq_from_image_equals_reference_for_every_mode(mode: str) -> None:
    img = textured_image(2).convert(mode)
    assert pdq_from_image(img) == reference_pdq(img)


def hma_pdq(img: Image.Image) -> tuple[str, int]:
    """python-threatexchange's PDQ signal, written out: PIL's pixels unconverted
    (LA to RGB; grey stacked into three channels) straight into pdqhash."""
    pixels = np.asarray(img.convert("RGB") if img.mode == "LA" else img)
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=2)
    bits, quality = pdqhash.compute(pixels)
    return pdq_bits_to_hex(bits), int(quality)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA"])
def test_pdq_equals_what_hasher_matcher_actioner_computes(mode: str) -> None:
    rgba = textured_image(17).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))  # alpha must not count
    img = rgba.convert(mode)
    assert pdq_from_image(img) == hma_pdq(img)


def test_greyscale_is_hashed_like_threatexchange_stacks_it() -> None:
    # pdq_hasher stacks a 2-D grey array into three equal channels.
    grey = textured_image(3).convert("L")
    arr = np.asarray(grey)
    stacked = np.concatenate([arr[..., np.newaxis]] * 3, axis=2)
    bits, quality = pdqhash.compute(stacked)
    assert pdq_from_image(grey) == (pdq_bits_to_hex(bits), quality)


def test_hex_conversion_matches_threatexchange_and_round_trips() -> None:
    rng = np.random.default_rng(7)
    vectors = [rng.integers(0, 2, 256) for _ in range(200)]
    vectors += [np.zeros(256, dtype=np.int64), np.ones(256, dtype=np.int64)]
    leading_zeros = np.zeros(256, dtype=np.int64)
    leading_zeros[200:] = 1
    vectors.append(leading_zeros)
    for bits in vectors:
        bin_str = "".join(str(int(x)) for x in bits)
        upstream = ("%0*X" % ((len(bin_str) + 3) // 4, int(bin_str, 2))).lower()  # noqa: UP031
        ours = pdq_bits_to_hex(bits)
        assert ours == upstream
        assert len(ours) == 64
        assert ours == ours.lower()
        assert np.array_equal(pdq_hex_to_bits(ours), np.asarray(bits, dtype=np.uint8))
    assert pdq_bits_to_hex([1] + [0] * 255) == "8" + "0" * 63  # first bit most significant


def test_hex_conversion_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="256 bits"):
        pdq_bits_to_hex([0] * 255)
    with pytest.raises(ValueError, match="0 or 1"):
        pdq_bits_to_hex([2] * 256)
    with pytest.raises(ValueError, match="64 hex"):
        pdq_hex_to_bits("00")


def _with_orientation(img: Image.Image, path: Path, orientation: int, fmt: str) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(img, path, format=fmt, exif=exif)


def test_pixels_are_hashed_as_stored_and_as_displayed_beside(tmp_path: Path) -> None:
    upright = textured_image(4)
    # Stored rotated, with orientation 6 ("rotate 90 CW to display") to undo it.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    result = hash_file(_with_orientation(stored, tmp_path / "rotated.png", 6, "PNG"))
    assert (result.pdq, result.pdq_quality) == reference_pdq(stored)  # what Meta's tools hash
    assert (result.pdq_oriented, result.pdq_oriented_quality) == reference_pdq(upright)
    assert result.pdq is not None
    assert result.pdq_oriented is not None
    assert distance(result.pdq, result.pdq_oriented) > 31
    assert result.pdq_usable
    assert result.pdq_oriented_usable


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_oriented_variant_equals_pdqhash_on_exif_transpose_pixels(
    tmp_path: Path, orientation: int, fmt: str
) -> None:
    path = _with_orientation(
        textured_image(13, (360, 240)), tmp_path / f"o.{fmt.lower()}", orientation, fmt
    )
    result = hash_file(path)
    with Image.open(path) as img:
        assert exif_orientation(img) == orientation
        assert (result.pdq, result.pdq_quality) == reference_pdq(img)
        if orientation == 1:
            assert result.pdq_oriented is None
            assert result.pdq_oriented_quality is None
        else:
            expected = reference_pdq(ImageOps.exif_transpose(img))
            assert (result.pdq_oriented, result.pdq_oriented_quality) == expected


@pytest.mark.parametrize("value", [0, 9, 65535])
def test_orientation_outside_1_to_8_means_as_stored(value: int) -> None:
    img = textured_image(14)
    img.getexif()[0x0112] = value
    assert exif_orientation(img) == 1
    assert pdq_variants(img) == (reference_pdq(img), None)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_oriented_variant_for_other_modes_equals_transposed_reference(mode: str) -> None:
    img = textured_image(15).convert(mode)
    img.getexif()[0x0112] = 8
    as_stored, oriented = pdq_variants(img)
    assert as_stored == reference_pdq(img)
    assert oriented == reference_pdq(img.transpose(Image.Transpose.ROTATE_90))


def test_untagged_image_has_no_oriented_variant(tmp_path: Path) -> None:
    result = hash_file(save(textured_image(16), tmp_path / "plain.jpg"))
    assert result.pdq is not None
    assert result.pdq_oriented is None
    assert result.pdq_oriented_quality is None
    assert not result.pdq_oriented_usable


# --- PDQ: near duplicates ----------------------------------------------------------------------


def test_resized_recompressed_cropped_copies_are_near_and_unrelated_is_far(
    tmp_path: Path,
) -> None:
    original = textured_image(10, (640, 480))
    orig = hash_file(save(original, tmp_path / "orig.png"))
    resized = hash_file(
        save(original.resize((320, 240), Image.Resampling.LANCZOS), tmp_path / "small.png")
    )
    recompressed = hash_file(save(original, tmp_path / "q40.jpg", quality=40))
    cropped = hash_file(save(original.crop((6, 5, 634, 475)), tmp_path / "crop.png"))
    unrelated = hash_file(save(textured_image(11, (640, 480)), tmp_path / "other.png"))
    assert orig.pdq is not None
    for copy in (resized, recompressed, cropped):
        assert copy.pdq is not None
        assert distance(orig.pdq, copy.pdq) <= 31, copy.path
    assert unrelated.pdq is not None
    assert distance(orig.pdq, unrelated.pdq) > 31


def test_flat_image_has_low_quality(tmp_path: Path) -> None:
    result = hash_file(save(Image.new("RGB", (200, 200), (90, 90, 90)), tmp_path / "flat.png"))
    assert result.kind == "image"
    assert result.pdq is not None
    assert result.pdq_quality is not None
    assert result.pdq_quality < 50
    assert not result.pdq_usable


# --- exact hashes ----------------------------------------------------------------------------


def _digests(data: bytes) -> tuple[str, str, str]:
    return (
        hashlib.md5(data).hexdigest(),  # noqa: S324 - MD5 is a hash type the lists use
        hashlib.sha1(data).hexdigest(),  # noqa: S324
        hashlib.sha256(data).hexdigest(),
    )


def test_exact_hashes_of_a_non_image(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 + 17)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    result = hash_file(path, chunk_size=1000)
    assert (result.md5, result.sha1, result.sha256) == _digests(data)
    assert result == FileHashes(str(path), len(data), *_digests(data), None, None, "other", None)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    result = hash_file(path)
    assert result.sha256 == hashlib.sha256(b"").hexdigest()
    assert result.hashed
    assert result.error is None
    assert result.size == 0


def test_large_file_paths_threaded_md5_and_decode_from_the_open_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Shrink the thresholds so small files take the large-file code paths.
    monkeypatch.setattr(hashing, "_IN_MEMORY_LIMIT", 1000)
    monkeypatch.setattr(hashing, "_THREADED_MD5_MIN", 1000)
    data = os.urandom(50_000)
    blob = tmp_path / "big.bin"
    blob.write_bytes(data)
    result = hash_file(blob, chunk_size=4096)
    assert (result.md5, result.sha1, result.sha256) == _digests(data)
    assert result.size == len(data)

    img = textured_image(5)
    path = save(img, tmp_path / "big.png")
    result = hash_file(path, chunk_size=4096)
    assert (result.md5, result.sha1, result.sha256) == _digests(path.read_bytes())
    assert result.pdq == reference_pdq(img)[0]


# --- kind ------------------------------------------------------------------------------------


def test_sniff_kind() -> None:
    assert sniff_kind(b"\xff\xd8\xff\xe0rest") == "image"
    assert sniff_kind(b"\x89PNG\r\n\x1a\n....") == "image"
    assert sniff_kind(b"\x00\x00\x00\x18ftypisom....") == "video"
    assert sniff_kind(b"\x00\x00\x00\x18ftypheic....") == "image"
    assert sniff_kind(b"\x00\x00\x00\x18ftypM4A ....") == "other"
    assert sniff_kind(b"\x1a\x45\xdf\xa3....") == "video"
    assert sniff_kind(b"RIFF\x00\x00\x00\x00AVI LIST") == "video"
    assert sniff_kind(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image"
    assert sniff_kind(b"hello", "clip.MP4") == "video"
    assert sniff_kind(b"hello", "photo.jpg") == "other"  # the content decides "image"
    assert sniff_kind(b"") == "other"


def test_video_gets_exact_hashes_only(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + os.urandom(4000))
    result = hash_file(path)
    assert result.kind == "video"
    assert result.hashed
    assert result.pdq is None
    assert result.error is None


# --- bad input: reported, never raised -------------------------------------------------------


def test_truncated_jpeg_keeps_exact_hashes_and_reports(tmp_path: Path) -> None:
    buf = io.BytesIO()
    textured_image(6).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()[: len(buf.getvalue()) // 3]
    path = tmp_path / "cut.jpg"
    path.write_bytes(data)
    result = hash_file(path)
    assert result.kind == "image"
    assert result.pdq is None
    assert result.pdq_quality is None
    assert result.error is not None
    assert "truncated" in result.error
    assert (result.md5, result.sha1, result.sha256) == _digests(data)


def test_garbage_with_image_magic_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "fake.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    result = hash_file(path)
    assert result.kind == "image"
    assert result.hashed
    assert result.pdq is None
    assert result.error is not None


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares a size and holds (almost) no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "size",
    [(11_000, 10_000), (20_000, 20_000)],  # Pillow warns past the limit, refuses past twice it
    ids=["warning", "error"],
)
def test_decompression_bomb_is_reported_not_decoded(tmp_path: Path, size: tuple[int, int]) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(*size))
    result = hash_file(path)
    assert result.kind == "image"
    assert result.hashed
    assert result.pdq is None
    assert result.error is not None
    assert "decompression-bomb" in result.error


def test_image_limit_is_a_pixel_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashing, "MAX_IMAGE_PIXELS", 10_000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # even with Pillow's check off
    result = hash_file(save(textured_image(8, (200, 100)), tmp_path / "big.png"))
    assert result.pdq is None
    assert result.error is not None
    assert "200x100" in result.error


def test_fifo_is_not_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = hash_file(fifo)  # opening would block forever: pytest-timeout would catch it
    assert not result.hashed
    assert result.error is not None
    assert "fifo" in result.error


def test_device_is_not_opened() -> None:
    result = hash_file("/dev/zero")  # reading it would never end
    assert not result.hashed
    assert result.error is not None
    assert "device" in result.error


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert hash_file(tmp_path / "nope").error == "file vanished or not found"
    result = hash_file(tmp_path)
    assert result.error is not None
    assert "directory" in result.error


def test_symlink_followed_only_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "target.bin"
    target.write_bytes(b"content")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert hash_file(link).sha256 == hashlib.sha256(b"content").hexdigest()
    refused = hash_file(link, follow_symlinks=False)
    assert not refused.hashed
    assert refused.error is not None
    assert "symbolic link" in refused.error


def test_errors_never_carry_hash_values(tmp_path: Path) -> None:
    buf = io.BytesIO()
    textured_image(9).save(buf, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[:4000])
    result = hash_file(path)
    assert result.error is not None
    for value in (result.md5, result.sha1, result.sha256):
        assert value not in result.error


def test_decoder_warnings_do_not_turn_into_errors_or_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest runs with filterwarnings=error: a stray Pillow warning ("possibly
    # corrupt EXIF data") must neither fail the file nor reach the console.
    real = Image.Image.getexif

    def chatty(img: Image.Image) -> Image.Exif:
        warnings.warn("Possibly corrupt EXIF data", UserWarning, stacklevel=1)
        return real(img)

    monkeypatch.setattr(Image.Image, "getexif", chatty)
    img = textured_image(12)
    result = hash_file(save(img, tmp_path / "chatty.png"))
    assert result.error is None
    assert result.pdq == reference_pdq(img)[0]
