"""Feeds as STIX 2.1 indicators, in the order TAXII 2.1 clients page through them.

**Objects.** Every log entry is one version of one STIX indicator: an add is
a new indicator, a remove is the same indicator again with ``revoked: true``
and a later ``modified``. Ids are UUIDv5 under hashfed's namespace of
``list | type | value``, so every node serving a list gives the same id to
the same hash. STIX revocation is permanent, so a hash added again after a
remove is a new object: its name gets ``| <n>`` appended, ``n`` being the
number of removes before it. ``created`` (equal across versions) and
``valid_from`` are the add's timestamp; ``modified`` is the entry's own
timestamp, bumped by 1 µs past the add if a remove shares its millisecond.
PDQ, which STIX's hash vocabulary lacks, is the custom hash name ``x_pdq``
(``x_<type>`` for any other type outside MD5, SHA-1, SHA-256), as STIX 2.1
§2.7 suggests for custom hashes.

**date_added.** TAXII clients page with ``added_after`` and must never miss
or loop, so each object of a collection (a label) needs a *distinct*
date_added, and anything that becomes visible later needs a *later* one.
Entry timestamps cannot give that: a list relayed to us today may carry
entries its owner wrote last year, and two lists interleave. The feed is
therefore ordered by when entries became visible *here*: an entry is
served once an accepted checkpoint covers it, and accepted checkpoints have
increasing ids. Each checkpoint that grows a list of the label adds a
*segment* (that list's entries from the previous covered size to the new
one); a segment's first entry gets ``max(received time of the checkpoint,
end of the previous segment)`` in microseconds, and each next entry 1 µs
more. So date_added is strictly increasing along the label's order, close to
the real time of arrival, and only in bursts (a 1M-entry import spans 1 s)
runs ahead of it. It is a pure function of the checkpoint table, identical on
every API worker and after restarts.

Two conditions keep it append-only, which is what makes ``added_after``
safe: checkpoints commit in id order (SQLite serialises writers; on
PostgreSQL, whose sequence ids can commit out of order, checkpoints younger
than ``settle_ms`` are not served yet), and a label's lists keep their label
(relabelling a list re-bases both labels' timelines: clients of those
collections should re-pull from the start). Frozen lists stay in the
timeline but are not served, so freezing one list shifts no other object.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from node.feeds.cursor import seal, unseal
from node.feeds.errors import BadRequestError, CursorError
from node.feeds.stix_objects import (
    EXTENSION_ID,
    NAMESPACE,
    IndicatorParts,
    collection_id,
    extension_definition,
    format_date_added,
    format_stix_time,
    identity_object,
    indicator_id,
    indicator_json,
    stix_pattern,
    tlp_for_label,
    tlp_marking,
)
from node.feeds.stix_removals import RemovalIndex
from node.store import ListRow, Store, now_ms

__all__ = [
    "EXTENSION_ID",
    "NAMESPACE",
    "STIX_MEDIA_TYPE",
    "Page",
    "RemovalIndex",
    "Segment",
    "Taxii",
    "Timeline",
    "VersionFilter",
    "collection_id",
    "format_date_added",
    "indicator_id",
    "parse_timestamp",
    "stix_pattern",
]

STIX_MEDIA_TYPE = "application/stix+json;version=2.1"
# On PostgreSQL a checkpoint is served only once it is this old (module docstring).
POSTGRES_SETTLE_MS = 5_000
# Entries examined per request when filters skip most of them (match[id], an
# exact version, revoked adds under version=last): bounds a request's work;
# the client continues with ``next``.
MAX_SCAN = 100_000
_NEXT_DOMAIN = b"hashfed taxii next v1"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# --- timestamps -------------------------------------------------------------------------------


def parse_timestamp(text: str, *, where: str) -> int:
    """An RFC 3339 timestamp in microseconds since the epoch (finer digits are cut).

    Raises:
        BadRequestError: not such a timestamp.
    """
    s = text.strip()
    try:
        if len(s) > 40:
            raise ValueError
        head, frac, tail = s, "", ""
        if "." in s:
            head, rest = s.split(".", 1)
            i = 0
            while i < len(rest) and rest[i].isdigit():
                i += 1
            frac, tail = rest[:i], rest[i:]
            if not frac:
                raise ValueError
        else:
            head, tail = s[:19], s[19:]
        tail = "+00:00" if tail in ("Z", "z") else tail
        t = dt.datetime.fromisoformat(head + tail)
        if t.tzinfo is None:
            raise ValueError
    except ValueError:
        raise BadRequestError(
            "expected an RFC 3339 timestamp, e.g. 2024-01-01T00:00:00.000000Z", where=where
        ) from None
    delta = t - _EPOCH
    whole = (delta.days * 86_400 + delta.seconds) * 1_000_000
    return whole + int((frac + "000000")[:6])


# --- the label's timeline -----------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """Entries ``[start, end)`` of a list made visible by one checkpoint, from ``first_us`` on."""

    list_id: int
    start: int
    end: int
    first_us: int
    checkpoint_size: int
    checkpoint_root: bytes
    # Objects served just before the entries, 1 µs apart: what the indicators
    # refer to (``identity:<owner>``, ``extension``, ``tlp:<level>``).
    lead: tuple[str, ...] = ()

    @property
    def last_us(self) -> int:
        return self.first_us + (self.end - self.start) - 1

    @property
    def lead_us(self) -> int:
        return self.first_us - len(self.lead)


@dataclass
class _Chain:
    segments: list[Segment] = field(default_factory=list)
    lasts: list[int] = field(default_factory=list)
    next_us: int = 0
    owners: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Timeline:
    """A snapshot of one label's segments, oldest first; date_added strictly increasing."""

    segments: Sequence[Segment]
    lasts: Sequence[int]
    covered: dict[int, int]  # list id -> entries visible

    def first_after(self, after_us: int) -> int:
        """Index of the first segment holding an entry dated after ``after_us``."""
        return bisect.bisect_right(self.lasts, after_us)

    def has_after(self, after_us: int, served: set[int]) -> bool:
        """Whether a served entry, or a lead object, is dated after ``after_us``."""
        return any(
            seg.list_id in served or (bool(seg.lead) and seg.first_us - 1 > after_us)
            for seg in self.segments[self.first_after(after_us) :]
        )

    def last_us(self, served: set[int]) -> int | None:
        for seg in reversed(self.segments):
            if seg.list_id in served:
                return seg.last_us
        return None


