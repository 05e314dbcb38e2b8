"""node.local.scan: walking, hashing in workers, batched matching, resume, per-file problems.

The matcher here is an in-test fake backed by a dict: it stands for the
remote node boundary. Files are generated at test time.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from crypto.errors import HashfedError
from node.local import workers as workers_mod
from node.local.errors import MatcherError, ScanError
from node.local.hashing import FileHashes, hash_file
from node.local.matcher import Hit, Query
from node.local.results import FileProblem, ScanResult
from node.local.scan import scan
from node.local.state_file import load_state
from node.local.walk import walk

# --- fixtures: images, a fake matcher, a folder tree ---------------------------------------------


def textured_image(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    coarse = (rng.random((h // 20 + 1, w // 20 + 1, 3)) * 255).astype(np.uint8)
    img = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(5):
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x0, y0, x0 + int(rng.integers(20, 120)), y0 + 60), fill=colour)
    return img


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


Entry = tuple[str, str, str]  # list, owner, category


@dataclass
class DictMatcher:
    """A matcher backed by a dict of ``(type, value) -> [(list, owner, category)]``."""

    entries: dict[tuple[str, str], list[Entry]]
    fail_on_call: int | None = None
    calls: list[list[Query]] = field(default_factory=list)
    description: str = "in-test dict matcher"

    def match(self, queries: Sequence[Query], *, max_distance: int) -> list[list[Hit]]:
        self.calls.append(list(queries))
        if self.fail_on_call is not None and len(self.calls) >= self.fail_on_call:
            # A foreign error whose text quotes a hash: it must not leak.
            raise ConnectionError(f"node down while asking for {queries[0].value}")
        out: list[list[Hit]] = []
        for q in queries:
            hits: list[Hit] = []
            if q.type == "pdq":
                for (htype, value), metas in self.entries.items():
                    d = hamming(value, q.value) if htype == "pdq" else 999
                    if d <= max_distance:
                        hits += [Hit(lst, own, cat, "pdq", d) for lst, own, cat in metas]
            else:
                metas = self.entries.get((q.type, q.value), [])
                hits += [Hit(lst, own, cat, q.type, 0) for lst, own, cat in metas]
            out.append(hits)
        return out

    @property
    def sent(self) -> list[Query]:
        return [q for call in self.calls for q in call]


@dataclass
class Tree:
    root: Path
    outside: Path
    entries: dict[tuple[str, str], list[Entry]]
    hashes: dict[str, FileHashes]


def build_tree(base: Path) -> Tree:
    root = base / "evidence"
    (root / "sub" / "deeper").mkdir(parents=True)
    outside = base / "outside"
    outside.mkdir()
    entries: dict[tuple[str, str], list[Entry]] = {}

    def jpeg(img: Image.Image, quality: int = 90) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        return buf.getvalue()

    (root / "known.jpg").write_bytes(jpeg(textured_image(1)))
    original = textured_image(2, (480, 360))
    near = original.resize((240, 180), Image.Resampling.LANCZOS)
    (root / "sub" / "near.jpg").write_bytes(jpeg(near, 60))
    (root / "sub" / "md5only.bin").write_bytes(b"exact-only material" * 50)
    textured_image(3).save(root / "unknown.png")
    Image.new("RGB", (100, 100), (40, 40, 40)).save(root / "flat.png")
    (root / "notes.txt").write_text("nothing to see\n")
    (root / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00" + b"v" * 3000)
    textured_image(4).save(root / "sub" / "deeper" / "deep.png")
    (root / "cut.jpg").write_bytes(jpeg(textured_image(5))[:3000])
    (root / "same-a.bin").write_bytes(b"duplicate")
    (root / "same-b.bin").write_bytes(b"duplicate")
    (outside / "secret.bin").write_bytes(b"outside the folder")
    (root / "link-to-file").symlink_to(outside / "secret.bin")
    (root / "link-to-dir").symlink_to(outside)
    os.mkfifo(root / "pipe")

    hashes = {p.name: hash_file(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
    secret = hash_file(outside / "secret.bin")
    entries[("sha256", hashes["known.jpg"].sha256)] = [("alpha", "node-a", "A1")]
    entries[("md5", hashes["md5only.bin"].md5)] = [("alpha", "node-a", "A2")]
    entries[("sha1", hashes["cut.jpg"].sha1)] = [("gamma", "node-c", "A1")]
    entries[("sha256", secret.sha256)] = [("alpha", "node-a", "A1")]
    # The near copy's original is listed by PDQ only.
    orig_pdq = hash_file_bytes(jpeg(original, 95), base / "orig.jpg").pdq
    assert orig_pdq is not None
    entries[("pdq", orig_pdq)] = [("beta", "node-b", "B2")]
    # A flat image's PDQ is unreliable: even listed, it must not be used.
    flat_pdq = hashes["flat.png"].pdq
    assert flat_pdq is not None
    entries[("pdq", flat_pdq)] = [("beta", "node-b", "FLAT")]
    return Tree(root, outside, entries, hashes)


def hash_file_bytes(data: bytes, where: Path) -> FileHashes:
    where.write_bytes(data)
    return hash_file(where)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return build_tree(tmp_path)


def comparable(result: ScanResult) -> tuple[object, ...]:
    return result.files, result.errors, result.skipped, result.totals_by_category()


# --- walking ---------------------------------------------------------------------------------


def test_walk_does_not_follow_symlinks_nor_leave_the_folder(tree: Tree) -> None:
    found = list(walk(tree.root))
    names = sorted(p.name for p in found)
    assert "link-to-file" in names
    assert "link-to-dir" in names
    assert "secret.bin" not in names  # never reached through the links
    for p in found:
        assert str(p).startswith(str(tree.root) + os.sep)
    assert len(found) == len(set(found)) == 14


def test_walk_of_a_missing_folder_is_a_scan_error(tmp_path: Path) -> None:
    with pytest.raises(ScanError, match="cannot read"):
        list(walk(tmp_path / "gone"))


# --- a full scan -----------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_scan_finds_known_unknown_errors_and_skips(
    tree: Tree, tmp_path: Path, workers: int
) -> None:
    matcher = DictMatcher(tree.entries)
    result = scan(
        tree.root,
        matcher,
        state_file=tmp_path / "state.jsonl",
        workers=workers,
        batch_size=4,
        progress=False,
    )
    known = {Path(f.path).name: f for f in result.known}
    assert set(known) == {"known.jpg", "md5only.bin", "cut.jpg", "near.jpg"}
    assert known["known.jpg"].hits == (Hit("alpha", "node-a", "A1", "sha256", 0),)
    assert known["md5only.bin"].hits == (Hit("alpha", "node-a", "A2", "md5", 0),)
    near = known["near.jpg"].hits
    assert len(near) == 1
    assert near[0].hash_type == "pdq"
    assert 0 < near[0].distance <= 31
    assert known["cut.jpg"].hits[0].list_name == "gamma"  # exact hit despite the decode error

    unknown = {Path(f.path).name for f in result.unknown}
    assert unknown == {
        "unknown.png",
        "flat.png",
        "notes.txt",
        "clip.mp4",
        "deep.png",
        "same-a.bin",
        "same-b.bin",
    }
    assert "secret.bin" not in unknown | set(known)  # the link out was not followed

    assert result.totals_by_category() == {"A1": 2, "A2": 1, "B2": 1}
    assert [Path(f.path).name for f in result.low_quality] == ["flat.png"]

    errors = {Path(p.path).name: p for p in result.errors}
    assert set(errors) == {"cut.jpg"}
    assert errors["cut.jpg"].hashed
    assert "truncated" in errors["cut.jpg"].reason

    skipped = {Path(p.path).name: p.reason for p in result.skipped}
    assert set(skipped) == {"link-to-file", "link-to-dir", "pipe"}
    assert "not followed" in skipped["link-to-file"]
    assert "fifo" in skipped["pipe"]

    assert result.hashed_now == len(result.files) == 11
    assert result.reused == 0
    assert result.matcher == "in-test dict matcher"


def test_low_quality_pdq_is_never_sent(tree: Tree, tmp_path: Path) -> None:
    matcher = DictMatcher(tree.entries)
    scan(tree.root, matcher, state_file=tmp_path / "s", workers=1, progress=False)
    sent_pdq = {q.value for q in matcher.sent if q.type == "pdq"}
    assert tree.hashes["flat.png"].pdq not in sent_pdq
    assert tree.hashes["unknown.png"].pdq in sent_pdq


def test_each_value_is_sent_once_per_batch(tree: Tree, tmp_path: Path) -> None:
    matcher = DictMatcher(tree.entries)
    result = scan(
        tree.root, matcher, state_file=tmp_path / "s", workers=1, batch_size=500, progress=False
    )
    assert len(matcher.calls) == 1
    assert len(matcher.calls[0]) == len(set(matcher.calls[0]))
    dup = tree.hashes["same-a.bin"].sha256
    assert sum(q.value == dup for q in matcher.calls[0]) == 1
    names = {Path(f.path).name for f in result.files}
    assert {"same-a.bin", "same-b.bin"} <= names


def test_batches_respect_batch_size(tree: Tree, tmp_path: Path) -> None:
    matcher = DictMatcher(tree.entries)
    scan(tree.root, matcher, state_file=tmp_path / "s", workers=1, batch_size=3, progress=False)
    assert len(matcher.calls) == 4  # 11 hashed files, 3 a batch
    assert all(len(call) <= 3 * 4 for call in matcher.calls)


def test_state_file_inside_the_folder_is_not_scanned(tree: Tree) -> None:
    state = tree.root / ".hashfed-scan.jsonl"
    state.write_text("")
    result = scan(tree.root, DictMatcher({}), state_file=state, workers=1, progress=False)
    assert str(state) not in {f.path for f in result.files}


# --- PDQ as stored (Meta's hash) and as displayed ---------------------------------------------


def _phone_photo(path: Path) -> FileHashes:
    """A JPEG stored sideways with EXIF orientation 6, as phone cameras write them."""
    exif = Image.Exif()
    exif[0x0112] = 6
    textured_image(20, (480, 360)).save(path, format="JPEG", quality=92, exif=exif)
    h = hash_file(path)
    assert h.pdq is not None
    assert h.pdq_oriented is not None
    assert h.pdq_usable
    assert h.pdq_oriented_usable
    assert hamming(h.pdq, h.pdq_oriented) > 31
    return h


@pytest.mark.parametrize("listed", ["as_stored", "oriented"])
def test_a_pdq_hit_says_which_variant_matched(tmp_path: Path, listed: str) -> None:
    folder = tmp_path / "evidence"
    folder.mkdir()
    h = _phone_photo(folder / "phone.jpg")
    value = h.pdq if listed == "as_stored" else h.pdq_oriented
    assert value is not None
    matcher = DictMatcher({("pdq", value): [("l", "o", "A1")]})
    result = scan(folder, matcher, state_file=tmp_path / "s", workers=1, progress=False)
    [f] = result.files
    assert f.hits == (Hit("l", "o", "A1", "pdq", 0, listed),)
    assert [q.value for q in matcher.sent if q.type == "pdq"] == [h.pdq, h.pdq_oriented]


def test_an_untagged_image_sends_one_pdq_hash_and_exact_hits_have_no_variant(
    tree: Tree, tmp_path: Path
) -> None:
    matcher = DictMatcher(tree.entries)
    result = scan(tree.root, matcher, state_file=tmp_path / "s", workers=1, progress=False)
    near = next(f for f in result.known if f.path.endswith("near.jpg"))
    assert [h.variant for h in near.hits] == ["as_stored"]
    known = next(f for f in result.known if f.path.endswith("known.jpg"))
    assert [h.variant for h in known.hits] == [None]
    assert known.hashes.pdq_oriented is None
    assert sum(q.type == "pdq" for q in matcher.sent) == 4  # known, near, unknown, deep


def test_resume_keeps_both_pdq_hashes(tmp_path: Path) -> None:
    folder = tmp_path / "evidence"
    folder.mkdir()
    h = _phone_photo(folder / "phone.jpg")
    state = tmp_path / "state.jsonl"
    scan(folder, DictMatcher({}), state_file=state, workers=1, progress=False)
    assert load_state(state, str(folder))[h.path][2] == h


def test_resume_refuses_a_state_file_whose_pdq_applied_the_orientation(tmp_path: Path) -> None:
    # Version 1 state files hold PDQ hashes of the oriented pixels under "pdq":
    # reusing them would query the wrong hash.
    folder = tmp_path / "evidence"
    folder.mkdir()
    _phone_photo(folder / "phone.jpg")
    state = tmp_path / "state.jsonl"
    state.write_text(json.dumps({"hashfed_scan_state": 1, "root": str(folder)}) + "\n")
    with pytest.raises(ScanError, match="older hashfed"):
        scan(folder, DictMatcher({}), state_file=state, resume=True, workers=1, progress=False)


# --- failures and resume -------------------------------------------------------------------------


def test_matcher_failure_stops_with_a_clear_error_and_no_hash(
    tree: Tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers_mod, "CHUNK_FILES", 2)
    state = tmp_path / "state.jsonl"
    matcher = DictMatcher(tree.entries, fail_on_call=2)
    with pytest.raises(MatcherError) as info:
        scan(tree.root, matcher, state_file=state, workers=1, batch_size=2, progress=False)
    message = str(info.value)
    assert isinstance(info.value, HashfedError)
    assert "ConnectionError" in message
    assert "--resume" in message
    assert str(state) in message
    for h in tree.hashes.values():
        for value in (h.md5, h.sha1, h.sha256, h.pdq):
            assert not value or value not in message
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


class CountingHasher:
    """Counts hash_file calls (workers=1 runs it in this process)."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, path: str) -> FileHashes:
        self.paths.append(path)
        return hash_file(path, follow_symlinks=False)


