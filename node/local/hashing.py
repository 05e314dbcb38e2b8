"""Hashing one file locally: MD5, SHA-1, SHA-256 and, for images, PDQ.

Raw material never leaves the machine: this module reads a file and returns
only its hashes. It never raises for a problem with one file (unreadable,
special, truncated, too large, not decodable); :attr:`FileHashes.error` says
what went wrong instead, and the exact hashes are still filled in whenever
the bytes could be read, so a file that will not decode can still be matched
exactly.

Images are decoded with Pillow and hashed with PDQ by :mod:`node.local.pdq`:
the pixels as stored, as Meta's tools hash them, and, for an image whose EXIF
Orientation tag asks for a transform, also the pixels as displayed.

Video files get the exact hashes only: no video PDQ (vPDQ) is computed.

Error messages never carry hash values; they name the problem only.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import queue
import stat
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from PIL import Image, UnidentifiedImageError

from node.local.pdq import pdq_variants

Kind = Literal["image", "video", "other"]

#: Images with more pixels than this are refused (decompression-bomb guard).
MAX_IMAGE_PIXELS = 100_000_000
#: PDQ hashes below this quality are not used for near matching.
PDQ_MIN_QUALITY = 50
#: Files up to this size are read once into memory and decoded from there.
_IN_MEMORY_LIMIT = 8 << 20

# Pillow warns past MAX_IMAGE_PIXELS and refuses past twice that; we refuse
# past MAX_IMAGE_PIXELS ourselves (see _decode_pdq) and turn the warning into an
# error while decoding, so the limit is the same with any warning filter.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

# The image formats we decode, by Pillow's plugin name. Restricting Image.open
# to these keeps Pillow's looser plugins (TGA, MPEG, ...) from claiming
# arbitrary binary files.
Image.init()
_PIL_FORMATS = tuple(
    f for f in ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "JPEG2000", "AVIF") if f in Image.OPEN
)

_VIDEO_EXTENSIONS = frozenset(
    {
        ".3g2", ".3gp", ".asf", ".avi", ".divx", ".f4v", ".flv", ".m2ts", ".m2v", ".m4v",
        ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".mts", ".mxf", ".ogv", ".qt", ".rm",
        ".rmvb", ".ts", ".vob", ".webm", ".wmv",
    }
)  # fmt: skip
# ISO-BMFF brands (the "ftyp" box) that are still images, and audio-only ones.
_IMAGE_BRANDS = frozenset({b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"})
_AUDIO_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P "})
_SNIFF_BYTES = 512
#: Files larger than this get MD5 in a helper thread and are not kept in memory.
_THREADED_MD5_MIN = _IN_MEMORY_LIMIT


@dataclass(frozen=True)
class FileHashes:
    """The hashes of one file, all lower-case hex.

    ``md5``, ``sha1`` and ``sha256`` are empty strings when the file's bytes
    could not be read (then ``error`` says why). ``pdq`` and ``pdq_quality``
    are set for images that decoded; ``error`` may also be set while the
    exact hashes are valid, e.g. for a truncated image.

    ``pdq`` hashes the pixels as stored, as Meta's tools do. ``pdq_oriented``
    and ``pdq_oriented_quality`` hash the pixels as displayed, set only for an
    image whose EXIF Orientation tag is 2-8 (for others both hashes are equal).
    """

    path: str
    size: int
    md5: str
    sha1: str
    sha256: str
    pdq: str | None
    pdq_quality: int | None
    kind: Kind
    error: str | None
    pdq_oriented: str | None = None
    pdq_oriented_quality: int | None = None

    @property
    def hashed(self) -> bool:
        """True when the exact hashes were computed (the bytes could be read)."""
        return bool(self.sha256)

    @property
    def pdq_usable(self) -> bool:
        """True when the PDQ hash is good enough for near matching."""
        return (
            self.pdq is not None
            and self.pdq_quality is not None
            and self.pdq_quality >= PDQ_MIN_QUALITY
        )

    @property
    def pdq_oriented_usable(self) -> bool:
        """True when the orientation-applied PDQ hash is good enough for near matching."""
        return (
            self.pdq_oriented is not None
            and self.pdq_oriented_quality is not None
            and self.pdq_oriented_quality >= PDQ_MIN_QUALITY
        )


# --- kind -------------------------------------------------------------------------------


def sniff_kind(head: bytes, name: str = "") -> Kind:
    """Guess the kind of a file from its first bytes, then its extension.

    Only the content decides "image"; a video is recognised by its container
    signature or, failing that, by a video file extension.
    """
    if (
        head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a"))
        or head.startswith((b"II*\x00", b"MM\x00*", b"\xff\x4f\xff\x51"))
        or head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n")
        or (head.startswith(b"RIFF") and head[8:12] == b"WEBP")
        or (head.startswith(b"BM") and len(head) >= 26 and head[6:10] == b"\x00\x00\x00\x00")
    ):
        return "image"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _IMAGE_BRANDS:
            return "image"
        if brand in _AUDIO_BRANDS:
            return "other"
        return "video"
    if (
        head.startswith(
            (
                b"\x1a\x45\xdf\xa3",  # Matroska / WebM
                b"\x30\x26\xb2\x75\x8e\x66\xcf\x11",  # ASF / WMV
                b"FLV\x01",
                b"\x00\x00\x01\xba",  # MPEG program stream
                b"\x00\x00\x01\xb3",  # MPEG video elementary stream
                b".RMF",
            )
        )
        or (head.startswith(b"RIFF") and head[8:12] == b"AVI ")
        or head[4:8] in (b"moov", b"mdat", b"wide")  # QuickTime without ftyp
        or (len(head) > 376 and head[0] == head[188] == head[376] == 0x47)  # MPEG-TS
    ):
        return "video"
    if os.path.splitext(name)[1].lower() in _VIDEO_EXTENSIONS:
        return "video"
    return "other"


# --- reading ----------------------------------------------------------------------------


def special_kind(mode: int) -> str | None:
    """What a non-regular file is ("a named pipe (fifo)"), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a named pipe (fifo)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def describe_os_error(exc: OSError) -> str:
    """A short, hash-free reason for an OS error (the path is reported separately)."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "file vanished or not found"
    if exc.errno == errno.EIO:
        return "I/O error (unreadable sector or failing medium)"
    if exc.errno == errno.ELOOP:
        return "a symbolic link (not followed)"
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or type(exc).__name__
    return f"{text} ({name})" if name else text


def _open_regular(path: str, *, follow_symlinks: bool) -> tuple[int, os.stat_result]:
    """Open a regular file read-only without blocking and without following links.

    Special files are refused from ``lstat``/``stat`` before any ``open`` (opening
    a fifo blocks, opening a device can have side effects); ``O_NONBLOCK`` and
    the ``fstat`` check close the race where the path is swapped in between.
    ``O_NOATIME`` leaves access times of evidence untouched where allowed.
    """
    st = os.stat(path) if follow_symlinks else os.lstat(path)
    special = special_kind(st.st_mode)
    if special is not None:
        raise _NotRegularError(special)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    noatime = getattr(os, "O_NOATIME", 0)
    try:
        fd = os.open(path, flags | noatime)
    except PermissionError:
        if not noatime:
            raise
        fd = os.open(path, flags)  # O_NOATIME needs ownership; retry without it
    try:
        fst = os.fstat(fd)
        special = special_kind(fst.st_mode)
        if special is not None:
            raise _NotRegularError(special)
    except BaseException:
        os.close(fd)
        raise
    return fd, fst


class _NotRegularError(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _read_hashes_threaded(fd: int, chunk_size: int) -> tuple[str, str, str, int]:
    """Hash a large open file with MD5 in a helper thread beside SHA-1 + SHA-256.

    MD5 is the slowest of the three digests (no CPU instructions for it) and
    hashlib releases the GIL on large updates, so on a free core this is
    about as fast as MD5 alone. Buffers go round a small ring: the reader
    takes a free one, fills it, hashes it and hands it to the MD5 thread,
    which gives it back.
    """
    md5 = hashlib.md5(usedforsecurity=False)
    sha1 = hashlib.sha1(usedforsecurity=False)
    sha256 = hashlib.sha256()
    bufs = [bytearray(chunk_size) for _ in range(4)]
    free: queue.SimpleQueue[int] = queue.SimpleQueue()
    work: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
    for i in range(len(bufs)):
        free.put(i)

    def run() -> None:
        while (item := work.get()) is not None:
            i, n = item
            md5.update(memoryview(bufs[i])[:n])
            free.put(i)

    thread = threading.Thread(target=run, name="hashfed-md5", daemon=True)
    thread.start()
    total = 0
    try:
        with open(fd, "rb", buffering=0, closefd=False) as fh:
            while True:
                i = free.get()
                n = fh.readinto(bufs[i])
                if not n:
                    break
                part = memoryview(bufs[i])[:n]
                sha1.update(part)
                sha256.update(part)
                work.put((i, n))
                total += n
    finally:
        work.put(None)
        thread.join()
    return md5.hexdigest(), sha1.hexdigest(), sha256.hexdigest(), total


def _read_hashes(fd: int, size: int, chunk_size: int) -> tuple[str, str, str, bytes | None, int]:
    """Hash the open file; returns hex digests, the content if small, and bytes read."""
    if size > _THREADED_MD5_MIN:
        md5_hex, sha1_hex, sha256_hex, total = _read_hashes_threaded(fd, chunk_size)
        return md5_hex, sha1_hex, sha256_hex, None, total

    sha1 = hashlib.sha1(usedforsecurity=False)
    sha256 = hashlib.sha256()
    total = 0
    md5 = hashlib.md5(usedforsecurity=False)
    kept: bytearray | None = bytearray()
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    with open(fd, "rb", buffering=0, closefd=False) as fh:
        while n := fh.readinto(buf):
            part = view[:n]
            md5.update(part)
            sha1.update(part)
            sha256.update(part)
            total += n
            if kept is not None:
                if total > _IN_MEMORY_LIMIT:  # the file grew while we read it
                    kept = None
                else:
                    kept += part
    content = bytes(kept) if kept is not None else None
    return md5.hexdigest(), sha1.hexdigest(), sha256.hexdigest(), content, total


@dataclass(frozen=True)
class _Pdq:
    """What decoding one image gave: both PDQ variants, or an error."""

    pdq: str | None = None
    quality: int | None = None
    oriented: str | None = None
    oriented_quality: int | None = None
    error: str | None = None


def _decode_pdq(fp: IO[bytes]) -> _Pdq:
    """Decode an image and hash it, as stored and (if its tag says so) as displayed."""
    try:
        with warnings.catch_warnings():
            # Decoder chatter ("possibly corrupt EXIF data", ...) would only garble the
            # progress display: ignored. The bomb warning becomes an error.
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp, formats=_PIL_FORMATS) as img:
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS:
                    return _Pdq(error=_too_large(width, height))
                (pdq, quality), oriented = pdq_variants(img)
        if oriented is None:
            return _Pdq(pdq, quality)
        return _Pdq(pdq, quality, oriented[0], oriented[1])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return _Pdq(error=_BOMB)
    except UnidentifiedImageError:
        return _Pdq(error="image format not recognised or not supported by the decoder")
    except MemoryError:
        return _Pdq(error="image too large to decode in memory")
    except OSError as exc:
        text = str(exc)
        if "truncated" in text.lower():
            return _Pdq(error="image data truncated; exact hashes only")
        return _Pdq(error=f"image could not be decoded: {_short(text)}")
    except Exception as exc:  # any decoder failure is a per-file problem
        reason = f"{type(exc).__name__}: {_short(str(exc))}"
        return _Pdq(error=f"image could not be decoded: {reason}")


_BOMB = (
    f"image exceeds the {MAX_IMAGE_PIXELS:,}-pixel limit (decompression-bomb guard); "
    "exact hashes only"
)


def _too_large(width: int, height: int) -> str:
    return (
        f"image of {width}x{height} pixels exceeds the {MAX_IMAGE_PIXELS:,}-pixel limit "
        "(decompression-bomb guard); exact hashes only"
    )


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def hash_file(
    path: str | Path, *, chunk_size: int = 1 << 20, follow_symlinks: bool = True
) -> FileHashes:
    """Hash one file: exact hashes always, PDQ for images.

    Never raises for a per-file problem: the returned record's ``error`` says
    what went wrong. Special files (fifos, sockets, devices) are refused
    without being opened. With ``follow_symlinks=False`` a symbolic link is
    refused too (the scanner uses that; an explicit command-line file may be
    a link).
    """
    spath = os.fspath(path)
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")

    def failed(reason: str, size: int = 0, kind: Kind = "other") -> FileHashes:
        return FileHashes(spath, size, "", "", "", None, None, kind, reason)

    try:
        fd, st = _open_regular(spath, follow_symlinks=follow_symlinks)
    except _NotRegularError as exc:
        return failed(f"skipped: {exc.what}, not opened")
    except OSError as exc:
        return failed(describe_os_error(exc))
    decoded = _Pdq()
    try:
        try:
            head = os.pread(fd, _SNIFF_BYTES, 0)
            kind = sniff_kind(head, spath)
            md5, sha1, sha256, content, total = _read_hashes(fd, st.st_size, chunk_size)
        except OSError as exc:
            return failed(f"read failed: {describe_os_error(exc)}", st.st_size)
        if kind == "image":
            if content is not None:
                decoded = _decode_pdq(io.BytesIO(content))
            else:  # a large image: decode from the same open file, not the path again
                with open(fd, "rb", closefd=False) as fh:
                    fh.seek(0)
                    decoded = _decode_pdq(fh)
    finally:
        os.close(fd)
    return FileHashes(
        spath,
        total,
        md5,
        sha1,
        sha256,
        decoded.pdq,
        decoded.quality,
        kind,
        decoded.error,
        decoded.oriented,
        decoded.oriented_quality,
    )
