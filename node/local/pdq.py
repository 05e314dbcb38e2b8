"""PDQ of a decoded image, as Meta's tools compute it, and as displayed.

:func:`pdq_from_image` hashes the pixels as stored, as Meta's C++ and Java
hashers, ``pdqhashing``, python-threatexchange and Hasher-Matcher-Actioner do:
none of them applies the EXIF Orientation tag, so neither does the hash that
is meant to match theirs. :func:`pdq_variants` adds the hash of the pixels as
displayed for an image whose tag asks for a transform, so a copy hashed by a
tool that did apply it (earlier hashfed versions did) can still be found.
"""

from __future__ import annotations

import numpy as np
import pdqhash
from numpy.typing import NDArray
from PIL import ExifTags, Image

# EXIF Orientation value -> the transpose that displays the image upright; the
# same table as PIL.ImageOps.exif_transpose, so the oriented hash equals the
# hash of exif_transpose's pixels. 1 and values outside 1-8 mean "as stored".
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def pdq_bits_to_hex(bits: NDArray[np.integer] | list[int]) -> str:
    """Pack 256 PDQ bits big-endian (first bit = most significant) into 64 hex digits."""
    arr = np.asarray(bits, dtype=np.uint8)
    if arr.shape != (256,):
        raise ValueError("a PDQ hash has 256 bits")
    if np.any(arr > 1):
        raise ValueError("PDQ bits must be 0 or 1")
    return np.packbits(arr, bitorder="big").tobytes().hex()


def pdq_hex_to_bits(value: str) -> NDArray[np.uint8]:
    """Inverse of :func:`pdq_bits_to_hex`."""
    raw = bytes.fromhex(value)
    if len(raw) != 32:
        raise ValueError("a PDQ hash has 64 hex digits")
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="big")


def image_to_rgb_array(img: Image.Image) -> NDArray[np.uint8]:
    """The RGB pixels PDQ hashes, as an ``(height, width, 3)`` uint8 array.

    Any mode other than RGB is converted with Pillow's ``convert("RGB")``
    (alpha dropped, palettes expanded, grey replicated into three channels).
    For RGB, RGBA, L and LA images these are exactly the pixels
    python-threatexchange passes to ``pdqhash``.
    """
    if img.mode != "RGB":
        img = img.convert("RGB")
    # C order matters: pdqhash reads its grey buffer as C-ordered whatever its
    # strides, so a transposed view would be hashed as the wrong image.
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def pdq_from_image(img: Image.Image) -> tuple[str, int]:
    """PDQ hash (64 lower-case hex digits) and quality (0-100) of a decoded image.

    The pixels are hashed as given; the EXIF orientation is not applied.
    """
    bits, quality = pdqhash.compute(image_to_rgb_array(img))
    return pdq_bits_to_hex(bits), int(quality)


def exif_orientation(img: Image.Image) -> int:
    """The image's EXIF Orientation (1-8); 1 when absent or not a valid value."""
    value = img.getexif().get(ExifTags.Base.Orientation, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def pdq_variants(img: Image.Image) -> tuple[tuple[str, int], tuple[str, int] | None]:
    """PDQ of the pixels as stored, and of the pixels as displayed when they differ.

    The second item is None unless the EXIF Orientation tag is 2-8; it is
    the hash of :func:`PIL.ImageOps.exif_transpose`'s pixels, computed from
    the one decoded image.
    """
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    as_stored = pdq_from_image(rgb)
    method = _ORIENTATION_TRANSPOSE.get(exif_orientation(img))
    if method is None:
        return as_stored, None
    return as_stored, pdq_from_image(rgb.transpose(method))