class Timelines:
    """Builds every label's timeline from the checkpoint table, incrementally."""

    def __init__(self, store: Store, *, node_id: str = "", settle_ms: int | None = None) -> None:
        self.store = store
        self.node_id = node_id
        self.settle_ms = (
            (0 if store.is_sqlite else POSTGRES_SETTLE_MS) if settle_ms is None else settle_ms
        )
        self._lock = threading.Lock()
        self._reset({})

    def _reset(self, labels: dict[int, str]) -> None:
        self._labels = labels
        self._after_id = 0
        self._covered: dict[int, int] = {}
        self._chains: dict[str, _Chain] = {}

    def get(self, label: str) -> Timeline:
        with self._lock:
            self._refresh()
            chain = self._chains.get(label, _Chain())
            n = len(chain.segments)
            ids = {i for i, lab in self._labels.items() if lab == label}
            return Timeline(
                chain.segments[:n],
                chain.lasts[:n],
                {i: s for i, s in self._covered.items() if i in ids},
            )

    def _refresh(self) -> None:
        rows = self.store.all_lists()
        labels = {r.id: r.label for r in rows}
        owners = {r.id: r.owner for r in rows}
        if any(self._labels.get(i, lab) != lab for i, lab in labels.items()):
            self._reset(labels)  # a list changed label: rebuild (module docstring)
        self._labels = labels
        cut = now_ms() - self.settle_ms
        while True:
            batch = self.store.accepted_checkpoints_after(after_id=self._after_id, limit=1000)
            for cp in batch:
                if cp.received_ms > cut:
                    return  # not settled: neither it nor anything after it yet
                self._after_id = cp.id
                covered = self._covered.get(cp.list_id, 0)
                label = labels.get(cp.list_id)
                if cp.size <= covered or label is None:
                    continue
                chain = self._chains.setdefault(label, _Chain())
                lead = self._lead(chain, label, owners[cp.list_id])
                seg = Segment(
                    cp.list_id,
                    covered,
                    cp.size,
                    max(cp.received_ms * 1000, chain.next_us) + len(lead),
                    cp.size,
                    cp.root_hash,
                    lead,
                )
                chain.segments.append(seg)
                chain.lasts.append(seg.last_us)
                chain.next_us = seg.last_us + 1
                self._covered[cp.list_id] = cp.size
            if len(batch) < 1000:
                return

    def _lead(self, chain: _Chain, label: str, owner: str) -> tuple[str, ...]:
        """The objects a new segment brings first: each once per collection."""
        lead: list[str] = []
        if not chain.segments:
            chain.owners.add(self.node_id)
            lead += [f"identity:{self.node_id}", "extension", f"tlp:{tlp_for_label(label)}"]
        if owner not in chain.owners:
            chain.owners.add(owner)
            lead.append(f"identity:{owner}")
        return tuple(lead)