def test_resume_after_interruption_matches_an_uninterrupted_scan_without_rehashing(
    tree: Tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers_mod, "CHUNK_FILES", 2)
    full = scan(
        tree.root,
        DictMatcher(tree.entries),
        state_file=tmp_path / "full",
        workers=1,
        batch_size=2,
        progress=False,
    )

    state = tmp_path / "state.jsonl"
    first = CountingHasher()
    with pytest.raises(MatcherError):
        scan(
            tree.root,
            DictMatcher(tree.entries, fail_on_call=3),
            state_file=state,
            workers=1,
            batch_size=2,
            progress=False,
            hasher=first,
        )
    done = load_state(state, str(tree.root))
    assert 0 < len(done) < 11
    assert set(done) == set(first.paths)
    with state.open("a") as fh:  # the scan was killed in the middle of a line
        fh.write('{"path": "/torn')

    second = CountingHasher()
    resumed = scan(
        tree.root,
        DictMatcher(tree.entries),
        state_file=state,
        resume=True,
        workers=1,
        batch_size=2,
        progress=False,
        hasher=second,
    )
    assert not set(second.paths) & set(done)  # nothing hashed twice
    assert len(second.paths) == 11 - len(done)
    assert resumed.reused == len(done)
    assert resumed.hashed_now == 11 - len(done)
    assert comparable(resumed) == comparable(full)

    # A third run hashes nothing, unless a file changed since.
    changed = tree.root / "notes.txt"
    changed.write_text("changed\n")
    os.utime(changed, ns=(1, 1))
    third = CountingHasher()
    again = scan(
        tree.root,
        DictMatcher(tree.entries),
        state_file=state,
        resume=True,
        workers=1,
        progress=False,
        hasher=third,
    )
    assert third.paths == [str(changed)]
    assert again.reused == 10


