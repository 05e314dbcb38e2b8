"""A real list log with random sha256 and PDQ hashes, and the brute-force answers.

Shared by the segment tests and the crash subprocess they start.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np

from crypto.merkle import CompactRange
from node.match.matcher import Matcher, Query
from node.store import StateRow, Store

CATS = ("A1", "B2", "C3")


class Writer:
    """Commits to one list the way the writer does (entries, content, state)."""

    def __init__(self, store: Store, name: str, seed: int) -> None:
        self.store = store
        self.rng = np.random.default_rng(seed)
        existing = {r.name: r for r in store.all_lists()}
        self.row = existing.get(name) or store.create_list(
            owner="au-argos", name=name, label="baseline", empty_range=CompactRange().to_bytes()
        )
        self.content: dict[tuple[str, str], str] = {}
        self.size = 0
        for _s, op, t, v, c in self._log():
            if op == "add":
                self.content.setdefault((t, v), c)
            else:
                self.content.pop((t, v), None)
            self.size += 1

    def _log(self) -> list[tuple[int, str, str, str, str]]:
        out: list[tuple[int, str, str, str, str]] = []
        for page in self.store.iter_entry_pages(list_id=self.row.id, start=0, end=None, page=65536):
            out += [(e[0], e[1], e[2], e[3], e[4]) for e in page]
        return out

    def add_random(self, n: int) -> None:
        ops = []
        for i in range(n):
            htype = "pdq" if i % 2 else "sha256"
            value = self.rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex()
            ops.append(("add", htype, value, CATS[i % 3]))
        self.commit(ops)

    def remove_some(self, n: int) -> None:
        keys = sorted(self.content)[:n]
        self.commit([("remove", t, v, "") for t, v in keys])

    def commit(self, ops: Sequence[tuple[str, str, str, str]]) -> None:
        start = self.size
        now = int(time.time() * 1000)
        entries = [(start + i, op, t, v, c, now) for i, (op, t, v, c) in enumerate(ops)]
        after = dict(self.content)
        for _s, op, t, v, c, _ts in entries:
            if op == "add":
                after.setdefault((t, v), c)
            else:
                after.pop((t, v), None)
        adds = [(t, v, c, 0) for (t, v), c in after.items() if (t, v) not in self.content]
        removes = [k for k in self.content if k not in after]
        self.store.append(
            list_id=self.row.id,
            expected_size=start,
            entries=entries,
            adds=adds,
            removes=removes,
            new_state=StateRow(start + len(entries), CompactRange().to_bytes(), len(after)),
        )
        self.content = after
        self.size += len(entries)


def queries(writers: Sequence[Writer], seed: int = 7) -> list[Query]:
    """Stored values (exact), near PDQ codes (a few bits flipped), and misses."""
    rng = np.random.default_rng(seed)
    out: list[Query] = []
    for w in writers:
        for t, v in sorted(w.content)[:40]:
            if t == "pdq":
                code = bytearray(bytes.fromhex(v))
                for bit in rng.choice(256, int(rng.integers(1, 20)), replace=False):
                    code[bit // 8] ^= 1 << (bit % 8)
                out.append(Query("pdq", code.hex()))
            out.append(Query(t, v))
    for i in range(20):
        out.append(Query("pdq" if i % 2 else "sha256", os.urandom(32).hex()))
    return out


def brute_force(writers: Sequence[Writer], qs: Sequence[Query], radius: int = 31) -> set[tuple]:
    """Every (query index, list id, category, distance) a correct matcher answers."""
    out: set[tuple] = set()
    for w in writers:
        pdq = [(v, c) for (t, v), c in w.content.items() if t == "pdq"]
        codes = np.frombuffer(b"".join(bytes.fromhex(v) for v, _ in pdq), np.uint8).reshape(-1, 32)
        for i, q in enumerate(qs):
            if q.hash_type == "pdq":
                if not len(pdq):
                    continue
                qc = np.frombuffer(bytes.fromhex(q.value), np.uint8)
                dist = np.unpackbits(codes ^ qc, axis=1).sum(axis=1)
                for k in np.flatnonzero(dist <= radius):
                    out.add((i, w.row.id, pdq[k][1], int(dist[k])))
            elif (q.hash_type, q.value) in w.content:
                out.add((i, w.row.id, w.content[(q.hash_type, q.value)], 0))
    return out


def answers(matcher: Matcher, qs: Sequence[Query], radius: int = 31) -> set[tuple]:
    return {
        (h.query_index, h.list_id, h.category, h.distance)
        for h in matcher.match(list(qs), max_distance=radius)
    }
