"""How listings print: a table never cut to fit, or ``--json`` for scripts.

A rich table shrinks its columns to the console's width (80 in a pipe) and
cuts names (``au-argos/serie…``); here the console is widened to the table's
natural width instead, so a long name wraps on a narrow terminal but is never
truncated, and a pipe gets whole lines.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

__all__ = ["JsonOpt", "print_json", "print_table", "progress_bar"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (one array) instead of a table.")]


def print_json(rows: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")


def print_table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, console: Console) -> None:
    """Print ``rows`` under ``columns`` at the table's full width."""
    table = Table(*columns)
    for row in rows:
        table.add_row(*row)
    natural = console.measure(table, options=console.options.update(width=10_000)).maximum
    width = max(console.width, natural)
    wide = Console(
        file=console.file,
        width=width,
        highlight=False,
        soft_wrap=True,
        color_system=console.color_system,  # type: ignore[arg-type]
        force_terminal=console.is_terminal,
    )
    wide.print(table)


class _CountColumn(ProgressColumn):
    """``1,234/5,000 entries``, or bytes as ``12.3/45.6 MB`` for a task whose unit is bytes."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes = DownloadColumn()

    def render(self, task: Task) -> Text:
        unit = str(task.fields.get("unit", ""))
        if unit == "bytes":
            return self._bytes.render(task)
        if task.total is None:  # no count known (a commit): elapsed time says enough
            return Text(f"{int(task.completed):,} {unit}".rstrip() if task.completed else "")
        return Text(f"{int(task.completed):,}/{int(task.total):,} {unit}".rstrip())


def progress_bar(console: Console) -> Progress:
    """A bar with counts, total and time left (elapsed while the total is unknown).

    Shown on a terminal only; a pipe or a log file gets the results alone.
    Tasks may carry ``unit=`` ("entries", "hashes", "bytes").
    """
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        _CountColumn(),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
