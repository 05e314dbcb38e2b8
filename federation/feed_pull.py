"""``hashfed pull``: a partner's verified copy of a feed, as one sorted file per hash type.

One pull::

    GET /feeds/v1/{label}/entries?format=ndjson[&since=<cursor>]  → spool file
    verify the spool, list by list, against the owners' keys the user trusts:
        checkpoint signature and origin          (never a key the server sends)
        size not below the last accepted one     (rollback)
        same size, same root; an extension of it (fork)
        stored right edge + new leaves = signed root  (tampered, dropped, reordered)
    only then apply:
        new per-list files (new generation names; the old ones stay)
        the output files DIR/<type>.txt          (temporary file + os.replace each)
        DIR/.hashfed-state.json                  (last, atomically)

Nothing is written outside ``DIR/.hashfed/`` before every check passed, and
the state file is replaced last, so a pull killed at any point leaves a
state the next pull resumes from; a marker written before the first output
file is replaced makes that next pull rebuild every output file from the
per-list files, so it ends with exactly the files of an uninterrupted pull.

Working folder ``DIR/.hashfed/``: ``spool.ndjson`` (the download),
``lists/<owner>/<name>/<type>.<generation>.txt`` (each list's hashes, sorted),
``pending`` (the marker), ``tmp/`` (sorted runs of large pulls). Memory stays
bounded by the run size (:data:`RUN_ENTRIES`), not by the feed.

:class:`federation.client.FeedClient` does the HTTP: this module never dials
out (federation/client.py is the project's only outbound module).
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import mmap
import operator
import os
import re
import shutil
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from crypto.checkpoint import list_origin, verify_checkpoint
from crypto.errors import (
    ForkError,
    FutureCheckpointError,
    HashfedError,
    InputError,
    NoTrustedSignatureError,
    PeerLimitError,
    PeerProtocolError,
    RollbackError,
    RootMismatchError,
    StaleError,
)
from crypto.keys import NoteVerifier
from crypto.merkle import CompactRange
from crypto.note import MAX_NOTE_BYTES
from federation.client import (
    FEED_MAX_BYTES,
    FeedClient,
)
from node.log.hashes import REGISTRY, parse_category

__all__ = [
    "STATE_FILE",
    "FeedVerifier",
    "ListState",
    "PullResult",
    "PullState",
    "load_trust",
    "pull",
]

STATE_FILE = ".hashfed-state.json"
WORK_DIR = ".hashfed"
STATE_FORMAT = 1
# Sorted runs of this many changes spill to disk: ~30 MB of Python objects.
RUN_ENTRIES = 200_000
# A feed download is cut off past this: ~200 bytes an entry, 20M entries.
DEFAULT_MAX_BYTES = FEED_MAX_BYTES
# A header line carries a signed note (≤ MAX_NOTE_BYTES); an entry line is far smaller.
MAX_LINE_BYTES = MAX_NOTE_BYTES + 4096
MAX_CURSOR_CHARS = 16_384
_LIST_RE = re.compile(r"^([a-z0-9][a-z0-9-]{0,62})/([a-z0-9][a-z0-9._-]{0,99})$")
_ENTRY_KEYS = frozenset(("list", "seq", "op", "type", "value", "category", "timestamp_ms"))
_HEADER_KEYS = frozenset(("list", "start", "size", "checkpoint"))
# RFC 6962's leaf prefix 0x00, then the leaf head: version, seq, op, timestamp_ms.
_LEAF_HEAD = struct.Struct(">BBQBQ")
_RUN_KEY = operator.itemgetter(slice(None, -3))  # a run line is b"<value>\t<0|1>\n"
_sha256 = hashlib.sha256
_MAX_INT64 = 2**63 - 1


# --- trust --------------------------------------------------------------------------------------


def load_trust(
    pairs: Sequence[str], trust_file: Path | None = None
) -> dict[str, list[NoteVerifier]]:
    """Owner → the verifier keys trusted for its lists, from ``OWNER=KEY`` pairs and a file.

    The file holds one ``OWNER=KEY`` (or ``OWNER KEY``) per line; ``#`` starts a comment.

    Raises:
        InputError: a pair or line is malformed or a key is not a verifier key.
    """
    items = [(f"--trust {p[:40]}", p) for p in pairs]
    if trust_file is not None:
        try:
            lines = trust_file.read_text().splitlines()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", where=str(trust_file)) from None
        for n, line in enumerate(lines, 1):
            line = line.split("#", 1)[0].strip()
            head, space, tail = line.partition(" ")
            if space and "=" not in head:  # "OWNER KEY"
                line = f"{head}={tail.strip()}"
            if line:
                items.append((f"{trust_file}:{n}", line))
    trust: dict[str, list[NoteVerifier]] = {}
    for where, item in items:
        owner, sep, key = item.partition("=")
        owner, key = owner.strip(), key.strip()
        if not sep or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", owner):
            raise InputError("expected OWNER=VERIFIER_KEY", where=where)
        try:
            trust.setdefault(owner, []).append(NoteVerifier.from_verifier_key(key))
        except (HashfedError, ValueError):
            raise InputError("not a verifier key (name+keyid+base64)", where=where) from None
    return trust


# --- state ----------------------------------------------------------------------------------------


@dataclass
class ListState:
    """What a pull accepted of one list: the signed checkpoint, the tree's right edge, files."""

    size: int
    compact_range: bytes
    checkpoint: str
    timestamp: int
    files: dict[str, str] = field(default_factory=dict)  # hash type -> path under DIR
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "compact_range": self.compact_range.hex(),
            "root": CompactRange.from_bytes(self.compact_range).root().hex(),
            "timestamp": self.timestamp,
            "checkpoint": self.checkpoint,
            "files": dict(sorted(self.files.items())),
            "counts": dict(sorted(self.counts.items())),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ListState:
        return cls(
            int(d["size"]),
            bytes.fromhex(d["compact_range"]),
            str(d["checkpoint"]),
            int(d["timestamp"]),
            {str(k): str(v) for k, v in d.get("files", {}).items()},
            {str(k): int(v) for k, v in d.get("counts", {}).items()},
        )


