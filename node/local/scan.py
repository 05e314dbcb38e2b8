"""Scanning a folder: hash every file locally, match the hashes in batches.

The folder is walked without following symbolic links and without leaving
it; special files (fifos, sockets, devices) are listed as skipped and never
opened. Files are hashed in worker processes (:func:`node.local.hashing.hash_file`)
in chunks, and each result is appended to a JSON-lines state file and
flushed, so an interrupted scan continues with ``resume=True`` without
hashing again a file whose size and modification time are unchanged.

Only hashes go to the :class:`Matcher` (a local index or a remote node), in
batches, each distinct value once per batch. PDQ hashes whose quality is
below :data:`node.local.hashing.PDQ_MIN_QUALITY` are not sent: those files are
matched on their exact hashes only, and the result says so. An image whose
EXIF orientation tag asks for a transform sends two PDQ hashes, the pixels as
stored and as displayed; each PDQ hit says which one matched (its ``variant``).

A matcher that fails stops the scan with :class:`MatcherError`; everything
hashed so far is in the state file. Neither the progress display nor any
exception carries a hash value.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import datetime as dt
import json
import multiprocessing
import os
import signal
import stat
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Protocol

from crypto.errors import HashfedError
from node.local.hashing import (
    PDQ_MIN_QUALITY,
    FileHashes,
    describe_os_error,
    hash_file,
    special_kind,
)

# 2: PDQ hashes the pixels as stored (1 applied the EXIF orientation), plus pdq_oriented.
STATE_VERSION = 2
#: A chunk sent to a worker holds at most this many files ...
CHUNK_FILES = 32
#: ... or this many bytes (a larger file goes alone).
CHUNK_BYTES = 32 << 20
#: Pending chunks per worker: enough to keep workers busy while matching runs.
_CHUNKS_IN_FLIGHT = 4
_PR_SET_PDEATHSIG = 1

Hasher = Callable[[str], FileHashes]


# --- the matcher boundary ------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One hash to look up: ``type`` is md5, sha1, sha256 or pdq; ``value`` lower-case hex."""

    type: str
    value: str


@dataclass(frozen=True)
class Hit:
    """One list entry a query matched; ``distance`` is 0 for exact types.

    ``variant`` says which PDQ hash of the file matched: ``"as_stored"`` (the
    pixels as stored, Meta's hash) or ``"oriented"`` (the pixels with the
    EXIF orientation applied); None for exact types. Matchers leave it None;
    the scan fills it in.
    """

    list_name: str
    owner: str
    category: str
    hash_type: str
    distance: int
    variant: str | None = None


class Matcher(Protocol):
    """Looks hashes up (a local index or a remote node)."""

    def match(self, queries: Sequence[Query], *, max_distance: int) -> list[list[Hit]]:
        """One list of hits per query, in order. Raises on failure."""
        ...


# --- errors ---------------------------------------------------------------------------------


class ScanError(HashfedError):
    """The scan as a whole cannot go on (not a per-file problem)."""

    code = "scan_failed"


class MatcherError(ScanError):
    """The matcher failed; the state file holds the work done so far."""

    code = "matcher_failed"

    def __init__(self, *, reason: str, state_file: Path) -> None:
        self.reason = reason
        self.state_file = state_file
        super().__init__(
            f"matching failed: {reason}. The scan stopped; the files hashed so far are kept "
            f"in {state_file}: run the scan again with --resume to continue."
        )


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileProblem:
    """A file that could not be (fully) processed, and why.

    ``hashed`` is true when the exact hashes were still computed and matched
    (e.g. a truncated image: no PDQ, but MD5/SHA-1/SHA-256 are valid).
    """

    path: str
    reason: str
    hashed: bool = False


@dataclass(frozen=True)
class FileResult:
    """One hashed file and the hits its hashes got (empty: unknown)."""

    hashes: FileHashes
    hits: tuple[Hit, ...] = ()

    @property
    def path(self) -> str:
        return self.hashes.path

    @property
    def known(self) -> bool:
        return bool(self.hits)

    @property
    def pdq_low_quality(self) -> bool:
        """An image whose PDQ was computed but not used for near matching."""
        return self.hashes.pdq is not None and not self.hashes.pdq_usable


