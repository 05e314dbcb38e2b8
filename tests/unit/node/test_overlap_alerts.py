"""New overlaps raise one ``overlap`` alert per list pair, naming lists, never hashes."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from sqlalchemy import select

from crypto.merkle import CompactRange
from node.match.follower import LogFollower
from node.match.matcher import Matcher
from node.overlaps import OverlapDetector
from node.overlaps.alerting import overlap_alerts
from node.store import StateRow, Store
from node.store.models import AlertEvent
from node.store.rows import ListRow


def _list(store: Store, owner: str, keys: list[tuple[str, str]]) -> ListRow:
    row = store.create_list(
        owner=owner,
        name="l" + os.urandom(3).hex(),
        label="baseline",
        kind="block",
        allow_distance=0,
        empty_range=CompactRange().to_bytes(),
    )
    now = int(time.time() * 1000)
    entries = [(i, "add", t, v, "", now) for i, (t, v) in enumerate(keys)]
    store.append(
        list_id=row.id,
        expected_size=0,
        entries=entries,
        adds=[(t, v, "", i) for i, (t, v) in enumerate(keys)],
        removes=[],
        new_state=StateRow(len(keys), CompactRange().to_bytes(), len(keys)),
    )
    return row


def _events(store: Store) -> list[dict[str, Any]]:
    table = AlertEvent.__table__  # type: ignore[attr-defined]
    with store.read() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table).order_by(table.c.id))]


def test_new_overlaps_raise_one_alert_per_pair_without_hash_values(store: Store) -> None:
    shared = [("sha256", os.urandom(32).hex()) for _ in range(3)]
    a = _list(store, "au-argos", [*shared, ("md5", os.urandom(16).hex())])
    b = _list(store, "nl-dhd", [*shared[:2], ("sha256", os.urandom(32).hex())])
    store.add_webhook(
        url="http://127.0.0.1:9/hook", events="overlap", include_hashes=False, secret="s"
    )
    follower = LogFollower(store, Matcher())
    follower.load()
    follower.check()
    detector = OverlapDetector(
        store, follower.matcher, lists=follower.lists, applied=follower.watermark
    )
    detector.load()
    detector.listeners.append(overlap_alerts(store))
    detector.run_until_idle()

    events = _events(store)
    assert [e["event_type"] for e in events] == ["overlap"]
    payload = json.loads(events[0]["payload"])
    assert sorted(payload["lists"]) == sorted([a.full_name, b.full_name])
    assert payload["count"] == 2
    assert payload["by_type"] == {"sha256": 2}
    body = events[0]["payload"]
    assert not any(v in body for _t, v in shared)
    assert len(store.deliveries()) == 1