@dataclass
class PullState:
    """``DIR/.hashfed-state.json``: where the copy stands; replaced atomically, last."""

    url: str
    label: str
    cursor: str | None = None
    generation: int = 0
    lists: dict[str, ListState] = field(default_factory=dict)
    outputs: dict[str, int] = field(default_factory=dict)  # hash type -> hashes in the file

    @classmethod
    def load(cls, out_dir: Path) -> PullState | None:
        """The state in ``out_dir``, or None before the first pull.

        Raises:
            InputError: the file exists but is not a state this version wrote.
        """
        path = out_dir / STATE_FILE
        try:
            d = json.loads(path.read_text())
            if d.get("format") != STATE_FORMAT:
                raise ValueError("unknown format")
            return cls(
                str(d["url"]),
                str(d["label"]),
                d.get("cursor"),
                int(d["generation"]),
                {k: ListState.from_json(v) for k, v in d["lists"].items()},
                {str(k): int(v) for k, v in d.get("outputs", {}).items()},
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InputError(
                "not a hashfed pull state (delete the folder to start over)", where=str(path)
            ) from None

    def save(self, out_dir: Path) -> None:
        body = {
            "format": STATE_FORMAT,
            "url": self.url,
            "label": self.label,
            "cursor": self.cursor,
            "generation": self.generation,
            "outputs": dict(sorted(self.outputs.items())),
            "lists": {k: v.to_json() for k, v in sorted(self.lists.items())},
        }
        _atomic_write(out_dir / STATE_FILE, (json.dumps(body, indent=1) + "\n").encode())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


# --- verification ---------------------------------------------------------------------------------


class _Changes:
    """The net effect (last op wins) of one list's entries on one hash type, sorted by value.

    In memory up to :data:`RUN_ENTRIES` distinct values, then spilled as sorted runs.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.current: dict[bytes, bool] = {}
        self.runs: list[Path] = []

    def add(self, value: bytes, present: bool) -> None:
        self.current[value] = present
        if len(self.current) >= RUN_ENTRIES:
            self._spill()

    def _spill(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        path = self.tmp / f"run-{id(self)}-{len(self.runs)}.txt"
        with path.open("wb") as fh:
            fh.writelines(
                v + (b"\t1\n" if p else b"\t0\n") for v, p in sorted(self.current.items())
            )
        self.runs.append(path)
        self.current = {}

    @property
    def small(self) -> bool:
        return not self.runs

    def __len__(self) -> int:
        return len(self.current) + len(self.runs) * RUN_ENTRIES  # an upper bound once spilled

    def items(self) -> Iterator[tuple[bytes, bool]]:
        """``(value, present)`` sorted by value, each value once: its last op."""
        if not self.runs:
            yield from sorted(self.current.items())
            return
        if self.current:
            self._spill()
        files = [p.open("rb") for p in self.runs]
        try:
            # Ties (one value in several runs) come in run order: the last one wins.
            prev, flag = None, False
            for line in heapq.merge(*files, key=_RUN_KEY):
                value = line[:-3]
                if value != prev:
                    if prev is not None:
                        yield prev, flag
                    prev = value
                flag = line[-2] == 0x31  # "1"
            if prev is not None:
                yield prev, flag
        finally:
            for f in files:
                f.close()


@dataclass
class _Verified:
    """One list as verified from the stream, with its net changes from ``apply_from`` on."""

    name: str
    size: int
    compact_range: bytes
    checkpoint: str
    timestamp: int
    apply_from: int
    changes: dict[str, _Changes] = field(default_factory=dict)


class FeedVerifier:
    """Checks a feed stream line by line against the old state and the trusted keys.

    Order is enforced: a list header, exactly that list's entries in seq
    order up to the header's size, the next header, ..., the cursor line,
    nothing after. No I/O besides spilling sorted runs under ``tmp``.
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
    ) -> None:
        self.old = old.lists if old else {}
        self.trust = trust
        self.peer = peer
        self.tmp = tmp
        self.max_age = max_age_seconds
        self.max_skew = max_skew_seconds
        self.now = time.time() if now is None else now
        self.done: dict[str, _Verified] = {}
        self.cursor: str | None = None
        self.entries = 0
        self._cur: _Verified | None = None
        self._range = CompactRange()
        self._root = b""
        self._next_seq = 0
        self._origin = ""
        self._leaves: list[bytes] = []
        self._stop_at = -1
        self._start = 0
        self._prefix = b""
        self._categories: dict[bytes, str] = {}
        self._types: dict[bytes, tuple[str, bytes, int]] = {}
        self._cat_fields: dict[bytes, bytes] = {}
        self._in_list = False
        self._last_type = ""
        self._last_changes: _Changes | None = None

    def _bad(self, reason: str) -> PeerProtocolError:
        return PeerProtocolError(peer=self.peer, reason=f"feed stream: {reason}")

    def line(self, raw: bytes) -> None:
        """Check one line (without its newline).

        Raises:
            PeerProtocolError: out of order or malformed.
            VerificationError: a signature, rollback, fork or root check failed.
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
        owner, list_name = m.group(1), m.group(2)
        origin = list_origin(owner, list_name)
        keys = self.trust.get(owner, [])
        if not keys:
            raise NoTrustedSignatureError(
                origin=origin,
                trusted=f"no key trusted for {owner}; pass --trust {owner}=<verifier key>",
            )
        cp = verify_checkpoint(note, origin=origin, verifiers=keys)
        if cp.size != size:
            raise self._bad(f"{name}: header size {size}, signed size {cp.size}")
        if cp.timestamp - self.now > self.max_skew:
            # A far-future date would outrank every later heartbeat of the owner.
            raise FutureCheckpointError(
                origin=origin,
                ahead_seconds=int(cp.timestamp - self.now),
                max_skew_seconds=self.max_skew,
            )
        if self.max_age and self.now - cp.timestamp > self.max_age:
            raise StaleError(
                origin=origin,
                age_seconds=int(self.now - cp.timestamp),
                max_age_seconds=self.max_age,
            )
        old = self.old.get(name)
        apply_from = 0
        if old is not None:
            old_range = CompactRange.from_bytes(old.compact_range)
            if size < old.size:
                raise RollbackError(origin=origin, trusted_size=old.size, new_size=size)
            if size == old.size and cp.root_hash != old_range.root():
                raise ForkError(origin=origin, size=size, reason="same size, another root")
            if start not in (0, old.size):
                raise self._bad(f"{name}: starts at {start}; we hold {old.size}")
            apply_from = old.size
            self._range = old_range if start == old.size else CompactRange()
        else:
            if start != 0:
                raise self._bad(f"{name}: starts at {start} but we hold nothing of it")
            self._range = CompactRange()
        self._stop_at = old.size if old is not None and start == 0 and old.size else -1
        self._cur = _Verified(name, size, b"", note, cp.timestamp, apply_from)
        self._root = cp.root_hash
        self._next_seq = start
        self._start = start
        self._in_list = start < size
        self._origin = origin
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
        category are checked once and cached as leaf bytes.
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
            _sha256(
                _LEAF_HEAD.pack(0, 1, seq, 1 if add else 2, ts)
                + type_field
                + len(value).to_bytes(2, "big")
                + value
                + cat_field
            ).digest()
        )
        self._next_seq = seq + 1
        current = self._last_changes.current  # type: ignore[union-attr]
        current[value] = add
        if len(current) >= RUN_ENTRIES:
            self._last_changes._spill()  # type: ignore[union-attr]
        if len(leaves) >= 65_536 or self._range.size + len(leaves) == self._stop_at:
            self._flush(self.old.get(cur.name))  # type: ignore[union-attr]
        return True

    def _name(self) -> str:
        return self._cur.name if self._cur is not None else "?"

    def _type_spec(self, type_b: bytes, seq: int) -> tuple[str, bytes, int]:
        htype = REGISTRY.get(type_b.decode("ascii", "replace"))
        if htype is None:
            raise self._bad(f"{self._name()} entry {seq}: unknown hash type")
        t = htype.name.encode()
        spec = (htype.name, bytes([len(t)]) + t, 2 * htype.hex_bytes if htype.hex_bytes else 0)
        self._types[type_b] = spec
        return spec

    def _category_field(self, raw: bytes, seq: int) -> bytes:
        text = self._category(raw, seq)
        c = text.encode("utf-8")
        field_ = bytes([len(c)]) + c
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
        # node/log/entry.py's encode_leaf, inlined, behind RFC 6962's 0x00 leaf prefix.
        head = _LEAF_HEAD.pack(0, 1, seq, 1 if add else 2, ts)
        self._leaves.append(
            _sha256(head + type_field + len(value).to_bytes(2, "big") + value + cat_field).digest()
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
                    ch = cur.changes[htype] = _Changes(self.tmp)
                self._last_type, self._last_changes = htype, ch
            ch = self._last_changes
            assert ch is not None
            ch.add(value, add)
        # Flush leaves in batches, and exactly at the old size when rebuilding a
        # list from 0, to compare its root there (fork detection).
        if len(self._leaves) >= 65_536 or self._range.size + len(self._leaves) == self._stop_at:
            self._flush(self.old.get(cur.name))

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
            raise self._bad(
                f"{self._cur.name if self._cur else '?'} entry {seq}: "
                f"value is not canonical {htype}"
            )

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

    def _flush(self, old: ListState | None) -> None:
        self._range.extend(self._leaves)
        self._leaves = []
        if (
            old is not None
            and self._range.size == old.size
            and old.size
            and self._range.root() != CompactRange.from_bytes(old.compact_range).root()
        ):
            raise ForkError(
                origin=self._origin,
                size=old.size,
                reason="the served history differs from the one accepted before",
            )

    def _finish_list(self) -> None:
        cur = self._cur
        if cur is None:
            return
        if self._next_seq != cur.size:
            raise self._bad(f"{cur.name}: {cur.size - self._next_seq} entries missing")
        self._flush(self.old.get(cur.name))
        got = self._range.root()
        if got != self._root:
            raise RootMismatchError(
                origin=self._origin, size=cur.size, expected=self._root.hex(), got=got.hex()
            )
        cur.compact_range = self._range.to_bytes()
        self.done[cur.name] = cur
        self.entries += cur.size - self._start
        self._cur = None

    def finish(self) -> dict[str, _Verified]:
        """The verified lists, once the whole stream (cursor line included) was seen.

        Raises:
            PeerProtocolError: the stream ended early.
        """
        if self._cur is not None:
            self._finish_list()
        if self.cursor is None:
            raise self._bad("the stream ended before the cursor line (cut off?)")
        return self.done


# --- sorted files ---------------------------------------------------------------------------------


def _lower_bound(mm: mmap.mmap, key: bytes, lo: int, hi: int) -> int:
    """The first line start in ``[lo, hi)`` whose line is ``>= key``, else ``hi``.

    ``lo`` must be a line start; every line ends in ``\\n``.
    """
    while lo < hi:
        mid = (lo + hi) // 2
        s = mm.rfind(b"\n", lo, mid)
        s = lo if s < 0 else s + 1
        e = mm.find(b"\n", s)
        if mm[s:e] < key:
            lo = e + 1
        else:
            hi = s
    return lo


class _Sorted:
    """A sorted, one-value-per-line file, memory-mapped for membership tests."""

    def __init__(self, path: Path) -> None:
        self._fh = path.open("rb")
        size = os.fstat(self._fh.fileno()).st_size
        self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ) if size else None

    def __contains__(self, key: bytes) -> bool:
        mm = self._mm
        if mm is None:
            return False
        at = _lower_bound(mm, key, 0, len(mm))
        return at < len(mm) and mm[at : mm.find(b"\n", at)] == key

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
        self._fh.close()


def _splice(
    old: Path | None, changes: Iterable[tuple[bytes, bool]], out: IO[bytes], count: int
) -> int:
    """Write ``old`` with ``changes`` applied (few changes: copy the runs between them)."""
    if old is None:  # a new file: the present values, in order
        batch: list[bytes] = []
        for value, present in changes:
            if present:
                batch.append(value)
                if len(batch) >= 65_536:
                    out.write(b"\n".join(batch) + b"\n")
                    count, batch = count + len(batch), []
        if batch:
            out.write(b"\n".join(batch) + b"\n")
        return count + len(batch)
    with old.open("rb") as fh:
        if not os.fstat(fh.fileno()).st_size:
            return _splice(None, changes, out, count)
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            n, pos = len(mm), 0
            for value, present in changes:
                at = _lower_bound(mm, value, pos, n)
                if at > pos:
                    out.write(mm[pos:at])
                pos = at
                if at < n:
                    end = mm.find(b"\n", at)
                    if mm[at:end] == value:
                        pos = end + 1
                        count -= 1
                if present:
                    out.write(value + b"\n")
                    count += 1
            out.write(mm[pos:])
    return count


def _merge(old: Path, changes: Iterable[tuple[bytes, bool]], out: IO[bytes]) -> int:
    """Write ``old`` with ``changes`` applied, line by line (many changes)."""
    n = 0
    with old.open("rb") as fh:
        cur = fh.readline()
        for value, present in changes:
            line = value + b"\n"  # "\n" sorts below every value byte: lines order as values
            while cur and cur < line:
                out.write(cur)
                n += 1
                cur = fh.readline()
            if cur == line:
                cur = fh.readline()
            if present:
                out.write(line)
                n += 1
        while cur:
            out.write(cur)
            n += 1
            cur = fh.readline()
    return n


def _union(paths: Sequence[Path], out: IO[bytes]) -> int:
    """Write the sorted union of sorted files, each value once."""
    n = 0
    files = [p.open("rb") for p in paths]
    try:
        prev = b""
        for line in heapq.merge(*files):
            if line != prev:
                out.write(line)
                n += 1
                prev = line
    finally:
        for f in files:
            f.close()
    return n


@contextlib.contextmanager
def _new_file(path: Path) -> Iterator[IO[bytes]]:
    """Write ``path`` whole or not at all: a temporary file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb", buffering=1 << 20) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# --- applying a verified pull ---------------------------------------------------------------------


