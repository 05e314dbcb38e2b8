"""Per list, the history of every key it removed: which STIX object generation an entry is.

STIX revocation is permanent, so a hash added again after a remove is a new
object (node/feeds/stix.py); this index says, for one entry, its generation,
the add it revokes and whether a later remove supersedes it.
"""

from __future__ import annotations

import threading

from node.store import Store

__all__ = ["RemovalIndex"]


class RemovalIndex:
    """Per list: every entry of every key the list ever removed, up to ``covered``.

    It answers, for one entry, which object generation it belongs to, the
    add it revokes (for ``created``), and whether a later remove supersedes
    it. A list that never removed anything (live count equals size, the
    common case) costs nothing; otherwise each key removed is looked up in
    the log's key index (list_id, hash_type, value), never by a scan.
    """

    def __init__(self, list_id: int) -> None:
        self.list_id = list_id
        self.covered = 0
        self.events: dict[tuple[str, str], list[tuple[int, str, int]]] = {}
        self._lock = threading.Lock()

    def extend(self, store: Store, upto: int) -> None:
        with self._lock:
            if upto <= self.covered:
                return
            state = store.get_state(list_id=self.list_id)
            if state.live_count == state.size:  # adds only, ever: nothing to index
                self.covered = max(self.covered, min(upto, state.size))
                return
            # Keys first removed in the new range: all their entries, from the
            # key index. Keys already followed (a re-add after a remove): only
            # their new entries, by whichever reads fewer rows.
            fresh = store.removed_keys(list_id=self.list_id, start=self.covered, end=upto)
            fresh -= set(self.events)
            if fresh:
                self.events.update(
                    store.entries_of_keys(list_id=self.list_id, keys=fresh, end=upto)
                )
            followed = [k for k in self.events if k not in fresh]
            if followed and upto - self.covered <= len(followed):
                for seq, op, t, v, _c, ts in store.iter_entries(
                    list_id=self.list_id, start=self.covered, end=upto
                ):
                    if (t, v) in self.events and (t, v) not in fresh:
                        self.events[(t, v)].append((seq, op, ts))
            elif followed:
                newer = store.entries_of_keys(
                    list_id=self.list_id, keys=followed, start=self.covered, end=upto
                )
                for key, events in newer.items():
                    self.events[key].extend(events)
            self.covered = upto

    def describe(
        self, seq: int, op: str, key: tuple[str, str], ts_ms: int, visible: int
    ) -> tuple[int, int, int, bool]:
        """``(generation, created_us, modified_us, is_last_version)`` of one entry."""
        ev = self.events.get(key)
        if not ev:
            return 0, ts_ms * 1000, ts_ms * 1000, True
        gen = sum(1 for s, o, _ in ev if o == "remove" and s < seq)
        if op == "add":
            later = any(o == "remove" and seq < s < visible for s, o, _ in ev)
            return gen, ts_ms * 1000, ts_ms * 1000, not later
        adds = [t for s, o, t in ev if o == "add" and s < seq]
        created = (adds[-1] if adds else ts_ms) * 1000
        return gen, created, max(ts_ms * 1000, created + 1), True
