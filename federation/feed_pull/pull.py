"""One ``hashfed pull``: lock the folder, download, verify everything, then apply."""

from __future__ import annotations

import fcntl
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crypto.errors import InputError
from crypto.keys import NoteVerifier
from federation.client import FeedClient
from federation.feed_pull.apply import apply
from federation.feed_pull.fetch import DEFAULT_MAX_BYTES, download, spooled_lines
from federation.feed_pull.state import WORK_DIR, PullState
from federation.feed_pull.trust import Witnesses
from federation.feed_pull.verify import FeedVerifier

__all__ = ["PullResult", "pull"]


@dataclass(frozen=True)
class PullResult:
    """What one pull did."""

    label: str
    full: bool  # fetched from the start (first pull, resync, another server)
    resynced: bool  # the server refused our cursor
    lists: int
    entries: int  # verified log entries received
    bytes: int
    outputs: dict[str, int]  # hash type -> hashes in DIR/<type>.txt now
    dropped: list[str]  # lists the server no longer serves (their hashes left the files)
    seconds: float


class _Progress:
    """Optional progress reporting (a rich Progress or anything with the same two calls)."""

    def __init__(self, progress: Any) -> None:
        self.p = progress

    def task(self, description: str, total: int | None, unit: str) -> Callable[[int], None]:
        if self.p is None:
            return lambda n: None
        task = self.p.add_task(description, total=total, unit=unit)
        return lambda n: self.p.advance(task, n)


def pull(
    client: FeedClient,
    *,
    label: str,
    out_dir: Path,
    trust: dict[str, list[NoteVerifier]],
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_age_seconds: int = 0,
    progress: Any = None,
    witnesses: Witnesses | None = None,
) -> PullResult:
    """Pull ``label`` into ``out_dir``: verify everything, then rewrite the files atomically.

    Raises:
        InputError: ``out_dir`` holds another feed, or another pull is writing to it.
        PeerError: the server is unreachable, slow, or breaks the protocol.
        VerificationError: a signature, rollback, fork, root or age check failed
            (RollbackError, ForkError, RootMismatchError, ...); nothing was written.
        PeerLimitError: the download exceeded ``max_bytes`` (a PeerError).
    """
    started = time.monotonic()
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", label):
        raise InputError("expected lowercase letters, digits, '-' or '_'", where="--label")
    work = out_dir / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    lock = (work / "lock").open("a")
    try:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError("another pull is writing to this folder", where=str(out_dir)) from None
        old = PullState.load(out_dir)
        if old is not None and old.label != label:
            raise InputError(
                f"holds a copy of feed {old.label!r}, not {label!r}", where=str(out_dir)
            )
        since = old.cursor if old is not None and old.url == client.url else None
        rebuild = (work / "pending").exists()  # a pull died while replacing outputs
        tmp = work / "tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        spool_path = work / "spool.ndjson"
        report = _Progress(progress)
        try:
            got = download(
                client,
                label,
                since,
                spool_path,
                max_bytes=max_bytes,
                on_bytes=report.task("downloading", None, "bytes"),
            )
            verifier = FeedVerifier(
                old=old,
                trust=trust,
                peer=client.peer,
                tmp=tmp,
                max_age_seconds=max_age_seconds,
                witnesses=witnesses,
            )
            tick = report.task("verifying", got.lines, "entries")
            with spool_path.open("rb") as fh:
                n = 0
                for line in spooled_lines(fh, client.peer):
                    verifier.line(line)
                    n += 1
                    if n == 10_000:
                        tick(n)
                        n = 0
                tick(n)
            verified = verifier.finish()
            assert verifier.cursor is not None
            state, dropped = apply(
                out_dir,
                old,
                verified,
                url=client.url,
                label=label,
                cursor=verifier.cursor,
                rebuild=rebuild,
            )
        finally:
            spool_path.unlink(missing_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
        return PullResult(
            label=label,
            full=got.since is None,
            resynced=got.resynced,
            lists=len(verified),
            entries=verifier.entries,
            bytes=got.bytes,
            outputs=dict(state.outputs),
            dropped=dropped,
            seconds=time.monotonic() - started,
        )
    finally:
        lock.close()
