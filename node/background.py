"""A node process's background jobs: one daemon thread each, started and stopped alike.

The log follower, the segment manager and the overlap detector each loop in
a thread of their own until told to stop; they differ only in what one turn
of the loop does (``_run``), never in how the thread starts and ends.
"""

from __future__ import annotations

import threading
from typing import ClassVar, Self

__all__ = ["BackgroundJob"]


class BackgroundJob:
    """Runs ``_run`` in a daemon thread from :meth:`start` until :meth:`stop`.

    ``_run`` loops until ``self._stop`` is set. Subclasses name the thread
    (``thread_name``) and may wait longer for it to end (``stop_timeout``).
    """

    thread_name: ClassVar[str] = "background"
    stop_timeout: ClassVar[float] = 5.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.stop_timeout if timeout is None else timeout)
            self._thread = None

    def _run(self) -> None:
        raise NotImplementedError
