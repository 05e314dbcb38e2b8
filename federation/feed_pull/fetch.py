"""Downloading a feed to the spool file, and reading it back line by line.

:class:`federation.client.FeedClient` does the HTTP: this package never dials
out (federation/client/ is the project's only outbound package).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from crypto.errors import PeerLimitError, PeerProtocolError
from federation.client import FEED_MAX_BYTES, FeedClient
from federation.feed_pull.verify import MAX_LINE_BYTES

__all__ = ["DEFAULT_MAX_BYTES", "Download", "download", "spooled_lines"]

# A feed download is cut off past this: ~200 bytes an entry, 20M entries.
DEFAULT_MAX_BYTES = FEED_MAX_BYTES


@dataclass(frozen=True)
class Download:
    """What :func:`download` put in the spool."""

    since: str | None  # the cursor it was fetched from (None: in full)
    resynced: bool  # the server refused our cursor, so it is in full
    bytes: int
    lines: int


def download(
    client: FeedClient,
    label: str,
    since: str | None,
    spool_path: Path,
    *,
    max_bytes: int,
    on_bytes: Callable[[int], None],
) -> Download:
    """Fetch ``label`` from ``since`` into ``spool_path``; in full if the server asks to resync.

    Raises:
        PeerError: the server is unreachable, slow, or breaks the protocol
            (asks a full pull to resync).
        PeerLimitError: the download exceeded ``max_bytes``.
    """
    resynced = False
    while True:
        with spool_path.open("wb") as spool:
            fetched = client.fetch(label, since, spool, max_bytes=max_bytes, on_bytes=on_bytes)
        if not fetched.resync:
            return Download(since, resynced, fetched.bytes, fetched.lines)
        if since is None:
            raise PeerProtocolError(peer=client.peer, reason="asked to resync a full pull")
        since, resynced = None, True


def spooled_lines(fh: IO[bytes], peer: str) -> Iterator[bytes]:
    """The spool's lines without their newlines; each bounded, the last one complete.

    Raises:
        PeerLimitError: a line over ``MAX_LINE_BYTES``.
        PeerProtocolError: the last line is cut off.
    """
    while True:
        line = fh.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if not line.endswith(b"\n"):
            if len(line) > MAX_LINE_BYTES:
                raise PeerLimitError(
                    peer=peer, limit="feed line bytes", value=len(line), maximum=MAX_LINE_BYTES
                )
            raise PeerProtocolError(peer=peer, reason="feed stream: the last line is cut off")
        yield line[:-1]