# --- objects and pages --------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionFilter:
    """``match[version]``: ``last`` (default), ``first``, ``all`` or exact ``modified`` values."""

    last: bool = True
    first: bool = False
    every: bool = False
    exact: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, raw: str | None) -> VersionFilter:
        if not raw:
            return cls()
        last = first = every = False
        exact: set[int] = set()
        for part in raw.split(",")[:100]:
            part = part.strip()
            if part == "last":
                last = True
            elif part == "first":
                first = True
            elif part == "all":
                every = True
            else:
                exact.add(parse_timestamp(part, where="match[version]"))
        return cls(last, first, every, frozenset(exact))

    @property
    def selective(self) -> bool:
        return not self.every and not self.last and not self.first

    def accepts(self, *, is_first: bool, is_last: bool, modified_us: int) -> bool:
        return (
            self.every
            or (self.last and is_last)
            or (self.first and is_first)
            or modified_us in self.exact
        )


class Item(NamedTuple):
    """One object version of a page, as the JSON text it is served as."""

    date_added_us: int
    id: str
    modified: str
    json: str

    @property
    def object(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.json)
        return parsed


@dataclass(frozen=True)
class Page:
    items: list[Item]
    more: bool
    next: str | None
    scanned: int = 0  # log entries read to fill it: what the caller is charged for