def _splice_is_cheaper(changes: int, lines: int) -> bool:
    # A splice costs a binary search (~20 probes) per change; a merge one step per line.
    return changes * 32 < lines


def _apply(
    out_dir: Path,
    old: PullState | None,
    verified: dict[str, _Verified],
    *,
    url: str,
    label: str,
    cursor: str,
    rebuild: bool,
) -> tuple[PullState, list[str]]:
    work = out_dir / WORK_DIR
    gen = (old.generation if old else 0) + 1
    old_lists = old.lists if old else {}
    touched: dict[str, set[bytes] | None] = {}  # type -> changed values (None: rebuild it)
    dropped = sorted(set(old_lists) - set(verified))
    for name in dropped:
        for t in old_lists[name].files:
            touched[t] = None
    new_lists: dict[str, ListState] = {}
    for name, v in verified.items():
        prev = old_lists.get(name)
        files = dict(prev.files) if prev is not None else {}
        counts = dict(prev.counts) if prev is not None else {}
        owner, lname = name.split("/", 1)
        for htype, ch in sorted(v.changes.items()):
            rel = f"{WORK_DIR}/lists/{owner}/{lname}/{htype}.{gen}.txt"
            old_path = out_dir / files[htype] if htype in files else None
            old_count = counts.get(htype, 0)
            small = ch.small and _splice_is_cheaper(len(ch), old_count)
            with _new_file(out_dir / rel) as fh:
                if old_path is None or small:
                    count = _splice(old_path, ch.items(), fh, old_count)
                else:
                    count = _merge(old_path, ch.items(), fh)
            if count:
                files[htype], counts[htype] = rel, count
            else:
                files.pop(htype, None)
                counts.pop(htype, None)
            seen = touched.get(htype, set())
            if seen is not None and small and old_path is not None:
                seen.update(v for v, _p in ch.items())
                touched[htype] = seen
            else:
                touched[htype] = None
        note, ts = v.checkpoint, v.timestamp
        if prev is not None and prev.size == v.size and prev.timestamp > ts:
            note, ts = prev.checkpoint, prev.timestamp  # never step back to an older note
        new_lists[name] = ListState(v.size, v.compact_range, note, ts, files, counts)

    outputs = dict(old.outputs) if old else {}
    all_types = {t for ls in new_lists.values() for t in ls.files} | set(outputs)
    # A missing output file (deleted by hand) is rebuilt even when nothing changed.
    missing = {t for t in all_types if not (out_dir / f"{t}.txt").exists()}
    todo = {
        t: (None if rebuild or t in missing else touched.get(t))
        for t in all_types
        if rebuild or t in touched or t in missing
    }
    marker = work / "pending"
    if todo:
        _atomic_write(marker, f"{gen}\n".encode())
    for htype in sorted(todo):
        holders = [
            (out_dir / ls.files[htype], ls.counts[htype])
            for ls in new_lists.values()
            if htype in ls.files
        ]
        target = out_dir / f"{htype}.txt"
        keys = todo[htype]
        with _new_file(target) as fh:
            if not holders:
                count = 0
            elif len(holders) == 1:
                with holders[0][0].open("rb") as src:
                    shutil.copyfileobj(src, fh, 1 << 20)
                count = holders[0][1]
            elif (
                keys is not None
                and target.exists()
                and _splice_is_cheaper(len(keys), outputs.get(htype, 0))
            ):
                lookups = [_Sorted(p) for p, _c in holders]
                try:
                    union_changes = ((k, any(k in s for s in lookups)) for k in sorted(keys))
                    count = _splice(target, union_changes, fh, outputs.get(htype, 0))
                finally:
                    for s in lookups:
                        s.close()
            else:
                count = _union([p for p, _c in holders], fh)
        outputs[htype] = count
    state = PullState(url, label, cursor, gen, new_lists, outputs)
    state.save(out_dir)
    marker.unlink(missing_ok=True)
    _collect_garbage(out_dir, state)
    return state, dropped


