"""Walking the folder to scan: every entry once, no link followed, never leaving it.

Special files (fifos, sockets, devices) and links are yielded like files; the
scan lists them as skipped (:func:`special_reason`) and never opens them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from node.local.errors import ScanError
from node.local.hashing import describe_os_error, special_kind

__all__ = ["iter_entries", "special_reason", "walk"]


def iter_entries(
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
    for path, _ in iter_entries(Path(root), on_error):
        yield Path(path)


def special_reason(mode: int) -> str | None:
    kind = special_kind(mode)
    if kind is None:
        return None
    verb = "not followed" if stat.S_ISLNK(mode) else "not opened"
    return f"{kind.removeprefix('a ')}, {verb}"