@dataclass(frozen=True)
class ScanResult:
    """Everything a report needs; no raw content, only hashes and metadata."""

    root: str
    started: str
    finished: str
    files: tuple[FileResult, ...]
    errors: tuple[FileProblem, ...]
    skipped: tuple[FileProblem, ...]
    max_distance: int
    pdq_min_quality: int = PDQ_MIN_QUALITY
    matcher: str = ""
    hashed_now: int = 0
    reused: int = 0
    bytes_total: int = 0
    seconds: float = 0.0

    @property
    def known(self) -> list[FileResult]:
        return [f for f in self.files if f.known]

    @property
    def unknown(self) -> list[FileResult]:
        return [f for f in self.files if not f.known]

    @property
    def low_quality(self) -> list[FileResult]:
        return [f for f in self.files if f.pdq_low_quality]

    def totals_by_category(self) -> dict[str, int]:
        """Known files per category (a file hitting two categories counts in both)."""
        counts: Counter[str] = Counter()
        for f in self.files:
            for category in sorted({h.category for h in f.hits}):
                counts[category] += 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def counts_by_kind(self) -> dict[str, int]:
        return dict(Counter(f.hashes.kind for f in self.files))


# --- walking ---------------------------------------------------------------------------------


def _iter_entries(
    root: Path, on_error: Callable[[Path, OSError], None] | None
) -> Iterator[tuple[str, os.stat_result]]:
    """Yield ``(path, lstat)`` for every non-directory entry under ``root``, sorted.

    Directories are entered only when they are real directories (never through
    a link); a directory seen twice (a bind mount loop) is entered once.
    """
    top = os.fspath(root)
    try:
        top_st = os.stat(top)
    except OSError as exc:
        raise ScanError(f"cannot read the folder to scan: {describe_os_error(exc)}") from None
    if not stat.S_ISDIR(top_st.st_mode):
        raise ScanError("the path to scan is not a folder")
    seen = {(top_st.st_dev, top_st.st_ino)}
    stack = [top]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if on_error is not None:
                on_error(Path(directory), exc)
            continue
        subdirs: list[str] = []
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                if on_error is not None:
                    on_error(Path(entry.path), exc)
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key not in seen:
                    seen.add(key)
                    subdirs.append(entry.path)
            else:
                yield entry.path, st
        stack.extend(reversed(subdirs))  # depth-first, in name order


def walk(root: Path, *, on_error: Callable[[Path, OSError], None] | None = None) -> Iterator[Path]:
    """Every non-directory entry under ``root`` (files, links, special files).

    Symbolic links are yielded as entries, never followed, so the walk never
    leaves ``root``. Folders that cannot be listed are passed to ``on_error``
    (or silently skipped without it). Raises :class:`ScanError` when ``root``
    itself is not a folder that can be read.
    """
    for path, _ in _iter_entries(Path(root), on_error):
        yield Path(path)


def _special_reason(mode: int) -> str | None:
    kind = special_kind(mode)
    if kind is None:
        return None
    verb = "not followed" if stat.S_ISLNK(mode) else "not opened"
    return f"{kind.removeprefix('a ')}, {verb}"


# --- the state file --------------------------------------------------------------------------

_HASH_FIELDS = (
    "md5",
    "sha1",
    "sha256",
    "pdq",
    "pdq_quality",
    "kind",
    "error",
    "pdq_oriented",
    "pdq_oriented_quality",
)


def _record(h: FileHashes, mtime_ns: int, size: int) -> str:
    data: dict[str, Any] = {"path": h.path, "size": size, "mtime_ns": mtime_ns}
    data["read"] = h.size
    for name in _HASH_FIELDS:
        data[name] = getattr(h, name)
    return json.dumps(data, separators=(",", ":")) + "\n"