def test_resume_with_worker_processes(
    tree: Tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers_mod, "CHUNK_FILES", 2)
    state = tmp_path / "state.jsonl"
    with pytest.raises(MatcherError):
        scan(
            tree.root,
            DictMatcher(tree.entries, fail_on_call=2),
            state_file=state,
            workers=2,
            batch_size=2,
            progress=False,
        )
    first_lines = state.read_text().splitlines()
    done = load_state(state, str(tree.root))
    assert 0 < len(done) <= 11

    resumed = scan(
        tree.root,
        DictMatcher(tree.entries),
        state_file=state,
        resume=True,
        workers=2,
        batch_size=2,
        progress=False,
    )
    new_records = [
        json.loads(x)["path"] for x in state.read_text().splitlines()[len(first_lines) :]
    ]
    assert not set(new_records) & set(done)
    assert len(new_records) == 11 - len(done)
    full = scan(
        tree.root,
        DictMatcher(tree.entries),
        state_file=tmp_path / "full",
        workers=2,
        progress=False,
    )
    assert comparable(resumed) == comparable(full)


def test_resume_refuses_a_state_file_of_another_folder(tree: Tree, tmp_path: Path) -> None:
    state = tmp_path / "state.jsonl"
    scan(tree.root / "sub", DictMatcher({}), state_file=state, workers=1, progress=False)
    with pytest.raises(ScanError, match="another folder"):
        scan(tree.root, DictMatcher({}), state_file=state, resume=True, progress=False)


