"""Reading a feed stream: its framing and entries here, every check of a list in ``ListUpdate``.

A stream is a list header, exactly that list's entries in seq order up to
the header's size, the next header, ..., the cursor line, nothing after.
Each header opens a :class:`federation.trusted_state.ListUpdate` (the one
verifier of a list, whoever fetched it): owner signature and origin, date
not in the future, no rollback, no fork, not stale; the entries' leaf hashes
then go to it, and its root check closes the list. A feed serves no
consistency proofs, so the entries stand in for one
(``ListUpdate.prove_with_entries``).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

from crypto.checkpoint import list_origin
from crypto.errors import InputError, NoTrustedSignatureError, PeerProtocolError
from crypto.keys import NoteVerifier
from crypto.merkle import CompactRange
from crypto.note import MAX_NOTE_BYTES
from federation.feed_pull import files
from federation.feed_pull.files import Changes
from federation.feed_pull.state import PullState
from federation.feed_pull.trust import Witnesses
from federation.trusted_state import Accepted, ListUpdate
from node.log.entry import OP_CODES, leaf_hash_input, short_field
from node.log.hashes import REGISTRY, parse_category

__all__ = ["MAX_CURSOR_CHARS", "MAX_LINE_BYTES", "FeedVerifier", "Verified"]

# A header line carries a signed note (≤ MAX_NOTE_BYTES); an entry line is far smaller.
MAX_LINE_BYTES = MAX_NOTE_BYTES + 4096
# A cursor names every list of a feed (~60 bytes each): ~250 lists.
MAX_CURSOR_CHARS = 16_384
_LIST_RE = re.compile(r"^([a-z0-9][a-z0-9-]{0,62})/([a-z0-9][a-z0-9._-]{0,99})$")
_ENTRY_KEYS = frozenset(("list", "seq", "op", "type", "value", "category", "timestamp_ms"))
_HEADER_KEYS = frozenset(("list", "start", "size", "checkpoint"))
_MAX_INT64 = 2**63 - 1
# max_age_seconds 0 turns the age check off: no checkpoint is ever this old.
_NO_MAX_AGE = 2**62
# Leaf hashes handed to the verifier at once: 2 MB of hashes.
_LEAF_BATCH = 65_536
_ADD, _REMOVE = OP_CODES["add"], OP_CODES["remove"]


@dataclass
class Verified:
    """One list as verified from the stream, with its net changes from ``apply_from`` on."""

    name: str
    size: int
    compact_range: bytes
    checkpoint: str
    timestamp: int
    apply_from: int
    changes: dict[str, Changes] = field(default_factory=dict)


class FeedVerifier:
    """Checks a feed stream line by line against the old state and the trusted keys.

    No I/O besides spilling sorted runs under ``tmp``.
    """

    def __init__(
        self,
        *,
        old: PullState | None,
        trust: dict[str, list[NoteVerifier]],
        peer: str,
        tmp: Path,
        max_age_seconds: int = 0,
        now: float | None = None,
        max_skew_seconds: int = 300,
        witnesses: Witnesses | None = None,
    ) -> None:
        self.old = old.lists if old else {}
        self.trust = trust
        self.witnesses = witnesses or {}
        self.peer = peer
        self.tmp = tmp
        self.max_age = max_age_seconds
        self.max_skew = max_skew_seconds
        self.now = time.time() if now is None else now
        self.done: dict[str, Verified] = {}
        self.cursor: str | None = None
        self.entries = 0
        self._cur: Verified | None = None
        self._update: ListUpdate | None = None
        self._next_seq = 0
        self._leaves: list[bytes] = []
        self._start = 0
        self._prefix = b""
        self._categories: dict[bytes, str] = {}
        self._types: dict[bytes, tuple[str, bytes, int]] = {}
        self._cat_fields: dict[bytes, bytes] = {}
        self._in_list = False
        self._last_type = ""
        self._last_changes: Changes | None = None

    def _bad(self, reason: str) -> PeerProtocolError:
        return PeerProtocolError(peer=self.peer, reason=f"feed stream: {reason}")

    def line(self, raw: bytes) -> None:
        """Check one line (without its newline).

        Raises:
            PeerProtocolError: out of order or malformed.
            VerificationError: a signature, date, rollback, fork, age or root
                check of ``ListUpdate`` failed.
        """
        if self._in_list:
            if not self._entry_fast(raw):
                self._entry_json(raw)
            return
        if self.cursor is not None:
            raise self._bad("data after the cursor line")
        if len(raw) > MAX_LINE_BYTES:
            raise self._bad(f"a line over {MAX_LINE_BYTES} bytes")
        try:
            obj = json.loads(raw)
        except ValueError:
            raise self._bad("a line is not JSON") from None
        if type(obj) is not dict:
            raise self._bad("a line is not a JSON object")
        self._finish_list()
        if obj.keys() == {"cursor"}:
            if type(obj["cursor"]) is not str or len(obj["cursor"]) > MAX_CURSOR_CHARS:
                raise self._bad("malformed cursor")
            self.cursor = obj["cursor"]
        elif obj.keys() == _HEADER_KEYS:
            self._header(obj)
        else:
            raise self._bad("expected a list header or the cursor line")

    def _header(self, obj: dict[str, Any]) -> None:
        name, start, size, note = obj["list"], obj["start"], obj["size"], obj["checkpoint"]
        m = _LIST_RE.fullmatch(name) if type(name) is str else None
        if m is None or name in self.done:
            raise self._bad("a list header names no list, or one twice")
        if type(start) is not int or type(size) is not int or not 0 <= start <= size <= _MAX_INT64:
            raise self._bad(f"{name}: start and size must satisfy 0 <= start <= size")
        if type(note) is not str:
            raise self._bad(f"{name}: the checkpoint is not a string")
        owner = m.group(1)
        origin = list_origin(owner, m.group(2))
        keys = self.trust.get(owner, [])
        if not keys:
            raise NoTrustedSignatureError(
                origin=origin,
                trusted=f"no key trusted for {owner}; pass --trust {owner}=<verifier key>",
            )
        old = self.old.get(name)
        stored = CompactRange.from_bytes(old.compact_range) if old else CompactRange()
        trusted = Accepted(old.size, stored.root(), old.timestamp, old.checkpoint) if old else None
        try:
            update = ListUpdate(
                origin=origin,
                verifiers=keys,
                trusted=trusted,
                stored=stored,
                now=int(self.now),
                max_age_seconds=self.max_age or _NO_MAX_AGE,
                max_skew_seconds=self.max_skew,
                # No health report watches a partner's copy: a frozen feed must fail the pull.
                refuse_stale_unchanged=True,
                witnesses=self.witnesses.get(owner, ([], 0))[0],
                witness_quorum=self.witnesses.get(owner, ([], 0))[1],
            )
        except ValueError:
            raise InputError(
                f"{name}: the saved tree does not match its size (delete the folder to start over)",
                where="pull state",
            ) from None
        update.offer(note)
        assert update.offered is not None
        if update.offered.size != size:
            raise self._bad(f"{name}: header size {size}, signed size {update.offered.size}")
        if start not in (0, stored.size):
            raise self._bad(f"{name}: starts at {start}; we hold {stored.size}")
        update.prove_with_entries(start)
        self._update = update
        self._cur = Verified(name, size, b"", note, update.offered.timestamp, stored.size)
        self._next_seq = start
        self._start = start
        self._in_list = start < size
        self._leaves = []
        self._prefix = b'{"list":' + json.dumps(name).encode() + b',"seq":'
        self._last_type = ""
        self._last_changes = None

    def _entry_fast(self, raw: bytes) -> bool:
        """The per-entry hot path: a line exactly as node/feeds/feed.py writes it, else False.

        Each field is cut at the next fixed separator and checked so that the
        line can only be the canonical serialisation of the fields taken from
        it (no quote or backslash inside a string, digits only in numbers, the
        exact seq expected); anything else takes the JSON path. Type and
        category are checked once and cached as leaf fields.
        """
        pre = self._prefix
        if not raw.startswith(pre) or not raw.endswith(b"}"):
            return False
        seq = self._next_seq
        seq_b = b"%d" % seq
        i = len(pre) + len(seq_b)
        if raw[len(pre) : i] != seq_b:
            return False
        if raw.startswith(b',"op":"add","type":"', i):
            add, i = True, i + 20
        elif raw.startswith(b',"op":"remove","type":"', i):
            add, i = False, i + 23
        else:
            return False
        j = raw.find(b'","value":"', i)
        k = raw.find(b'","category":"', j)
        n = raw.find(b'","timestamp_ms":', k)
        if j < 0 or k < 0 or n < 0:
            return False
        type_b, value, cat_b, ts_b = raw[i:j], raw[j + 11 : k], raw[k + 14 : n], raw[n + 17 : -1]
        if not ts_b.isdigit() or len(ts_b) > 19 or (ts_b[0] == 0x30 and len(ts_b) > 1):
            return False
        if b'"' in cat_b or b"\\" in cat_b:
            return False
        spec = self._types.get(type_b) or self._type_spec(type_b, seq)
        htype, type_field, hex_len = spec
        if hex_len:
            if len(value) != hex_len or value.translate(None, b"0123456789abcdef"):
                raise self._bad(f"{self._name()} entry {seq}: value is not canonical {htype}")
        elif b'"' in value or b"\\" in value:
            return False
        else:
            self._canonical(htype, value.decode("ascii", "replace"), seq)
        cat_field = self._cat_fields.get(cat_b) or self._category_field(cat_b, seq)
        ts = int(ts_b)
        if ts > _MAX_INT64:
            raise self._bad(f"{self._name()} entry {seq}: timestamp out of range")
        # _take, inlined for the common case (an add or remove of the list's last type)
        cur = self._cur
        if htype != self._last_type or seq + 1 == cur.size or seq < cur.apply_from:  # type: ignore[union-attr]
            self._take(seq, add, htype, type_field, value, cat_field, ts)
            return True
        leaves = self._leaves
        leaves.append(
            sha256(
                leaf_hash_input(seq, _ADD if add else _REMOVE, ts, type_field, value, cat_field)
            ).digest()
        )
        self._next_seq = seq + 1
        current = self._last_changes.current  # type: ignore[union-attr]
        current[value] = add
        if len(current) >= files.RUN_ENTRIES:
            self._last_changes.spill()  # type: ignore[union-attr]
        if len(leaves) >= _LEAF_BATCH:
            self._flush()
        return True

    def _name(self) -> str:
        return self._cur.name if self._cur is not None else "?"

    def _type_spec(self, type_b: bytes, seq: int) -> tuple[str, bytes, int]:
        htype = REGISTRY.get(type_b.decode("ascii", "replace"))
        if htype is None:
            raise self._bad(f"{self._name()} entry {seq}: unknown hash type")
        spec = (
            htype.name,
            short_field(htype.name.encode()),
            2 * htype.hex_bytes if htype.hex_bytes else 0,
        )
        self._types[type_b] = spec
        return spec

    def _category_field(self, raw: bytes, seq: int) -> bytes:
        field_ = short_field(self._category(raw, seq).encode("utf-8"))
        if len(self._cat_fields) < 100_000:
            self._cat_fields[raw] = field_
        return field_

    def _take(
        self,
        seq: int,
        add: bool,
        htype: str,
        type_field: bytes,
        value: bytes,
        cat_field: bytes,
        ts: int,
    ) -> None:
        self._leaves.append(
            sha256(
                leaf_hash_input(seq, _ADD if add else _REMOVE, ts, type_field, value, cat_field)
            ).digest()
        )
        self._next_seq = seq + 1
        cur = self._cur
        assert cur is not None
        if seq + 1 == cur.size:
            self._in_list = False
        if seq >= cur.apply_from:
            if htype != self._last_type:
                ch = cur.changes.get(htype)
                if ch is None:
                    ch = cur.changes[htype] = Changes(self.tmp)
                self._last_type, self._last_changes = htype, ch
            ch = self._last_changes
            assert ch is not None
            ch.add(value, add)
        if len(self._leaves) >= _LEAF_BATCH:
            self._flush()

    def _entry_json(self, raw: bytes) -> None:
        cur = self._cur
        assert cur is not None
        if len(raw) > MAX_LINE_BYTES:
            raise self._bad(f"{cur.name}: a line over {MAX_LINE_BYTES} bytes")
        try:
            obj = json.loads(raw)
        except ValueError:
            raise self._bad(f"{cur.name}: entry {self._next_seq} is not JSON") from None
        if type(obj) is not dict or obj.keys() != _ENTRY_KEYS:
            raise self._bad(f"{cur.name}: entry {self._next_seq} missing (got another line)")
        seq, op, t, value, category, ts = (
            obj["seq"],
            obj["op"],
            obj["type"],
            obj["value"],
            obj["category"],
            obj["timestamp_ms"],
        )
        if obj["list"] != cur.name or type(seq) is not int or seq != self._next_seq:
            raise self._bad(f"{cur.name}: expected entry {self._next_seq} of this list")
        if op not in ("add", "remove") or type(t) is not str or t not in REGISTRY:
            raise self._bad(f"{cur.name} entry {seq}: bad op or hash type")
        if type(value) is not str or type(category) is not str:
            raise self._bad(f"{cur.name} entry {seq}: value and category must be strings")
        if type(ts) is not int or not 0 <= ts <= _MAX_INT64:
            raise self._bad(f"{cur.name} entry {seq}: timestamp out of range")
        self._canonical(t, value, seq)
        _name, type_field, _hex = self._type_spec(t.encode(), seq)
        cat_field = self._category_field(category.encode("utf-8"), seq)
        self._take(seq, op == "add", t, type_field, value.encode("ascii"), cat_field, ts)

    def _canonical(self, htype: str, value: str, seq: int) -> None:
        try:
            ok = REGISTRY[htype].parse(value) == value
        except InputError:
            ok = False
        if not ok:
            raise self._bad(f"{self._name()} entry {seq}: value is not canonical {htype}")

    def _category(self, raw: bytes, seq: int) -> str:
        hit = self._categories.get(raw)
        if hit is None:
            try:
                text = raw.decode("utf-8") if b"\\" not in raw else json.loads(b'"' + raw + b'"')
                if parse_category(text) != text:
                    raise InputError("not canonical")
            except (InputError, ValueError):
                raise self._bad(f"entry {seq}: category is malformed") from None
            if len(self._categories) < 100_000:
                self._categories[raw] = text
            hit = text
        return hit

    def _flush(self) -> None:
        if self._leaves:
            assert self._update is not None
            self._update.add_leaves(self._leaves)
            self._leaves = []

    def _finish_list(self) -> None:
        cur, update = self._cur, self._update
        if cur is None or update is None:
            return
        if self._next_seq != cur.size:
            raise self._bad(f"{cur.name}: {cur.size - self._next_seq} entries missing")
        self._flush()
        update.finish()
        cur.compact_range = update.compact_range.to_bytes()
        self.done[cur.name] = cur
        self.entries += cur.size - self._start
        self._cur = self._update = None

    def finish(self) -> dict[str, Verified]:
        """The verified lists, once the whole stream (cursor line included) was seen.

        Raises:
            PeerProtocolError: the stream ended early.
            VerificationError: the last list's root check failed.
        """
        if self._cur is not None:
            self._finish_list()
        if self.cursor is None:
            raise self._bad("the stream ended before the cursor line (cut off?)")
        return self.done