def _from_record(data: dict[str, Any]) -> FileHashes:
    return FileHashes(
        path=str(data["path"]),
        size=int(data["read"]),
        md5=str(data["md5"]),
        sha1=str(data["sha1"]),
        sha256=str(data["sha256"]),
        pdq=None if data["pdq"] is None else str(data["pdq"]),
        pdq_quality=None if data["pdq_quality"] is None else int(data["pdq_quality"]),
        kind=data["kind"] if data["kind"] in ("image", "video", "other") else "other",
        error=None if data["error"] is None else str(data["error"]),
        pdq_oriented=None if data["pdq_oriented"] is None else str(data["pdq_oriented"]),
        pdq_oriented_quality=(
            None if data["pdq_oriented_quality"] is None else int(data["pdq_oriented_quality"])
        ),
    )


def load_state(state_file: Path, root: str) -> dict[str, tuple[int, int, FileHashes]]:
    """Read a state file: ``path -> (size, mtime_ns, hashes)``; the last record wins.

    A torn last line (the scan was killed mid-write) is ignored. Raises
    :class:`ScanError` when the file belongs to a scan of another folder.
    """
    done: dict[str, tuple[int, int, FileHashes]] = {}
    try:
        fh = state_file.open("r", encoding="utf-8", errors="strict")
    except FileNotFoundError:
        return done
    except OSError as exc:
        raise ScanError(f"cannot read the state file: {describe_os_error(exc)}") from None
    with fh:
        for lineno, line in enumerate(fh, start=1):
            try:
                data = json.loads(line)
                if lineno == 1:
                    version = data.get("hashfed_scan_state")
                    if isinstance(version, int) and 0 < version < STATE_VERSION:
                        raise ScanError(
                            "the state file was written by an older hashfed that computed PDQ "
                            "differently; start a new scan without --resume"
                        )
                    if version != STATE_VERSION:
                        raise ScanError("the state file is not a hashfed scan state file")
                    if data.get("root") != root:
                        raise ScanError(
                            "the state file belongs to a scan of another folder; "
                            "start a new scan without --resume"
                        )
                    continue
                hashes = _from_record(data)
                done[hashes.path] = (int(data["size"]), int(data["mtime_ns"]), hashes)
            except (ValueError, KeyError, TypeError):
                if lineno == 1:
                    raise ScanError("the state file is not a hashfed scan state file") from None
                continue  # a torn line: that file is simply hashed again
    return done


