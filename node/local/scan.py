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

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from node.local.batching import Batcher
from node.local.hashing import PDQ_MIN_QUALITY, FileHashes, describe_os_error
from node.local.matcher import Matcher
from node.local.progress import Progress
from node.local.results import FileProblem, ScanResult, now
from node.local.state_file import StateWriter, load_state, record
from node.local.walk import iter_entries, special_reason
from node.local.workers import Hasher, Todo, hash_chunk, hash_in_pool, in_chunks, scan_hash

# ScanResult is re-exported: the CLI imports it from here.
__all__ = ["ScanResult", "scan"]


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
    started = now()
    root_str = os.path.abspath(os.fspath(root))
    state_file = Path(os.path.abspath(state_file))
    hasher = hasher or scan_hash
    run = _Run()
    previous = load_state(state_file, root_str) if resume else {}
    try:
        state_st: os.stat_result | None = os.stat(state_file)
    except OSError:
        state_st = None

    def on_walk_error(path: Path, exc: OSError) -> None:
        run.errors.append(FileProblem(str(path), f"cannot list or stat: {describe_os_error(exc)}"))

    batcher = Batcher(
        matcher, batch_size=batch_size, max_distance=max_distance, state_file=state_file
    )
    with Progress(progress) as bar:
        todo: list[Todo] = []
        reused: list[FileHashes] = []
        count = 0
        for path, st in iter_entries(Path(root_str), on_walk_error):
            count += 1
            if count % 1000 == 0:
                bar.listing(count)
            reason = special_reason(st.st_mode)
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
                todo.append(Todo(path, st.st_size, st.st_mtime_ns))

        writer = StateWriter(state_file, root_str, append=resume)
        try:
            bar.start_hashing(len(reused) + len(todo), len(reused))
            for h in reused:
                _note(run, h)
                batcher.add(h)

            def save(items: list[Todo], results: list[FileHashes]) -> None:
                writer.write(
                    record(h, t.mtime_ns, t.size) for t, h in zip(items, results, strict=True)
                )

            def collect(items: list[Todo], results: list[FileHashes]) -> None:
                save(items, results)  # first: what is saved is never hashed again
                for h in results:
                    run.hashed_now += 1
                    _note(run, h)
                bar.advance(len(results), sum(t.size for t in items))
                for h in results:
                    batcher.add(h)

            if workers == 1:
                for chunk in in_chunks(todo):
                    collect(chunk, hash_chunk(hasher, [t.path for t in chunk]))
            else:
                hash_in_pool(hasher, todo, workers, collect, save)
            bar.matching()
            batcher.flush()
        finally:
            writer.close()

    files = sorted(batcher.results, key=lambda r: r.path)
    return ScanResult(
        root=root_str,
        started=started,
        finished=now(),
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
