"""What a principal may learn of overlaps: pairs of lists it may see both of, newest first."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crypto.errors import InputError, UnknownListError
from node.store import ListRow, OverlapRow, Store

# Overlaps listed per pair (the count is always the whole pair's).
DEFAULT_PER_PAIR = 100


@dataclass(frozen=True)
class PairReport:
    list_a: ListRow
    list_b: ListRow
    count: int
    newest_ms: int
    overlaps: list[OverlapRow] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "list_a": self.list_a.full_name,
            "list_b": self.list_b.full_name,
            "count": self.count,
            "newest_ms": self.newest_ms,
            "overlaps": [
                {
                    "seq_a": o.seq_a,
                    "seq_b": o.seq_b,
                    "hash_type": o.hash_type,
                    "distance": o.distance,
                    "found_ms": o.found_ms,
                }
                for o in self.overlaps
            ],
        }


def overlap_report(
    store: Store,
    *,
    rows: Mapping[int, ListRow],
    may_see: Callable[[ListRow], bool],
    list_name: str | None = None,
    since_ms: int | None = None,
    per_pair: int = DEFAULT_PER_PAIR,
) -> list[PairReport]:
    """Overlaps between lists the caller may see both of, by pair, newest pair first.

    A list the caller may not see is the same as an unknown one: an
    InputError ``unknown list`` either way, so the answer tells nothing.
    """
    visible = {lid: r for lid, r in rows.items() if may_see(r)}
    ids: list[int] | None = None
    if list_name is not None:
        ids = [lid for lid, r in visible.items() if r.full_name == list_name]
        if not ids:
            raise UnknownListError(list_name=list_name[:200])
    out = []
    for pair in store.overlap_pairs(list_ids=ids, since_ms=since_ms):
        a, b = visible.get(pair.list_a), visible.get(pair.list_b)
        if a is None or b is None:
            continue
        found = store.overlaps_of_pair(
            list_a=pair.list_a, list_b=pair.list_b, since_ms=since_ms, limit=per_pair
        )
        out.append(PairReport(a, b, pair.count, pair.newest_ms, found))
    return out


_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_since(text: str, *, now: int) -> int:
    """``--since``: a duration back from ``now`` (``30m``, ``24h``, ``7d``) or an ISO 8601 time.

    Returns Unix milliseconds. Raises InputError naming ``since``.
    """
    t = text.strip()
    if len(t) >= 2 and t[:-1].isdigit() and t[-1] in _UNITS:
        return now - int(t[:-1]) * _UNITS[t[-1]]
    try:
        when = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"expected a duration (30m, 24h, 7d) or an ISO 8601 time, got {t[:40]!r}",
            where="since",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)
