"""The scan's progress display on stderr: files, rate, volume and ETA, never a hash value."""

from __future__ import annotations

from typing import Any

__all__ = ["Progress"]


class Progress:
    """A rich progress bar on stderr (files, files/s, MB, ETA), or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None
        self._bytes = 0

    def __enter__(self) -> Progress:
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
