"""Hashing files in worker processes, in chunks, surviving a worker that dies.

Workers are ``spawn`` processes that ignore Ctrl-C (the scanner stops them)
and die with the scanner. Files go to them in chunks of at most
:data:`CHUNK_FILES` files or :data:`CHUNK_BYTES` bytes; each finished chunk is
handed back to the scan, which saves it to the state file before matching it.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from node.local.errors import ScanError
from node.local.hashing import FileHashes, hash_file

__all__ = [
    "CHUNK_BYTES",
    "CHUNK_FILES",
    "Hasher",
    "Todo",
    "hash_chunk",
    "hash_in_pool",
    "in_chunks",
    "scan_hash",
]

#: A chunk sent to a worker holds at most this many files ...
CHUNK_FILES = 32
#: ... or this many bytes (a larger file goes alone).
CHUNK_BYTES = 32 << 20
#: Pending chunks per worker: enough to keep workers busy while matching runs.
_CHUNKS_IN_FLIGHT = 4
_PR_SET_PDEATHSIG = 1

Hasher = Callable[[str], FileHashes]


def scan_hash(path: str) -> FileHashes:
    """The default hasher: never follows a link the walk saw as a file."""
    return hash_file(path, follow_symlinks=False)


def hash_chunk(hasher: Hasher, paths: list[str]) -> list[FileHashes]:
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
class Todo:
    path: str
    size: int
    mtime_ns: int


def in_chunks(todo: Sequence[Todo]) -> Iterator[list[Todo]]:
    chunk: list[Todo] = []
    size = 0
    for item in todo:
        if chunk and (len(chunk) >= CHUNK_FILES or size + item.size > CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += item.size
    if chunk:
        yield chunk


def hash_in_pool(
    hasher: Hasher,
    todo: Sequence[Todo],
    workers: int,
    collect: Callable[[list[Todo], list[FileHashes]], None],
    save: Callable[[list[Todo], list[FileHashes]], None],
) -> None:
    """Hash ``todo`` in a process pool, handing each finished chunk to ``collect``.

    When stopped (a matcher error, Ctrl-C), chunks that finish while the pool
    shuts down go to ``save`` only: into the state file, not to matching.

    A worker that dies (a decoder crashing on a hostile file, the OOM killer)
    breaks the pool: the chunks that were in flight are then hashed again one
    file at a time in a fresh single-worker pool, so the file that kills its
    worker is found and reported, and the scan goes on.
    """
    chunks = iter(in_chunks(todo))
    suspects: list[Todo] = []
    pool = _new_pool(workers)
    pending: dict[cf.Future[list[FileHashes]], list[Todo]] = {}
    try:
        while True:
            while len(pending) < workers * _CHUNKS_IN_FLIGHT:
                chunk = next(chunks, None)
                if chunk is None:
                    break
                pending[pool.submit(hash_chunk, hasher, [t.path for t in chunk])] = chunk
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
    suspects: Sequence[Todo],
    collect: Callable[[list[Todo], list[FileHashes]], None],
) -> None:
    pool = _new_pool(1, check=True)
    try:
        for item in suspects:
            try:
                results = pool.submit(hash_chunk, hasher, [item.path]).result()
            except BrokenProcessPool:
                pool.shutdown(wait=True)
                pool = _new_pool(1, check=True)
                results = [_crashed(item)]
            collect([item], results)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ping() -> bool:
    return True


def _crashed(item: Todo) -> FileHashes:
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
