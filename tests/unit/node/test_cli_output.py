"""Listings that never cut a name, and progress counts in the right unit."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from node.cli_output import _CountColumn, print_table

LONG = "au-argos/series-2041-operation-with-a-rather-long-name-for-eighty-columns"


def test_a_table_in_an_80_column_pipe_keeps_whole_names() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=False)
    print_table(("list", "label", "hashes"), [(LONG, "baseline", "1,000,000")], console=console)
    text = buf.getvalue()
    assert LONG in text
    assert "…" not in text


def _render(unit: str, total: int | None, done: int) -> str:
    progress = Progress(console=Console(file=io.StringIO()))
    task_id = progress.add_task("x", total=total, unit=unit)
    progress.advance(task_id, done)
    return str(_CountColumn().render(progress.tasks[0]))


def test_entries_are_counted_as_entries_and_bytes_as_bytes() -> None:
    assert _render("entries", 1_000_000, 250_000) == "250,000/1,000,000 entries"
    assert "MB" in _render("bytes", 10_000_000, 5_000_000)
    assert _render("", None, 0) == ""
