"""A feed as a native MISP feed: ``manifest.json``, one event per list, ``hashes.csv``.

A MISP administrator adds ``https://node/misp/v1/<label>`` as a feed of
type *MISP Feed* (with the header ``Authorization: Bearer hf_…``) and
nothing else: MISP fetches ``manifest.json``, then each ``<uuid>.json``
whose timestamp is newer than its copy, and may cache ``hashes.csv``.

**Events.** One per list of the feed, at its newest signed checkpoint (what
is served is what the owner signed, as for every feed form):

- ``uuid``: UUIDv5 of the list name, so every node serving a list gives it
  the same event (MISP deduplicates by uuid);
- ``timestamp``: when the list's content last changed, i.e. the timestamp
  of the last log entry under the checkpoint. A heartbeat re-signature
  changes nothing, so MISP refetches an event only when hashes were added or
  removed ("incremental by event timestamp");
- ``Orgc``: the list owner; ``Tag``: the TLP 2.0 tag of the sharing label
  (node/feeds/stix_objects.py, ``LABEL_TLP``) and ``hashfed:label="…"``;
- ``Attribute``: one per hash, ``md5``/``sha1``/``sha256`` with their own
  MISP types, ``to_ids`` true. MISP has no PDQ or PhotoDNA attribute type
  (PyMISP's describeTypes lists none), so those are ``text`` attributes
  (category ``Other``, ``to_ids`` false) tagged ``hashfed:hash-type="pdq"``
  and commented ``pdq``. The owner's category is the tag
  ``hashfed:category="…"``. Each attribute's uuid is UUIDv5 of
  ``list | type | value``: stable, so a refetch edits instead of duplicating.
- A hash the list removed is sent as its attribute with ``deleted: true``:
  MISP soft-deletes it, which is the only deletion a MISP feed propagates.

Events are streamed a page of rows at a time: a 1M-hash list never sits in
memory as one document.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from node.feeds.feed import FeedList, Feeds
from node.feeds.stix_objects import tlp_for_label

__all__ = ["MISP_NAMESPACE", "MispFeed", "attribute_uuid", "event_uuid"]

MISP_NAMESPACE = uuid.UUID("0b8f4a43-2a3c-5c9e-9a51-8d3e1f6a0c10")  # hashfed's MISP ids, fixed
_MISP_TYPES = {"md5": "md5", "sha1": "sha1", "sha256": "sha256"}
_ROWS_PER_CHUNK = 2_000


def event_uuid(list_name: str) -> str:
    return str(uuid.uuid5(MISP_NAMESPACE, f"event:{list_name}"))


def attribute_uuid(list_name: str, hash_type: str, value: str) -> str:
    return str(uuid.uuid5(MISP_NAMESPACE, f"{list_name}|{hash_type}|{value}"))


def _org_uuid(owner: str) -> str:
    return str(uuid.uuid5(MISP_NAMESPACE, f"org:{owner}"))


def _tag(name: str) -> dict[str, str]:
    return {"name": name}


class MispFeed:
    """The MISP form of the feeds of one node (a view over :class:`Feeds`)."""

    def __init__(self, feeds: Feeds) -> None:
        self.feeds = feeds
        self.store = feeds.store

    def changed_at(self, fl: FeedList) -> int:
        """Unix seconds of the last entry under the checkpoint (its creation if none)."""
        if fl.size == 0:
            return fl.row.created_ms // 1000
        [last] = list(self.store.iter_entries(list_id=fl.row.id, start=fl.size - 1, end=fl.size))
        return int(last[5]) // 1000

    def _header(self, label: str, fl: FeedList) -> dict[str, Any]:
        ts = self.changed_at(fl)
        return {
            "uuid": event_uuid(fl.name),
            "info": f"hashfed list {fl.name}"
            + (f": {fl.row.description}" if fl.row.description else ""),
            "date": dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d"),
            "timestamp": str(ts),
            "publish_timestamp": str(fl.checkpoint.timestamp),
            "published": True,
            "analysis": "2",  # completed: the owner classified every hash
            "threat_level_id": "1",
            "distribution": "0",  # the receiving organisation only
            "Orgc": {"name": fl.row.owner, "uuid": _org_uuid(fl.row.owner)},
            "Tag": [_tag(f"tlp:{tlp_for_label(label)}"), _tag(f'hashfed:label="{label}"')],
        }

    def manifest(self, label: str, fls: Sequence[FeedList]) -> dict[str, Any]:
        """``manifest.json``: per event uuid, what MISP needs to decide to fetch it."""
        out: dict[str, Any] = {}
        for fl in fls:
            h = self._header(label, fl)
            out[h["uuid"]] = {
                k: h[k] for k in ("info", "Orgc", "Tag", "date", "analysis", "threat_level_id")
            } | {"timestamp": int(h["timestamp"])}
        return out

    def find(self, fls: Sequence[FeedList], uuid_text: str) -> FeedList | None:
        return next((fl for fl in fls if event_uuid(fl.name) == uuid_text), None)

    def etag(self, fl: FeedList) -> str:
        """Strong: the same signed size and root give the same event, byte for byte."""
        h = hashlib.sha256(f"misp event\n{fl.name}\n{fl.size}\n".encode())
        h.update(fl.checkpoint.root_hash)
        return '"' + h.hexdigest()[:32] + '"'

    def event(self, label: str, fl: FeedList) -> Iterator[bytes]:
        """``{"Event": {…, "Attribute": […]}}`` as a stream of JSON text."""
        header = self._header(label, fl)
        ts = header["timestamp"]
        head = json.dumps({"Event": header}, separators=(",", ":"), ensure_ascii=False)
        yield (head[:-2] + ',"Attribute":[').encode()
        first = True
        batch: list[str] = []
        present: set[tuple[str, str]] | None = None
        removed = self.store.removed_keys(list_id=fl.row.id, start=0, end=fl.size)
        if removed:
            present = set()
        for t, v, c in self.feeds.content_at_checkpoint(fl, None):
            if present is not None and (t, v) in removed:
                present.add((t, v))
            batch.append(("" if first else ",") + self._attribute(fl.name, t, v, c, ts))
            first = False
            if len(batch) >= _ROWS_PER_CHUNK:
                yield "".join(batch).encode()
                batch = []
        for t, v in sorted(removed - (present or set())):
            batch.append(("" if first else ",") + self._attribute(fl.name, t, v, "", ts, True))
            first = False
        batch.append("]}}")
        yield "".join(batch).encode()

    @staticmethod
    def _attribute(list_name: str, t: str, v: str, c: str, ts: str, deleted: bool = False) -> str:
        mtype = _MISP_TYPES.get(t)
        tags = [_tag(f'hashfed:category="{c}"')] if c else []
        attr: dict[str, Any] = {
            "uuid": attribute_uuid(list_name, t, v),
            "type": mtype or "text",
            "category": "Payload delivery" if mtype else "Other",
            "value": v,
            "to_ids": bool(mtype) and not deleted,
            "distribution": "5",  # as the event
            "timestamp": ts,
        }
        if not mtype:
            attr["comment"] = t
            tags.append(_tag(f'hashfed:hash-type="{t}"'))
        if deleted:
            attr["deleted"] = True
        if tags:
            attr["Tag"] = tags
        return json.dumps(attr, separators=(",", ":"), ensure_ascii=False)

    def hashes_csv(self, fls: Sequence[FeedList]) -> Iterator[bytes]:
        """``hashes.csv``: ``md5(value),event uuid`` per attribute, MISP's feed cache format."""
        for fl in fls:
            ev = event_uuid(fl.name)
            batch: list[str] = []
            for _t, v, _c in self.feeds.content_at_checkpoint(fl, None):
                batch.append(f"{hashlib.md5(v.encode()).hexdigest()},{ev}\n")  # noqa: S324
                if len(batch) >= _ROWS_PER_CHUNK:
                    yield "".join(batch).encode()
                    batch = []
            if batch:
                yield "".join(batch).encode()