def test_without_resume_the_state_file_starts_over(tree: Tree, tmp_path: Path) -> None:
    state = tmp_path / "state.jsonl"
    scan(tree.root, DictMatcher({}), state_file=state, workers=1, progress=False)
    hasher = CountingHasher()
    result = scan(
        tree.root, DictMatcher({}), state_file=state, workers=1, progress=False, hasher=hasher
    )
    assert len(hasher.paths) == 11
    assert result.reused == 0
    assert len(state.read_text().splitlines()) == 1 + 11
    assert oct(state.stat().st_mode & 0o777) == oct(0o600)


def test_matcher_answering_the_wrong_count_is_an_error(tree: Tree, tmp_path: Path) -> None:
    class Short:
        def match(self, queries: Sequence[Query], *, max_distance: int) -> list[list[Hit]]:
            return [[]]

    with pytest.raises(MatcherError, match="different number"):
        scan(tree.root, Short(), state_file=tmp_path / "s", workers=1, progress=False)


def test_scan_of_a_file_or_missing_folder_is_a_scan_error(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ScanError, match="not a folder"):
        scan(f, DictMatcher({}), state_file=tmp_path / "s", progress=False)
    with pytest.raises(ScanError, match="cannot read"):
        scan(tmp_path / "missing", DictMatcher({}), state_file=tmp_path / "s", progress=False)