class _StateWriter:
    """Appends one JSON line per hashed file and flushes after each batch."""

    def __init__(self, state_file: Path, root: str, *, append: bool) -> None:
        self.path = state_file
        state_file.parent.mkdir(parents=True, exist_ok=True)
        fresh = not append or not state_file.exists() or state_file.stat().st_size == 0
        fd = os.open(
            state_file,
            os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if fresh else os.O_APPEND),
            0o600,  # the file's hashes are the user's material: keep them private
        )
        self._fh: IO[str] = open(fd, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if fresh:
            header = {"hashfed_scan_state": STATE_VERSION, "root": root, "started": _now()}
            self._fh.write(json.dumps(header) + "\n")
        elif not _ends_with_newline(state_file):
            self._fh.write("\n")  # terminate a torn last line before appending
        self._fh.flush()

    def write(self, records: Iterable[str]) -> None:
        self._fh.writelines(records)
        self._fh.flush()

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


# --- matching --------------------------------------------------------------------------------


AS_STORED = "as_stored"
ORIENTED = "oriented"


def tagged_queries(h: FileHashes) -> list[tuple[Query, str | None]]:
    """The queries one file's hashes make, each with its PDQ variant (None: exact).

    The exact hashes always; PDQ of the pixels as stored if usable, and of the
    pixels as displayed if the image has one and it is usable.
    """
    if not h.hashed:
        return []
    out: list[tuple[Query, str | None]] = [
        (Query("md5", h.md5), None),
        (Query("sha1", h.sha1), None),
        (Query("sha256", h.sha256), None),
    ]
    if h.pdq is not None and h.pdq_usable:
        out.append((Query("pdq", h.pdq), AS_STORED))
    if h.pdq_oriented is not None and h.pdq_oriented_usable:
        out.append((Query("pdq", h.pdq_oriented), ORIENTED))
    return out


def queries_for(h: FileHashes) -> list[Query]:
    """The queries one file's hashes make (see :func:`tagged_queries`)."""
    return [q for q, _ in tagged_queries(h)]


class _Batcher:
    """Collects hashed files and matches them in batches of distinct queries."""

    def __init__(
        self, matcher: Matcher, *, batch_size: int, max_distance: int, state_file: Path
    ) -> None:
        self.matcher = matcher
        self.batch_size = batch_size
        self.max_distance = max_distance
        self.state_file = state_file
        self.pending: list[FileHashes] = []
        self.results: list[FileResult] = []

    def add(self, h: FileHashes) -> None:
        if not h.hashed:
            return
        self.pending.append(h)
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        index: dict[Query, int] = {}
        per_file: list[list[tuple[int, str | None]]] = []
        for h in batch:
            per_file.append([(index.setdefault(q, len(index)), v) for q, v in tagged_queries(h)])
        queries = list(index)
        try:
            answers = self.matcher.match(queries, max_distance=self.max_distance)
        except HashfedError as exc:  # our own errors never carry hash values
            raise MatcherError(reason=exc.message, state_file=self.state_file) from None
        except Exception as exc:
            # Foreign exception text may quote a request or body: name its type only.
            raise MatcherError(
                reason=f"{type(exc).__name__} from the matcher", state_file=self.state_file
            ) from None
        if not isinstance(answers, list) or len(answers) != len(queries):
            raise MatcherError(
                reason="the matcher answered a different number of queries than it was asked",
                state_file=self.state_file,
            )
        for h, qidx in zip(batch, per_file, strict=True):
            hits: dict[Hit, None] = {}
            for i, variant in qidx:
                for hit in answers[i]:
                    hits.setdefault(replace(hit, variant=variant), None)
            ordered = sorted(hits, key=_hit_order)
            self.results.append(FileResult(h, tuple(ordered)))


def _hit_order(hit: Hit) -> tuple[int, str, str, str, bool]:
    # The as-stored hash first when both variants hit the same entry equally.
    return (hit.distance, hit.list_name, hit.hash_type, hit.category, hit.variant == ORIENTED)


# --- hashing in workers ---------------------------------------------------------------------


def _scan_hash(path: str) -> FileHashes:
    """The default hasher: never follows a link the walk saw as a file."""
    return hash_file(path, follow_symlinks=False)


def _hash_chunk(hasher: Hasher, paths: list[str]) -> list[FileHashes]:
    return [hasher(p) for p in paths]


def _worker_init(parent: int) -> None:
    """Set up a hashing worker process.

    Ctrl-C goes to the scanner, which stops the workers itself. If the
    scanner is killed outright, the kernel ends the worker too (Linux
    ``PR_SET_PDEATHSIG``) instead of leaving it waiting for work forever.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):  # pragma: no cover - best effort
            pass
    if os.getppid() != parent:  # the scanner died before prctl took effect
        os._exit(1)


@dataclass
class _Todo:
    path: str
    size: int
    mtime_ns: int


def _chunks(todo: Sequence[_Todo]) -> Iterator[list[_Todo]]:
    chunk: list[_Todo] = []
    size = 0
    for item in todo:
        if chunk and (len(chunk) >= CHUNK_FILES or size + item.size > CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += item.size
    if chunk:
        yield chunk


class _Progress:
    """A rich progress bar on stderr (files, files/s, MB, ETA), or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None
        self._bytes = 0

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                ProgressColumn,
                SpinnerColumn,
                Task,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.text import Text

            class RateColumn(ProgressColumn):
                def render(self, task: Task) -> Text:
                    speed = task.finished_speed or task.speed
                    return Text(f"{speed or 0:,.0f} files/s", style="progress.data.speed")

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                RateColumn(),
                TextColumn("{task.fields[volume]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                speed_estimate_period=20.0,
            )
            self._progress.start()
            self._task = self._progress.add_task("listing files", total=None, volume="")
        return self

    def listing(self, count: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=count, volume="")

    def start_hashing(self, total: int, done: int) -> None:
        if self._progress is not None:
            self._progress.remove_task(self._task)
            self._task = self._progress.add_task(
                "hashing", total=total, completed=done, volume=_mb(0)
            )

    def advance(self, files: int, nbytes: int) -> None:
        if self._progress is not None:
            self._bytes += nbytes
            self._progress.update(self._task, advance=files, volume=_mb(self._bytes))

    def matching(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description="matching")

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class _Run:
    """Mutable bookkeeping of one scan run."""

    errors: list[FileProblem] = field(default_factory=list)
    skipped: list[FileProblem] = field(default_factory=list)
    hashed_now: int = 0


def scan(
    root: Path,
    matcher: Matcher,
    *,
    state_file: Path,
    resume: bool = False,
    workers: int = 2,
    batch_size: int = 500,
    max_distance: int = 31,
    progress: bool = True,
    hasher: Hasher | None = None,
) -> ScanResult:
    """Hash every file under ``root`` and match the hashes; see the module docstring.

    ``workers`` processes hash in parallel (1: hash in this process).
    ``batch_size`` files are matched per matcher call. ``hasher`` replaces
    :func:`node.local.hashing.hash_file` (it must be picklable when ``workers > 1``).

    Raises:
        ScanError: the folder or the state file is unusable.
        MatcherError: the matcher failed; resume later with ``resume=True``.
        KeyboardInterrupt: after stopping the workers; the state file is kept.
    """
    if workers < 1 or batch_size < 1 or max_distance < 0:
        raise ValueError("workers and batch_size must be positive, max_distance not negative")
    started_clock = time.monotonic()
    started = _now()
    root_str = os.path.abspath(os.fspath(root))
    state_file = Path(os.path.abspath(state_file))
    hasher = hasher or _scan_hash
    run = _Run()
    previous = load_state(state_file, root_str) if resume else {}
    try:
        state_st: os.stat_result | None = os.stat(state_file)
    except OSError:
        state_st = None

    def on_walk_error(path: Path, exc: OSError) -> None:
        run.errors.append(FileProblem(str(path), f"cannot list or stat: {describe_os_error(exc)}"))

    batcher = _Batcher(
        matcher, batch_size=batch_size, max_distance=max_distance, state_file=state_file
    )
    with _Progress(progress) as bar:
        todo: list[_Todo] = []
        reused: list[FileHashes] = []
        count = 0
        for path, st in _iter_entries(Path(root_str), on_walk_error):
            count += 1
            if count % 1000 == 0:
                bar.listing(count)
            reason = _special_reason(st.st_mode)
            if reason is not None:
                run.skipped.append(FileProblem(path, reason))
                continue
            if state_st is not None and (st.st_dev, st.st_ino) == (
                state_st.st_dev,
                state_st.st_ino,
            ):
                continue  # our own state file, inside the folder scanned
            prev = previous.get(path)
            if prev is not None and prev[:2] == (st.st_size, st.st_mtime_ns) and prev[2].hashed:
                reused.append(prev[2])
            else:
                todo.append(_Todo(path, st.st_size, st.st_mtime_ns))

        writer = _StateWriter(state_file, root_str, append=resume)
        try:
            bar.start_hashing(len(reused) + len(todo), len(reused))
            for h in reused:
                _note(run, h)
                batcher.add(h)

            def save(items: list[_Todo], results: list[FileHashes]) -> None:
                writer.write(
                    _record(h, t.mtime_ns, t.size) for t, h in zip(items, results, strict=True)
                )

            def collect(items: list[_Todo], results: list[FileHashes]) -> None:
                save(items, results)  # first: what is saved is never hashed again
                for h in results:
                    run.hashed_now += 1
                    _note(run, h)
                bar.advance(len(results), sum(t.size for t in items))
                for h in results:
                    batcher.add(h)

            if workers == 1:
                for chunk in _chunks(todo):
                    collect(chunk, _hash_chunk(hasher, [t.path for t in chunk]))
            else:
                _hash_in_pool(hasher, todo, workers, collect, save)
            bar.matching()
            batcher.flush()
        finally:
            writer.close()

    files = sorted(batcher.results, key=lambda r: r.path)
    return ScanResult(
        root=root_str,
        started=started,
        finished=_now(),
        files=tuple(files),
        errors=tuple(sorted(run.errors, key=lambda p: p.path)),
        skipped=tuple(sorted(run.skipped, key=lambda p: p.path)),
        max_distance=max_distance,
        pdq_min_quality=PDQ_MIN_QUALITY,
        matcher=str(getattr(matcher, "description", type(matcher).__name__)),
        hashed_now=run.hashed_now,
        reused=len(reused),
        bytes_total=sum(f.hashes.size for f in files),
        seconds=time.monotonic() - started_clock,
    )


def _note(run: _Run, h: FileHashes) -> None:
    if h.error is not None:
        run.errors.append(FileProblem(h.path, h.error, hashed=h.hashed))


def _hash_in_pool(
    hasher: Hasher,
    todo: Sequence[_Todo],
    workers: int,
    collect: Callable[[list[_Todo], list[FileHashes]], None],
    save: Callable[[list[_Todo], list[FileHashes]], None],
) -> None:
    """Hash ``todo`` in a process pool, handing each finished chunk to ``collect``.

    When stopped (a matcher error, Ctrl-C), chunks that finish while the pool
    shuts down go to ``save`` only: into the state file, not to matching.

    A worker that dies (a decoder crashing on a hostile file, the OOM killer)
    breaks the pool: the chunks that were in flight are then hashed again one
    file at a time in a fresh single-worker pool, so the file that kills its
    worker is found and reported, and the scan goes on.
    """
    chunks = iter(_chunks(todo))
    suspects: list[_Todo] = []
    pool = _new_pool(workers)
    pending: dict[cf.Future[list[FileHashes]], list[_Todo]] = {}
    try:
        while True:
            while len(pending) < workers * _CHUNKS_IN_FLIGHT:
                chunk = next(chunks, None)
                if chunk is None:
                    break
                pending[pool.submit(_hash_chunk, hasher, [t.path for t in chunk])] = chunk
            if not pending:
                break
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            broken = False
            for fut in done:
                items = pending.pop(fut)
                try:
                    results = fut.result()
                except BrokenProcessPool:
                    suspects.extend(items)
                    broken = True
                    continue
                collect(items, results)
            if broken:
                for items in pending.values():
                    suspects.extend(items)
                pending.clear()
                pool.shutdown(wait=True, cancel_futures=True)
                pool = _new_pool(workers)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        for fut, items in pending.items():  # keep whatever finished while stopping
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                save(items, fut.result())
        raise
    pool.shutdown(wait=True)
    if suspects:
        _hash_suspects(hasher, suspects, collect)


def _hash_suspects(
    hasher: Hasher,
    suspects: Sequence[_Todo],
    collect: Callable[[list[_Todo], list[FileHashes]], None],
) -> None:
    pool = _new_pool(1, check=True)
    try:
        for item in suspects:
            try:
                results = pool.submit(_hash_chunk, hasher, [item.path]).result()
            except BrokenProcessPool:
                pool.shutdown(wait=True)
                pool = _new_pool(1, check=True)
                results = [_crashed(item)]
            collect([item], results)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ping() -> bool:
    return True


def _crashed(item: _Todo) -> FileHashes:
    return FileHashes(
        path=item.path,
        size=item.size,
        md5="",
        sha1="",
        sha256="",
        pdq=None,
        pdq_quality=None,
        kind="other",
        error="the hashing process died on this file (decoder crash or out of memory)",
    )


def _new_pool(workers: int, *, check: bool = False) -> cf.ProcessPoolExecutor:
    """A pool of ``spawn`` workers (not fork: the parent may run threads).

    With ``check``, a worker must answer first: a pool that cannot even start
    is a problem of the whole scan, not of the file being hashed.
    """
    pool = cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(os.getpid(),),
    )
    if check:
        try:
            pool.submit(_ping).result()
        except BrokenProcessPool:
            pool.shutdown(wait=True)
            raise ScanError(
                "the hashing worker processes cannot start (a program calling scan() must "
                "guard its entry point with `if __name__ == '__main__':`); "
                "the files hashed so far are kept in the state file"
            ) from None
    return pool