class Taxii:
    """Pages of a label's objects for the TAXII routes. One per app, thread-safe."""

    def __init__(
        self, store: Store, *, node_id: str, secret: bytes, settle_ms: int | None = None
    ) -> None:
        self.store = store
        self.node_id = node_id
        self.secret = secret
        self.timelines = Timelines(store, node_id=node_id, settle_ms=settle_ms)
        self._removals: dict[int, RemovalIndex] = {}
        self._lock = threading.Lock()

    def _removal(self, list_id: int, upto: int) -> RemovalIndex:
        with self._lock:
            idx = self._removals.setdefault(list_id, RemovalIndex(list_id))
        idx.extend(self.store, upto)
        return idx

    def next_token(self, label: str, position_us: int) -> str:
        return seal(self.secret, _NEXT_DOMAIN, {"n": self.node_id, "l": label, "p": position_us})

    def open_next(self, label: str, token: str) -> int:
        """The position a ``next`` token stands for.

        Raises:
            CursorError: not a token of this collection on this node.
        """
        payload = unseal(self.secret, _NEXT_DOMAIN, token, node_id=self.node_id)
        pos = payload.get("p")
        if payload.get("l") != label or type(pos) is not int or pos < 0:
            raise CursorError(reason="a next token of another collection")
        return pos

    def page(
        self,
        label: str,
        served: Sequence[ListRow],
        *,
        after_us: int,
        limit: int,
        versions: VersionFilter,
        ids: frozenset[str] | None = None,
        types: frozenset[str] | None = None,
    ) -> Page:
        """Up to ``limit`` objects dated after ``after_us``, in date_added order."""
        timeline = self.timelines.get(label)
        rows = {r.id: r for r in served if r.label == label}
        served_ids = set(rows)
        items: list[Item] = []
        scanned = 0
        pos = after_us
        i = timeline.first_after(after_us)
        while i < len(timeline.segments):
            seg = timeline.segments[i]
            i += 1
            for j, kind in enumerate(seg.lead):
                at = seg.lead_us + j
                if at <= after_us:
                    continue
                if len(items) >= limit:
                    page = self._page(label, items, timeline, pos, served_ids)
                    return dataclasses.replace(page, scanned=scanned)
                pos = at
                item = self._lead_item(at, kind, versions, ids, types)
                if item is not None:
                    items.append(item)
            if seg.list_id not in served_ids or (types is not None and "indicator" not in types):
                continue
            row = rows[seg.list_id]
            visible = timeline.covered.get(seg.list_id, seg.end)
            removals = self._removal(seg.list_id, visible)
            parts = IndicatorParts(
                row.full_name, row.owner, label, seg.checkpoint_size, seg.checkpoint_root
            )
            plain = not removals.events and versions.last
            seq = seg.start + max(0, after_us - seg.first_us + 1)
            while seq < seg.end:
                if len(items) >= limit or scanned >= MAX_SCAN:
                    page = self._page(label, items, timeline, pos, served_ids)
                    return dataclasses.replace(page, scanned=scanned)
                upto = min(seg.end, seq + max(limit - len(items), 256))
                for entry in self._entries(seg.list_id, seq, upto):
                    e_seq, op, htype, value, category, ts = entry
                    scanned += 1
                    pos = seg.first_us + (e_seq - seg.start)
                    seq = e_seq + 1
                    if plain:  # no remove ever touched this list: one version each
                        gen, created, modified = 0, ts * 1000, ts * 1000
                    else:
                        gen, created, modified, is_last = removals.describe(
                            e_seq, op, (htype, value), ts, visible
                        )
                    if not plain and not versions.accepts(
                        is_first=op == "add", is_last=is_last, modified_us=modified
                    ):
                        continue
                    oid = indicator_id(row.full_name, htype, value, gen)
                    if ids is not None and oid not in ids:
                        continue
                    text = indicator_json(
                        parts,
                        object_id=oid,
                        seq=e_seq,
                        revoked=op == "remove",
                        hash_type=htype,
                        value=value,
                        category=category,
                        created_us=created,
                        modified_us=modified,
                    )
                    items.append(Item(pos, oid, format_stix_time(modified), text))
                    if len(items) >= limit:
                        break
        return Page(items, False, None, scanned)

    def _lead_item(
        self,
        at: int,
        kind: str,
        versions: VersionFilter,
        ids: frozenset[str] | None,
        types: frozenset[str] | None,
    ) -> Item | None:
        """A segment's lead object, or None when the filters leave it out."""
        what, _, arg = kind.partition(":")
        if what == "identity":
            obj = identity_object(arg)
        elif what == "tlp":
            obj = tlp_marking(arg)
        else:
            obj = extension_definition(self.node_id)
        version = obj.get("modified", obj["created"])
        if (types is not None and obj["type"] not in types) or (
            ids is not None and obj["id"] not in ids
        ):
            return None
        micros = parse_timestamp(version, where="version")
        if not versions.accepts(is_first=True, is_last=True, modified_us=micros):
            return None
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
        return Item(at, obj["id"], version, text)

    def _entries(self, list_id: int, start: int, end: int) -> Iterator[tuple[Any, ...]]:
        return self.store.iter_entries(list_id=list_id, start=start, end=end, page=end - start)

    def _page(
        self, label: str, items: list[Item], timeline: Timeline, pos: int, served: set[int]
    ) -> Page:
        if timeline.has_after(pos, served):
            return Page(items, True, self.next_token(label, pos))
        return Page(items, False, None)
