"""``hashfed overlaps``: where this node's lists and other owners' lists hold the same hashes.

Registered on the ``hashfed`` command (:mod:`node.cli`) when this module is
imported, as the console entry point (:mod:`api.cli`) does. The operator
runs it on the node's machine, so every list is visible, as for the node's
own administrator over the API.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from node.cli import DEFAULT_DATA, DataOpt, app, open_node, out

if TYPE_CHECKING:
    from node.node import Node


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


@app.command("overlaps")
def overlaps(
    list_name: Annotated[
        str | None, typer.Option("--list", help="Only pairs with this list (owner/name).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Found since: 30m, 24h, 7d, or an ISO 8601 time.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    per_pair: Annotated[int, typer.Option(help="Overlaps shown per pair (newest).")] = 20,
    detect: Annotated[
        bool,
        typer.Option(help="First check what no serve process has checked yet (loads the indexes)."),
    ] = False,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Overlaps between lists of different owners, by list pair, newest first, with counts."""
    from node.overlaps import overlap_report, parse_since
    from node.store import now_ms

    with open_node(data) as node:
        since_ms = parse_since(since, now=now_ms()) if since else None
        if detect:
            _detect(node)
        rows = {r.id: r for r in node.store.all_lists()}
        pairs = overlap_report(
            node.store,
            rows=rows,
            may_see=lambda _row: True,
            list_name=list_name,
            since_ms=since_ms,
            per_pair=max(0, per_pair),
        )
    if as_json:
        doc = {"pairs": [p.to_json() for p in pairs], "total": sum(p.count for p in pairs)}
        out.print_json(json.dumps(doc))
        return
    if not pairs:
        out.print("no overlaps")
        return
    table = Table("list", "other list", "overlaps", "newest")
    for p in pairs:
        table.add_row(p.list_a.full_name, p.list_b.full_name, str(p.count), _when(p.newest_ms))
    out.print(table)


def _detect(node: Node) -> None:
    from node.match.follower import LogFollower
    from node.match.matcher import Matcher
    from node.overlaps import OverlapDetector

    follower = LogFollower(node.store, Matcher())
    follower.load()
    detector = OverlapDetector(
        node.store,
        follower.matcher,
        lists=follower.lists,
        applied=follower.watermark,
        pdq_distance=node.settings.overlap_pdq_distance,
    )
    detector.load()
    detector.run_until_idle(timeout=3600)