def _collect_garbage(out_dir: Path, state: PullState) -> None:
    """Delete per-list files no longer referenced (older generations, dropped lists)."""
    keep = {out_dir / f for ls in state.lists.values() for f in ls.files.values()}
    lists_dir = out_dir / WORK_DIR / "lists"
    if not lists_dir.is_dir():
        return
    for path in sorted(lists_dir.rglob("*"), reverse=True):
        if path.is_file() and path not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


# --- one pull -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PullResult:
    """What one pull did."""

    label: str
    full: bool  # fetched from the start (first pull, resync, another server)
    resynced: bool  # the server refused our cursor
    lists: int
    entries: int  # verified log entries received
    bytes: int
    outputs: dict[str, int]  # hash type -> hashes in DIR/<type>.txt now
    dropped: list[str]  # lists the server no longer serves (their hashes left the files)
    seconds: float


class _Progress:
    """Optional progress reporting (a rich Progress or anything with the same two calls)."""

    def __init__(self, progress: Any) -> None:
        self.p = progress

    def task(self, description: str, total: int | None) -> Callable[[int], None]:
        if self.p is None:
            return lambda n: None
        task = self.p.add_task(description, total=total)
        return lambda n: self.p.advance(task, n)


def _lines(fh: IO[bytes], peer: str) -> Iterator[bytes]:
    while True:
        line = fh.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if not line.endswith(b"\n"):
            if len(line) > MAX_LINE_BYTES:
                raise PeerLimitError(
                    peer=peer, limit="feed line bytes", value=len(line), maximum=MAX_LINE_BYTES
                )
            raise PeerProtocolError(peer=peer, reason="feed stream: the last line is cut off")
        yield line[:-1]


