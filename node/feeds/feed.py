"""Industry feeds: what a partner pulls per sharing label, and in which form.

A feed is every list under one label that the caller may receive and that
has a signed checkpoint. It is served only up to each list's newest accepted
checkpoint, never beyond: a partner must be able to verify everything it
gets against the owner's signature (docs/PROTOCOL.md, "Feeds").

A cursor (:mod:`node.feeds.cursor`) that no longer fits the feed (a list
left the label, was frozen, rebuilt, or the cursor is past its signed size)
asks for a full resync (410 ``resync_required``): never a silent gap.

Route handlers (api/routes/feeds.py) decide who may see which rows
(federation/policy.py); this module turns those rows into manifests, cursors
and streams.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import io
import json
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from crypto.merkle import EMPTY_ROOT
from node.feeds.cursor import Cursor, Position, decode_cursor, encode_cursor
from node.feeds.errors import ResyncRequiredError, UnknownFeedError
from node.log.entry import entry_line, json_string
from node.store import CheckpointRow, ListRow, Store, now_ms

__all__ = ["FeedList", "Feeds", "check_label"]

_ROOT_PREFIX_BYTES = 8
_LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# Rows per database read while streaming, and lines per chunk written: fewer,
# larger writes keep the thread hops of a streamed response cheap.
_STREAM_PAGE = 20_000
_LINES_PER_CHUNK = 2_000


# --- the feed ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedList:
    """A list of a feed, with the checkpoint that bounds what is served of it."""

    row: ListRow
    checkpoint: CheckpointRow

    @property
    def name(self) -> str:
        return self.row.full_name

    @property
    def size(self) -> int:
        return self.checkpoint.size


def check_label(label: str) -> str:
    """A syntactically valid label, or the same 404 as an unknown one."""
    if not _LABEL_RE.fullmatch(label):
        raise UnknownFeedError(label=label[:40])
    return label


class Feeds:
    """Feeds of one node: manifests, cursors and streams. Thread-safe; one per app."""

    def __init__(self, store: Store, *, node_id: str, secret: bytes) -> None:
        self.store = store
        self.node_id = node_id
        self.secret = secret
        self._live: dict[tuple[int, int, int], int] = {}
        self._lock = threading.Lock()

    # --- what is in a feed ---

    def lists(self, label: str, rows: Iterable[ListRow]) -> list[FeedList]:
        """The published lists among ``rows`` (already filtered for the caller) under ``label``.

        Raises:
            UnknownFeedError: none (unknown label, not cleared, nothing published).
        """
        check_label(label)
        out = []
        for row in rows:
            if row.label != label:
                continue
            cp = self.store.latest_checkpoint(list_id=row.id)
            if cp is not None:
                out.append(FeedList(row, cp))
        if not out:
            raise UnknownFeedError(label=label)
        return sorted(out, key=lambda f: f.name)

    def live_count(self, fl: FeedList) -> int:
        """Hashes in the list at its checkpoint (the stored count minus unpublished changes)."""
        state = self.store.get_state(list_id=fl.row.id)
        if state.size == fl.size:
            return state.live_count
        key = (fl.row.id, state.size, fl.size)
        with self._lock:
            hit = self._live.get(key)
        if hit is None:
            delta = sum(
                1 if e[1] == "add" else -1
                for e in self.store.iter_entries(list_id=fl.row.id, start=fl.size, end=state.size)
            )
            hit = state.live_count - delta
            with self._lock:
                if len(self._live) > 1024:
                    self._live.clear()
                self._live[key] = hit
        return hit

    def cursor_for(self, label: str, fls: Sequence[FeedList]) -> str:
        """The cursor of a partner that has everything ``fls`` serve."""
        positions = {
            fl.name: Position(fl.size, fl.checkpoint.root_hash[:_ROOT_PREFIX_BYTES]) for fl in fls
        }
        return encode_cursor(self.secret, Cursor(self.node_id, label, now_ms(), positions))

    def etag(self, label: str, fls: Sequence[FeedList]) -> str:
        """A strong ETag over the feed's signed checkpoints: it changes with any of them."""
        h = hashlib.sha256(f"{self.node_id}\n{label}\n".encode())
        for fl in fls:
            h.update(f"{fl.name}\n{len(fl.checkpoint.note)}\n".encode())
            h.update(fl.checkpoint.note.encode())
        return '"' + h.hexdigest()[:32] + '"'

    def manifest(self, label: str, fls: Sequence[FeedList]) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "label": label,
            "cursor": self.cursor_for(label, fls),
            "lists": [
                {
                    "list": fl.name,
                    "owner": fl.row.owner,
                    "name": fl.row.name,
                    "description": fl.row.description,
                    "size": fl.size,
                    "hashes": self.live_count(fl),
                    "timestamp": fl.checkpoint.timestamp,
                    "checkpoint": fl.checkpoint.note,
                }
                for fl in fls
            ],
        }

    # --- where to start ---

    def plan(
        self, label: str, fls: Sequence[FeedList], since: str | None
    ) -> list[tuple[FeedList, int]]:
        """``(list, first seq to send)`` for each list: 0 for a full feed, else from the cursor.

        Raises:
            CursorError: the cursor is not a valid cursor of this feed on this node.
            ResyncRequiredError: the cursor no longer fits the feed.
        """
        if since is None:
            return [(fl, 0) for fl in fls]
        cursor = decode_cursor(self.secret, since, node_id=self.node_id, label=label)
        by_name = {fl.name: fl for fl in fls}
        for name, pos in cursor.positions.items():
            fl = by_name.get(name)
            if fl is None:
                raise ResyncRequiredError(reason=f"list {name} is no longer in this feed")
            if pos.size > fl.size:
                raise ResyncRequiredError(
                    reason=f"list {name}: the cursor is at {pos.size}, "
                    f"past the signed size {fl.size}"
                )
            if pos.size == fl.size:
                root = fl.checkpoint.root_hash
            elif pos.size == 0:
                root = EMPTY_ROOT
            else:
                cp = self.store.checkpoint_at(list_id=fl.row.id, size=pos.size)
                root = cp.root_hash if cp is not None else b""
            if root[:_ROOT_PREFIX_BYTES] != pos.root_prefix:
                raise ResyncRequiredError(
                    reason=f"list {name}: no retained checkpoint matches the cursor at {pos.size}"
                )
        return [
            (fl, cursor.positions[fl.name].size if fl.name in cursor.positions else 0) for fl in fls
        ]

    @staticmethod
    def count(plan: Sequence[tuple[FeedList, int]]) -> int:
        return sum(fl.size - start for fl, start in plan)

    # --- NDJSON: the verifiable form ---

    def ndjson(self, plan: Sequence[tuple[FeedList, int]], cursor: str) -> Iterator[bytes]:
        """A list header, that list's entries ``[start, size)``, ...; then the cursor line."""
        for fl, start in plan:
            header = {
                "list": fl.name,
                "start": start,
                "size": fl.size,
                "checkpoint": fl.checkpoint.note,
            }
            yield (json.dumps(header, separators=(",", ":")) + "\n").encode()
            name = json_string(fl.name)
            batch: list[str] = []
            for row in self.store.iter_entries(
                list_id=fl.row.id, start=start, end=fl.size, page=_STREAM_PAGE
            ):
                batch.append(entry_line(name, *row))
                if len(batch) >= _LINES_PER_CHUNK:
                    yield "".join(batch).encode("ascii")
                    batch = []
            if batch:
                yield "".join(batch).encode("ascii")
        yield (json.dumps({"cursor": cursor}, separators=(",", ":")) + "\n").encode()

    # --- CSV, text and MISP: for consumers that do not verify ---

    def content_at_checkpoint(
        self, fl: FeedList, hash_type: str | None
    ) -> Iterator[tuple[str, str, str]]:
        """The list's ``(type, value, category)`` at its checkpoint, sorted by type and value.

        The content table is the list's *current* state; entries appended after
        the checkpoint (not yet published) are undone here: a key whose first
        later op is an add was absent at the checkpoint, one whose first later
        op is a remove was present (with the category the remove carries).
        """
        state = self.store.get_state(list_id=fl.row.id)
        touched: dict[tuple[str, str], tuple[str, str]] = {}
        if state.size > fl.size:
            for _s, op, t, v, c, _ts in self.store.iter_entries(
                list_id=fl.row.id, start=fl.size, end=state.size
            ):
                touched.setdefault((t, v), (op, c))
        restore = sorted(
            (t, v, c)
            for (t, v), (op, c) in touched.items()
            if op == "remove" and (hash_type is None or t == hash_type)
        )

        def current() -> Iterator[tuple[str, str, str]]:
            for page in self.store.iter_content(list_ids=[fl.row.id]):
                for _lid, t, v, c in page:
                    if (hash_type is None or t == hash_type) and (t, v) not in touched:
                        yield t, v, c

        return heapq.merge(current(), restore)

    def csv(self, plan: Sequence[tuple[FeedList, int]], *, full: bool) -> Iterator[bytes]:
        """``op,list,type,value,category``: the set (all ``add``), or the log since the cursor."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["op", "list", "type", "value", "category"])
        for fl, start in plan:
            if full:
                rows: Iterable[tuple[str, ...]] = (
                    ("add", fl.name, t, v, c) for t, v, c in self.content_at_checkpoint(fl, None)
                )
            else:
                rows = (
                    (op, fl.name, t, v, c)
                    for _s, op, t, v, c, _ts in self.store.iter_entries(
                        list_id=fl.row.id, start=start, end=fl.size, page=_STREAM_PAGE
                    )
                )
            for row in rows:
                w.writerow(row)
                if buf.tell() > 1 << 16:
                    yield buf.getvalue().encode()
                    buf.seek(0)
                    buf.truncate()
        yield buf.getvalue().encode()

    def text(
        self, plan: Sequence[tuple[FeedList, int]], *, full: bool, hash_type: str
    ) -> Iterator[bytes]:
        """One ``hash_type`` value per line, over the whole feed.

        Full: the union of the lists, sorted, each value once. Since a cursor:
        ``+value`` for an add and ``-value`` for a remove, a remove only when
        no other list of the feed still holds the value (checked against the
        lists' current content).
        """
        if full:
            merged = heapq.merge(
                *(
                    (v for _t, v, _c in self.content_at_checkpoint(fl, hash_type))
                    for fl, _start in plan
                )
            )
            batch: list[str] = []
            last = None
            for v in merged:
                if v != last:
                    batch.append(v)
                    last = v
                    if len(batch) >= _LINES_PER_CHUNK * 4:
                        yield ("\n".join(batch) + "\n").encode()
                        batch = []
            if batch:
                yield ("\n".join(batch) + "\n").encode()
            return
        all_ids = [fl.row.id for fl, _ in plan]
        for fl, start in plan:
            others = [i for i in all_ids if i != fl.row.id]
            pending: list[tuple[str, str]] = []  # (op, value) of one page
            for _s, op, t, v, _c, _ts in self.store.iter_entries(
                list_id=fl.row.id, start=start, end=fl.size, page=_STREAM_PAGE
            ):
                if t == hash_type:
                    pending.append((op, v))
                if len(pending) >= _LINES_PER_CHUNK:
                    yield self._text_changes(pending, others, hash_type)
                    pending = []
            if pending:
                yield self._text_changes(pending, others, hash_type)

    def _text_changes(self, pending: list[tuple[str, str]], others: list[int], htype: str) -> bytes:
        removed = [(htype, v) for op, v in pending if op == "remove"]
        held: set[str] = set()
        for other in others if removed else []:
            held.update(v for (_t, v) in self.store.existing_content(list_id=other, keys=removed))
        lines = [
            ("+" + v) if op == "add" else ("-" + v)
            for op, v in pending
            if op == "add" or v not in held
        ]
        return ("\n".join(lines) + "\n").encode() if lines else b""
