"""Answering "is this hash known?" from in-memory indexes.

One index per hash type (node/index). Each stored code carries an int64
``ref`` packing the list id and an interned category, so a hit names its
list and category without touching the database. Indexes start from the
``content`` table and then follow the log of every list, whoever committed
to it (:mod:`node.match.follower` calls :meth:`apply`), so a hash is
matchable, or stops matching, within a second of the commit in any process.

Label filtering happens after the search, over every list alike, so the
work done does not depend on what the caller may see.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from node.local.matcher import Hit as ScanHit
from node.local.matcher import Query as ScanQuery
from node.log.hashes import REGISTRY, HashType
from node.log.kinds import ALLOW_KIND
from node.log.lists import ContentChange
from node.match.index import ExactIndex, PdqIndex
from node.match.index.mapped import MappedPdqIndex
from node.match.index.segment import Segment
from node.store import Store

_CATEGORY_BITS = 20  # ~1M distinct categories; list ids take the upper 43 bits
_CATEGORY_MASK = (1 << _CATEGORY_BITS) - 1


AnyIndex = ExactIndex | PdqIndex | MappedPdqIndex


@dataclass
class _State:
    """Indexes and the category table their refs use: replaced together, never apart."""

    indexes: dict[str, AnyIndex]
    categories: dict[str, int]
    names: list[str]


@dataclass(frozen=True)
class Query:
    """One parsed query: canonical value, and for PDQ its optional quality."""

    hash_type: str
    value: str
    quality: int | None = None


@dataclass(frozen=True)
class Hit:
    query_index: int
    list_id: int
    category: str
    hash_type: str
    distance: int
    # A near hit's stored code (canonical hex); an exact hit's is the query's own.
    stored: str | None = None


class Matcher:
    """All indexes of one node, kept current by :meth:`apply`."""

    def __init__(self, *, pdq_min_quality: int = 50) -> None:
        self.pdq_min_quality = pdq_min_quality
        self._state = _State(_empty_indexes(), {}, [])
        self._lock = threading.Lock()  # guards category interning and apply figures
        self.loaded = False
        # Allow-lists (list id -> PDQ distance within which a code is on it):
        # a query that hits one gets no hits at all. Replaced whole, never changed.
        self.allow: dict[int, int] = {}
        # Commit-to-matchable: how long applying committed changes took.
        self._applied = {"calls": 0, "changes": 0, "last_us": 0, "max_us": 0}

    @property
    def _indexes(self) -> dict[str, AnyIndex]:
        return self._state.indexes

    @property
    def _categories(self) -> dict[str, int]:
        return self._state.categories

    @property
    def _category_names(self) -> list[str]:
        return self._state.names

    # --- refs --------------------------------------------------------------------------

    def _category_id(self, category: str) -> int:
        state = self._state
        cid = state.categories.get(category)
        if cid is None:
            with self._lock:
                cid = state.categories.get(category)
                if cid is None:
                    cid = len(state.names)
                    state.names.append(category)
                    state.categories[category] = cid
        return cid

    def _ref(self, list_id: int, category: str) -> int:
        return (list_id << _CATEGORY_BITS) | self._category_id(category)

    def _unref(self, ref: int, names: list[str] | None = None) -> tuple[int, str]:
        names = self._category_names if names is None else names
        return ref >> _CATEGORY_BITS, names[ref & ((1 << _CATEGORY_BITS) - 1)]

    # --- loading and following changes ------------------------------------------------------

    def load(self, store: Store) -> int:
        """Build the indexes from the database's current content; returns the count.

        Pages are decoded a type at a time (one ``bytes.fromhex`` per page)
        and each index is built once from the whole arrays: at 10M hashes
        this is what bounds a node's start-up.
        """
        keys: dict[str, list[NDArray[np.uint8]]] = {}
        refs: dict[str, list[NDArray[np.int64]]] = {}
        total = 0
        # Built aside and swapped in whole, so a rebuild of a running matcher
        # never answers from a half-loaded index.
        indexes = _empty_indexes()
        # A fresh category table: the old one stays with the old indexes.
        old = self._state
        self._state = state = _State(old.indexes, dict(old.categories), list(old.names))
        for page in store.iter_content():
            start = 0
            while start < len(page):
                # Pages are ordered by (list, type, value): take one (list, type) run.
                list_id, htype_name = page[start][0], page[start][1]
                end = start
                while end < len(page) and page[end][0] == list_id and page[end][1] == htype_name:
                    end += 1
                run = page[start:end]
                htype = REGISTRY[htype_name]
                if htype.hex_bytes is not None:
                    raw = bytes.fromhex("".join(r[2] for r in run))
                else:
                    raw = b"".join(htype.key(r[2]) for r in run)
                keys.setdefault(htype_name, []).append(
                    np.frombuffer(raw, dtype=np.uint8).reshape(len(run), htype.key_width)
                )
                refs.setdefault(htype_name, []).append(
                    np.fromiter((self._ref(list_id, r[3]) for r in run), np.int64, len(run))
                )
                total += len(run)
                start = end
        for htype_name, parts in keys.items():
            codes, ref = np.concatenate(parts), np.concatenate(refs[htype_name])
            if REGISTRY[htype_name].match == "hamming":
                indexes[htype_name] = PdqIndex.from_arrays(codes, ref)
            else:
                indexes[htype_name] = ExactIndex.from_arrays(
                    REGISTRY[htype_name].key_width, codes, ref
                )
        state.indexes = indexes
        self.loaded = True
        return total

    # --- segments ---------------------------------------------------------------------

    def segment_parts(self) -> tuple[list[str], dict[str, tuple[dict[str, Any], dict[str, Any]]]]:
        """Category names and every index's segment ``(params, arrays)``.

        The caller holds whatever keeps the indexes still (the follower's
        lock) while this runs if it pairs them with watermarks.
        """
        state = self._state
        names = list(state.names)
        return names, {name: ix.segment_arrays() for name, ix in state.indexes.items()}

    def take_state(self, other: Matcher) -> None:
        """Answer from ``other``'s indexes and categories from now on (one assignment)."""
        self._state = other._state
        self.loaded = True

    def frozen(self) -> Matcher:
        """A matcher over the indexes as they are now, unchanged by later applies.

        Index snapshots are immutable; the copies hold the current ones.
        """
        state = self._state
        out = Matcher(pdq_min_quality=self.pdq_min_quality)
        names = list(state.names)
        out._state = _State(
            {k: _frozen_index(ix) for k, ix in state.indexes.items()},
            {c: i for i, c in enumerate(names)},
            names,
        )
        return out

    def adopt_segment(self, segment: Segment) -> None:
        """Replace every index and the category table with ``segment``'s, at once.

        Raises:
            ValueError: the segment's arrays do not fit its index types.
        """
        indexes = _empty_indexes()
        for name, spec in segment.indexes.items():
            htype = REGISTRY.get(name)
            if htype is None:
                raise ValueError(f"segment holds an unknown hash type {name!r}")
            arrays = spec["arrays"]
            if htype.match == "hamming":
                if spec.get("kind") != "pdq":
                    raise ValueError(f"segment index {name!r} is not a PDQ index")
                indexes[name] = MappedPdqIndex(PdqIndex.from_segment(spec, arrays))
            else:
                if spec.get("kind") != "exact" or int(spec["width"]) != htype.key_width:
                    raise ValueError(f"segment index {name!r} does not fit {name} keys")
                indexes[name] = ExactIndex.from_segment(spec, arrays)
        names = list(segment.categories)
        self._state = _State(indexes, {c: i for i, c in enumerate(names)}, names)
        self.loaded = True

    def _arrays(
        self, htype: HashType, rows: Sequence[tuple[str, int]]
    ) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
        keys = b"".join(htype.key(v) for v, _ in rows)
        codes = np.frombuffer(keys, dtype=np.uint8).reshape(len(rows), htype.key_width)
        refs = np.fromiter((r for _, r in rows), dtype=np.int64, count=len(rows))
        return codes, refs

    def apply(self, changes: Iterable[ContentChange]) -> None:
        """Apply committed content changes to the indexes, in order.

        Consecutive changes with the same op go to the index as one batch;
        order between adds and removes is kept, so add-remove-add ends added.
        """
        started = time.perf_counter()
        count = 0
        run_op: str | None = None
        run: dict[str, list[tuple[str, int]]] = {}
        for ch in changes:
            if ch.op != run_op:
                self._flush(run_op, run)
                run_op, run = ch.op, {}
            run.setdefault(ch.hash_type, []).append((ch.value, self._ref(ch.list_id, ch.category)))
            count += 1
        self._flush(run_op, run)
        took = int(1e6 * (time.perf_counter() - started))
        with self._lock:
            a = self._applied
            a["calls"] += 1
            a["changes"] += count
            a["last_us"] = took
            a["max_us"] = max(a["max_us"], took)

    def apply_stats(self) -> dict[str, int]:
        """Calls of :meth:`apply` so far, changes applied, and the last and longest in µs.

        A change matches (or stops matching) at the latest this long after
        the commit that made it.
        """
        with self._lock:
            return dict(self._applied)

    def _flush(self, op: str | None, run: dict[str, list[tuple[str, int]]]) -> None:
        for htype, rows in run.items():
            codes, refs = self._arrays(REGISTRY[htype], rows)
            if op == "add":
                self._indexes[htype].add(codes, refs)
            else:
                self._indexes[htype].remove(codes, refs)

    def categories_of(self, list_id: int, hash_type: str, values: Sequence[str]) -> list[list[str]]:
        """For each value, the categories under which ``list_id`` holds it in the index.

        One category when the list holds the value, none when it does not;
        the follower reads the index's own state through this.
        """
        out: list[list[str]] = [[] for _ in values]
        if not values:
            return out
        htype = REGISTRY[hash_type]
        codes = np.frombuffer(b"".join(htype.key(v) for v in values), dtype=np.uint8).reshape(
            len(values), htype.key_width
        )
        state = self._state
        index = state.indexes[hash_type]
        if isinstance(index, ExactIndex):
            qpos, refs = index.lookup(codes)
        else:
            qpos, refs, _d = index.search(codes, 0)
        mask = _CATEGORY_MASK
        for qp, ref in zip(qpos.tolist(), refs.tolist(), strict=True):
            if ref >> _CATEGORY_BITS == list_id:
                out[qp].append(state.names[ref & mask])
        return out

    def drop_list(self, list_id: int, rows: Sequence[tuple[str, str, str]]) -> None:
        """Remove a list's ``(type, value, category)`` rows, e.g. when it is frozen."""
        self.apply(ContentChange("remove", list_id, t, v, c) for t, v, c in rows)

    # --- queries ------------------------------------------------------------------------------

    def match(self, queries: Sequence[Query], *, max_distance: int = 31) -> list[Hit]:
        """Every hit of every query, in no particular order."""
        allow = self.allow
        # Near enough to an allow-list is looked for even beyond the caller's distance.
        search_distance = max([max_distance, *allow.values()])
        hits: list[Hit] = []
        by_type: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            by_type.setdefault(q.hash_type, []).append(i)
        state = self._state  # one state for the whole query
        for htype_name, idxs in by_type.items():
            htype = REGISTRY[htype_name]
            codes = np.frombuffer(
                b"".join(htype.key(queries[i].value) for i in idxs), dtype=np.uint8
            ).reshape(len(idxs), htype.key_width)
            index = state.indexes[htype_name]
            if not isinstance(index, ExactIndex):
                hits.extend(
                    self._match_pdq(index, state.names, queries, idxs, codes, search_distance)
                )
                continue
            qpos, refs = index.lookup(codes)
            for qp, ref in zip(qpos.tolist(), refs.tolist(), strict=True):
                list_id, category = self._unref(ref, state.names)
                hits.append(Hit(idxs[qp], list_id, category, htype_name, 0))
        if not allow:
            return hits
        allowed = {h.query_index for h in hits if h.distance <= allow.get(h.list_id, -1)}
        return [
            h
            for h in hits
            if h.query_index not in allowed
            and h.list_id not in allow
            and h.distance <= max_distance
        ]

    def search_keys(
        self, hash_type: str, keys: NDArray[np.uint8], max_distance: int = 0
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int32], NDArray[np.uint8] | None]:
        """``(query_index, list_id, distance, stored PDQ codes or None)`` of every hit of ``keys``.

        The raw index answer, for overlap detection: no quality floor, no
        allow-lists, no categories.
        """
        index = self._indexes[hash_type]
        if not isinstance(index, ExactIndex):
            qpos, refs, dists, stored = index.search_codes(keys, max_distance)
            return qpos, refs >> _CATEGORY_BITS, dists, stored
        qpos, refs = index.lookup(keys)
        return qpos, refs >> _CATEGORY_BITS, np.zeros(len(qpos), np.int32), None

    def _match_pdq(
        self,
        index: PdqIndex | MappedPdqIndex,
        names: list[str],
        queries: Sequence[Query],
        idxs: list[int],
        codes: NDArray[np.uint8],
        max_distance: int,
    ) -> list[Hit]:
        # Low-quality PDQ hashes are too unstable for near matching (the PDQ
        # README recommends discarding quality < 50): they match exactly only.
        floor = self.pdq_min_quality
        low = [(q := queries[i].quality) is not None and q < floor for i in idxs]
        qpos, refs, dists, stored = index.search_codes(codes, max_distance)
        out = []
        for k, (qp, ref, d) in enumerate(
            zip(qpos.tolist(), refs.tolist(), dists.tolist(), strict=True)
        ):
            if d and low[qp]:
                continue
            list_id, category = self._unref(ref, names)
            code = stored[k].tobytes().hex() if d else None
            out.append(Hit(idxs[qp], list_id, category, "pdq", int(d), code))
        return out

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            name: {"codes": len(ix), "memory_bytes": ix.memory_bytes()}
            for name, ix in self._indexes.items()
        }

    def merge(self) -> None:
        """Fold every index's delta into its main arrays (background thread)."""
        for ix in self._indexes.values():
            ix.merge()