def pull(
    client: FeedClient,
    *,
    label: str,
    out_dir: Path,
    trust: dict[str, list[NoteVerifier]],
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_age_seconds: int = 0,
    progress: Any = None,
) -> PullResult:
    """Pull ``label`` into ``out_dir``: verify everything, then rewrite the files atomically.

    Raises:
        InputError: ``out_dir`` holds another feed, or another pull is writing to it.
        PeerError: the server is unreachable, slow, or breaks the protocol.
        VerificationError: a signature, rollback, fork, root or age check failed
            (RollbackError, ForkError, RootMismatchError, ...); nothing was written.
        PeerLimitError: the download exceeded ``max_bytes`` (a PeerError).
    """
    import fcntl

    started = time.monotonic()
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", label):
        raise InputError("expected lowercase letters, digits, '-' or '_'", where="--label")
    work = out_dir / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    lock = (work / "lock").open("a")
    try:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError("another pull is writing to this folder", where=str(out_dir)) from None
        old = PullState.load(out_dir)
        if old is not None and old.label != label:
            raise InputError(
                f"holds a copy of feed {old.label!r}, not {label!r}", where=str(out_dir)
            )
        since = old.cursor if old is not None and old.url == client.url else None
        rebuild = (work / "pending").exists()  # a pull died while replacing outputs
        tmp = work / "tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        spool_path = work / "spool.ndjson"
        report = _Progress(progress)
        resynced = False
        try:
            while True:
                with spool_path.open("wb") as spool:
                    fetched = client.fetch(
                        label,
                        since,
                        spool,
                        max_bytes=max_bytes,
                        on_bytes=report.task("downloading", None),
                    )
                if not fetched.resync:
                    break
                if since is None:
                    raise PeerProtocolError(peer=client.peer, reason="asked to resync a full pull")
                since, resynced = None, True
            verifier = FeedVerifier(
                old=old, trust=trust, peer=client.peer, tmp=tmp, max_age_seconds=max_age_seconds
            )
            tick = report.task("verifying", fetched.lines)
            with spool_path.open("rb") as fh:
                n = 0
                for line in _lines(fh, client.peer):
                    verifier.line(line)
                    n += 1
                    if n == 10_000:
                        tick(n)
                        n = 0
                tick(n)
            verified = verifier.finish()
            assert verifier.cursor is not None
            state, dropped = _apply(
                out_dir,
                old,
                verified,
                url=client.url,
                label=label,
                cursor=verifier.cursor,
                rebuild=rebuild,
            )
        finally:
            spool_path.unlink(missing_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
        return PullResult(
            label=label,
            full=since is None,
            resynced=resynced,
            lists=len(verified),
            entries=verifier.entries,
            bytes=fetched.bytes,
            outputs=dict(state.outputs),
            dropped=dropped,
            seconds=time.monotonic() - started,
        )
    finally:
        lock.close()
