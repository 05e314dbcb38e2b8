"""What an owner learns from sightings, and removing the entries reporters call false."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from crypto.errors import InputError
from node.log import writer
from node.log.lists import AppendResult
from node.node import Node


def sighting_stats(node: Node, full_name: str | None = None) -> dict[str, Any]:
    """Per list and per entry: sightings by disposition and by reporter (our lists only)."""
    name = None
    if full_name is not None:
        row = node.get_list(full_name)
        if row.owner != node.node_id:
            raise InputError(f"{full_name} is not owned by this node", where="list")
        name = row.name
    lists: dict[str, dict[str, Any]] = {}
    for r in node.store.sighting_counts(owner=node.node_id, name=name):
        full = f"{node.node_id}/{r['name']}"
        lst = lists.setdefault(
            full, {"list": full, "total": 0, "by_disposition": defaultdict(int), "entries": {}}
        )
        lst["total"] += r["count"]
        lst["by_disposition"][r["disposition"]] += r["count"]
        entry = lst["entries"].setdefault(
            r["seq"],
            {"seq": r["seq"], "total": 0, "by_disposition": defaultdict(int), "reporters": {}},
        )
        entry["total"] += r["count"]
        entry["by_disposition"][r["disposition"]] += r["count"]
        entry["reporters"][r["reporter"]] = entry["reporters"].get(r["reporter"], 0) + r["count"]
        entry["last_seen_s"] = max(entry.get("last_seen_s", 0), r["last_seen_s"])
    out = []
    for lst in lists.values():
        entries = sorted(lst["entries"].values(), key=lambda e: (-e["total"], e["seq"]))
        for e in entries:
            e["by_disposition"] = dict(e["by_disposition"])
        reporters = sorted({rep for e in entries for rep in e["reporters"]})
        out.append(
            {
                "list": lst["list"],
                "total": lst["total"],
                "by_disposition": dict(lst["by_disposition"]),
                "reporters": reporters,
                "entries": entries,
            }
        )
    return {"lists": out}


def flagged_entries(node: Node, full_name: str) -> list[dict[str, Any]]:
    """Entries still in the list that enough distinct reporters called false_positive."""
    row = node.get_list(full_name)
    if row.owner != node.node_id or not row.local:
        raise InputError(f"{full_name} is not owned by this node", where="list")
    threshold = node.settings.sightings.false_positive_threshold
    counted = node.store.false_positive_entries(owner=row.owner, name=row.name, threshold=threshold)
    keys = node.store.entry_keys(list_id=row.id, seqs=[seq for seq, _ in counted])
    adds = {seq: (t, v) for seq, (op, t, v) in keys.items() if op == "add"}
    present = node.store.content_of(list_id=row.id, keys=adds.values())
    out = []
    for seq, reporters in counted:
        key = adds.get(seq)
        live = key is not None and key in present and present[key][1] == seq
        out.append(
            {
                "seq": seq,
                "false_positive_reporters": reporters,
                "in_list": live,
                "category": present[key][0] if live and key else None,
            }
        )
    return out


def remove_flagged(node: Node, full_name: str, *, actor: str) -> AppendResult | None:
    """Remove every flagged entry still in the list, in one append; None if there is none."""
    row = node.get_list(full_name)
    flagged = [f["seq"] for f in flagged_entries(node, full_name) if f["in_list"]]
    if not flagged:
        return None
    keys = node.store.entry_keys(list_id=row.id, seqs=flagged)
    items = [(t, v) for seq in flagged for (_op, t, v) in [keys[seq]]]
    result = writer.remove_hashes(
        node.store, node_id=node.node_id, row=row, items=items, actor=actor
    )
    node.emit(result.committed)
    return result
