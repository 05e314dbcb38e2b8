"""``hashfed audit ls`` and ``hashfed audit export``: read the audit log without sqlite3.

Records say who did what, when and how many; they never hold hash values, so
printing them is safe. Registered on ``hashfed audit`` (:mod:`node.cli`) when
imported.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from crypto.errors import InputError
from node.cli import DEFAULT_DATA, DataOpt, audit_app, open_node, out
from node.cli_output import JsonOpt, print_json, print_table

if TYPE_CHECKING:
    from node.node import Node
    from node.store import AuditRow

__all__ = ["audit_export", "audit_ls"]

# One read of the export fetches this many records (bounded memory on any size).
_PAGE = 5_000
_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_DETAIL_CHARS = 60

ActorOpt = Annotated[str | None, typer.Option(help="Only this actor, e.g. cli@au-argos or acme.")]
ActionOpt = Annotated[
    str | None, typer.Option(help="Only this action, e.g. list.import; 'list.*' for a prefix.")
]
TargetOpt = Annotated[str | None, typer.Option(help="Only this target, e.g. a list name.")]
SinceOpt = Annotated[
    str | None,
    typer.Option(help="From this time: ISO 8601 (2026-05-01T12:00) or 30m, 24h, 7d ago."),
]
UntilOpt = Annotated[str | None, typer.Option(help="Before this time (same forms as --since).")]


def parse_time(text: str | None, *, where: str) -> int | None:
    """Milliseconds since the epoch from ISO 8601 (UTC unless it says) or ``<n>[smhd]`` ago."""
    if text is None:
        return None
    m = _RELATIVE.fullmatch(text.strip())
    now = dt.datetime.now(dt.UTC)
    if m:
        moment = now - dt.timedelta(seconds=int(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    else:
        try:
            moment = dt.datetime.fromisoformat(text.strip())
        except ValueError:
            raise InputError(
                "expected an ISO 8601 time (2026-05-01 or 2026-05-01T12:00Z) or 30m, 24h, 7d",
                where=where,
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def _record(r: AuditRow) -> dict[str, Any]:
    try:
        detail: Any = json.loads(r.detail) if r.detail else {}
    except ValueError:
        detail = r.detail
    return {
        "id": r.id,
        "time": dt.datetime.fromtimestamp(r.ts_ms / 1000, dt.UTC).isoformat(
            timespec="milliseconds"
        ),
        "actor": r.actor,
        "action": r.action,
        "target": r.target,
        "count": r.count,
        "detail": detail,
        "record_hash": r.record_hash.hex(),
    }


def _records(node: Node, *, limit: int | None, **filters: Any) -> Iterator[AuditRow]:
    after, left = 0, limit
    while left is None or left > 0:
        page = node.store.audit_records(
            after_id=after, limit=_PAGE if left is None else min(_PAGE, left), **filters
        )
        yield from page
        if len(page) < _PAGE:
            return
        after = page[-1].id
        if left is not None:
            left -= len(page)


def _filters(
    actor: str | None, action: str | None, target: str | None, since: str | None, until: str | None
) -> dict[str, Any]:
    return {
        "actor": actor,
        "action": action,
        "target": target,
        "since_ms": parse_time(since, where="--since"),
        "until_ms": parse_time(until, where="--until"),
    }


def _short(detail: str) -> str:
    # Details can be long (fingerprints, counts per type); --json prints them whole.
    return detail if len(detail) <= _DETAIL_CHARS else detail[: _DETAIL_CHARS - 1] + "…"


@audit_app.command("ls")
def audit_ls(
    actor: ActorOpt = None,
    action: ActionOpt = None,
    target: TargetOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int, typer.Option(help="The newest this many records (1-10000).")] = 50,
    data: DataOpt = DEFAULT_DATA,
    as_json: JsonOpt = False,
) -> None:
    """The newest audit records, oldest first: who did what, when, how many."""
    if not 1 <= limit <= 10_000:
        raise InputError("expected 1 to 10000", where="--limit")
    with open_node(data) as node:
        rows = node.store.audit_records(
            limit=limit, newest_first=True, **_filters(actor, action, target, since, until)
        )
    records = [_record(r) for r in reversed(rows)]
    if as_json:
        print_json(records)
        return
    cells = [
        (
            str(r["id"]),
            r["time"][:19].replace("T", " "),
            r["actor"],
            r["action"],
            r["target"],
            str(r["count"]),
            _short(json.dumps(r["detail"], separators=(",", ":"))) if r["detail"] else "",
        )
        for r in records
    ]
    print_table(
        ("id", "time (UTC)", "actor", "action", "target", "count", "detail"), cells, console=out
    )


@audit_app.command("export")
def audit_export(
    fmt: Annotated[str, typer.Option("--format", help="csv, json or ndjson.")] = "csv",
    output: Annotated[Path | None, typer.Option("--out", help="File (default: stdout).")] = None,
    actor: ActorOpt = None,
    action: ActionOpt = None,
    target: TargetOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Export audit records (all, or filtered) as CSV, a JSON array or NDJSON, oldest first."""
    if fmt not in {"csv", "json", "ndjson"}:
        raise InputError("expected csv, json or ndjson", where="--format")
    filters = _filters(actor, action, target, since, until)
    fh = output.open("w", newline="", encoding="utf-8") if output else sys.stdout
    count = 0
    try:
        with open_node(data) as node:
            writer = csv.writer(fh, lineterminator="\n") if fmt == "csv" else None
            if writer is not None:
                writer.writerow(
                    ["id", "time", "actor", "action", "target", "count", "detail", "record_hash"]
                )
            if fmt == "json":
                fh.write("[")
            for row in _records(node, limit=None, **filters):
                r = _record(row)
                if writer is not None:
                    r["detail"] = json.dumps(r["detail"], separators=(",", ":"))
                    writer.writerow(list(r.values()))
                elif fmt == "json":
                    fh.write(("," if count else "") + "\n  " + json.dumps(r))
                else:
                    fh.write(json.dumps(r) + "\n")
                count += 1
            if fmt == "json":
                fh.write("\n]\n" if count else "]\n")
    finally:
        if output:
            fh.close()
    if output:
        out.print(f"exported {count} audit records to {output}")