def _frozen_index(ix: AnyIndex) -> AnyIndex:
    if isinstance(ix, MappedPdqIndex):
        out = MappedPdqIndex(copy.copy(ix.base))
        out.delta = copy.copy(ix.delta)
        return out
    return copy.copy(ix)


def _empty_indexes() -> dict[str, AnyIndex]:
    return {
        t.name: PdqIndex() if t.match == "hamming" else ExactIndex(t.key_width)
        for t in REGISTRY.values()
    }


class LocalScanMatcher:
    """:class:`node.local.matcher.Matcher` over this node's own lists, for ``hashfed scan``.

    The operator of the node runs it on the node's machine, so every list is
    visible, as for the node's own administrator over the API.
    """

    description = "this node's lists (local)"

    def __init__(self, store: Store, *, pdq_min_quality: int = 50) -> None:
        self._matcher = Matcher(pdq_min_quality=pdq_min_quality)
        self._matcher.load(store)
        self._rows = {r.id: r for r in store.all_lists()}
        self._matcher.allow = {
            r.id: r.allow_distance for r in self._rows.values() if r.kind == ALLOW_KIND
        }

    def match(self, queries: Sequence[ScanQuery], *, max_distance: int) -> list[list[ScanHit]]:
        hits = self._matcher.match(
            [Query(q.type, q.value) for q in queries], max_distance=max_distance
        )
        out: list[list[ScanHit]] = [[] for _ in queries]
        for h in hits:
            row = self._rows[h.list_id]
            out[h.query_index].append(
                ScanHit(row.full_name, row.owner, h.category, h.hash_type, h.distance)
            )
        return out