# --- special files and permissions ---------------------------------------------------------------


def test_socket_and_fifo_are_skipped_without_opening(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    os.mkfifo(root / "fifo")
    sock_path = root / "s.sock"
    if len(str(sock_path)) < 100:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(sock_path))
            result = scan(root, DictMatcher({}), state_file=tmp_path / "st", progress=False)
    else:  # pragma: no cover - AF_UNIX paths are limited to ~107 bytes
        result = scan(root, DictMatcher({}), state_file=tmp_path / "st", progress=False)
    reasons = sorted(p.reason for p in result.skipped)
    assert any("fifo" in r for r in reasons)
    assert result.files == ()
    assert result.errors == ()


_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


@contextmanager
def without_dac_override() -> Iterator[None]:
    """Make permission bits apply to this thread even when running as root.

    Tests run as root, and root ignores ``chmod 000``. Dropping the two
    capabilities that bypass file permissions from this thread's effective set
    (kept in the permitted set, and restored afterwards) makes the kernel
    check them as for any user. Capabilities are per thread on Linux, so
    this covers what runs here: a ``workers=1`` scan.
    """
    if os.geteuid() != 0:
        yield
        return

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    libc = ctypes.CDLL(None, use_errno=True)
    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        pytest.skip("running as root and cannot read capabilities: chmod 000 does not apply")
    saved = [(d.effective, d.permitted, d.inheritable) for d in data]
    data[0].effective &= ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(header), data) != 0:
        pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE: chmod 000 does not apply")
    try:
        yield
    finally:
        for d, (eff, perm, inh) in zip(data, saved, strict=True):
            d.effective, d.permitted, d.inheritable = eff, perm, inh
        assert libc.capset(ctypes.byref(header), data) == 0


