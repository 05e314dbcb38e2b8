"""New overlaps as alerts: one ``overlap`` event per pair of lists in a batch."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from node.alerts.events import emit
from node.overlaps.detector import OverlapListener
from node.store import Store
from node.store.overlaps import OverlapRow
from node.store.rows import ListRow

__all__ = ["overlap_alerts"]


def overlap_alerts(store: Store) -> OverlapListener:
    """A detector listener that raises one alert per list pair with new overlaps.

    The payload names the two lists and counts by hash type; never a hash
    value or an entry's seq (a receiver asks the node, which applies the
    visibility rule).
    """

    def listener(new: Sequence[OverlapRow], rows: Mapping[int, ListRow]) -> None:
        pairs: dict[tuple[int, int], Counter[str]] = {}
        for o in new:
            pairs.setdefault((o.list_a, o.list_b), Counter())[o.hash_type] += 1
        for (a, b), by_type in pairs.items():
            if a not in rows or b not in rows:
                continue  # a list dropped meanwhile: nothing to name
            emit(
                store,
                "overlap",
                {
                    "lists": [rows[a].full_name, rows[b].full_name],
                    "count": sum(by_type.values()),
                    "by_type": dict(sorted(by_type.items())),
                },
            )

    return listener