def test_permission_denied_file_and_folder_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "locked-dir").mkdir(parents=True)
    (root / "locked-dir" / "inside.bin").write_bytes(b"hidden")
    (root / "ok.bin").write_bytes(b"fine")
    locked = root / "locked.bin"
    locked.write_bytes(b"secret")
    locked.chmod(0)
    (root / "locked-dir").chmod(0)
    try:
        with without_dac_override():
            single = hash_file(locked)
            listed_errors: list[Path] = []
            listed = list(walk(root, on_error=lambda p, e: listed_errors.append(p)))
            result = scan(
                root, DictMatcher({}), state_file=tmp_path / "s", workers=1, progress=False
            )
    finally:
        (root / "locked-dir").chmod(0o755)
        locked.chmod(0o644)
    assert single.error == "permission denied"
    assert not single.hashed
    assert listed_errors == [root / "locked-dir"]
    assert sorted(p.name for p in listed) == ["locked.bin", "ok.bin"]
    errors = {Path(p.path).name: p for p in result.errors}
    assert errors["locked.bin"] == FileProblem(str(locked), "permission denied", hashed=False)
    assert "permission denied" in errors["locked-dir"].reason
    assert [Path(f.path).name for f in result.files] == ["ok.bin"]


# --- a worker that dies does not end the scan ---------------------------------------------


def crashing_hasher(path: str) -> FileHashes:
    """Stands for a decoder that crashes the process on a hostile file."""
    if os.path.basename(path) == "crash.bin":
        os._exit(3)
    return hash_file(path, follow_symlinks=False)


def test_a_file_that_kills_its_worker_is_reported_and_the_scan_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    for i in range(6):
        (root / f"f{i}.bin").write_bytes(b"x%d" % i)
    (root / "crash.bin").write_bytes(b"boom")
    result = scan(
        root,
        DictMatcher({}),
        state_file=tmp_path / "s",
        workers=2,
        progress=False,
        hasher=crashing_hasher,
    )
    assert len(result.files) == 6
    errors = {Path(p.path).name: p.reason for p in result.errors}
    assert set(errors) == {"crash.bin"}
    assert "process died" in errors["crash.bin"]


# --- output --------------------------------------------------------------------------------------


def test_progress_output_carries_no_hash(
    tree: Tree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scan(tree.root, DictMatcher(tree.entries), state_file=tmp_path / "s", workers=1, progress=True)
    captured = capsys.readouterr()
    assert "files/s" in captured.err
    everything = captured.out + captured.err
    for h in tree.hashes.values():
        for value in (h.md5, h.sha1, h.sha256, h.pdq):
            assert not value or value not in everything


class InterruptingMatcher(DictMatcher):
    """Stands for Ctrl-C arriving while a batch is being matched."""

    def match(self, queries: Sequence[Query], *, max_distance: int) -> list[list[Hit]]:
        if len(self.calls) >= 1:
            raise KeyboardInterrupt
        return super().match(queries, max_distance=max_distance)


def test_ctrl_c_stops_the_workers_keeps_the_state_and_resume_finishes(
    tree: Tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers_mod, "CHUNK_FILES", 2)
    state = tmp_path / "state.jsonl"
    with pytest.raises(KeyboardInterrupt):
        scan(
            tree.root,
            InterruptingMatcher(tree.entries),
            state_file=state,
            workers=2,
            batch_size=2,
            progress=False,
        )
    done = load_state(state, str(tree.root))
    assert len(done) >= 2
    resumed = scan(
        tree.root,
        DictMatcher(tree.entries),
        state_file=state,
        resume=True,
        workers=2,
        progress=False,
    )
    assert resumed.reused == len(done)
    assert len(resumed.files) == 11
