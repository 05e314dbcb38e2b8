"""The leaf encoding: layout, round trips, rejection of malformed leaves, vectors."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import struct
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.merkle import leaf_hash
from node.log.entry import LEAF_VERSION, Entry, decode_leaf, encode_leaf, leaf_hashes
from node.log.hashes import HASH_TYPES

VECTORS_DIR = Path(__file__).parents[2] / "vectors" / "leaves"
VECTORS_FILE = VECTORS_DIR / "leaves.json"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_leaves", VECTORS_DIR / "generate_leaves.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vectors() -> dict[str, object]:
    return json.loads(VECTORS_FILE.read_text(encoding="utf-8"))


entries = st.builds(
    Entry,
    seq=st.integers(0, 2**64 - 1),
    op=st.sampled_from(["add", "remove"]),
    hash_type=st.sampled_from(HASH_TYPES)
    | st.text(st.characters(max_codepoint=0x7F), max_size=255),
    value=st.text(st.characters(max_codepoint=0x7F), max_size=3000),
    category=st.text(max_size=63).filter(lambda c: len(c.encode("utf-8")) <= 255),
    timestamp_ms=st.integers(0, 2**64 - 1),
)


# --- layout ------------------------------------------------------------------------------------


def _by_hand(seq: int, op: int, htype: bytes, value: bytes, cat: bytes, ts: int) -> bytes:
    """The layout written out field by field, as docs/PROTOCOL.md states it."""
    return (
        bytes([1])
        + seq.to_bytes(8, "big")
        + bytes([op])
        + ts.to_bytes(8, "big")
        + bytes([len(htype)])
        + htype
        + len(value).to_bytes(2, "big")
        + value
        + bytes([len(cat)])
        + cat
    )


def test_layout_matches_the_documented_fields() -> None:
    value = "ab" * 32
    got = encode_leaf(7, "add", "sha256", value, "A1", 1_700_000_000_123)
    assert got == _by_hand(7, 1, b"sha256", value.encode(), b"A1", 1_700_000_000_123)
    assert len(got) == 1 + 8 + 1 + 8 + 1 + 6 + 2 + 64 + 1 + 2


def test_remove_is_op_two_and_category_is_utf8() -> None:
    got = encode_leaf(2**40, "remove", "md5", "00" * 16, "Kategorie-Ä", 5)
    assert got == _by_hand(2**40, 2, b"md5", b"00" * 16, "Kategorie-Ä".encode(), 5)
    assert LEAF_VERSION == 1


def test_entry_method_equals_function() -> None:
    e = Entry(3, "add", "pdq", "f0" * 32, "", 99)
    assert e.leaf_bytes() == encode_leaf(3, "add", "pdq", "f0" * 32, "", 99)


def test_every_field_changes_the_leaf() -> None:
    base = Entry(5, "add", "sha256", "ab" * 32, "A1", 1000)
    variants = [
        Entry(6, "add", "sha256", "ab" * 32, "A1", 1000),
        Entry(5, "remove", "sha256", "ab" * 32, "A1", 1000),
        Entry(5, "add", "pdq", "ab" * 32, "A1", 1000),
        Entry(5, "add", "sha256", "ab" * 31 + "ac", "A1", 1000),
        Entry(5, "add", "sha256", "ab" * 32, "A2", 1000),
        Entry(5, "add", "sha256", "ab" * 32, "A1", 1001),
    ]
    leaves = {v.leaf_bytes() for v in variants} | {base.leaf_bytes()}
    assert len(leaves) == len(variants) + 1


def test_length_prefixes_keep_fields_apart() -> None:
    # Moving a character from one string field to the next must change the
    # leaf: that is what the length prefixes are for.
    a = encode_leaf(0, "add", "photodna", "AB", "C", 0)
    b = encode_leaf(0, "add", "photodna", "A", "BC", 0)
    assert a != b


# --- round trips -------------------------------------------------------------------------------


@given(entries)
def test_decode_inverts_encode(e: Entry) -> None:
    leaf = e.leaf_bytes()
    assert decode_leaf(leaf) == e
    assert decode_leaf(leaf).leaf_bytes() == leaf


@given(entries, entries)
def test_encoding_is_injective(a: Entry, b: Entry) -> None:
    if a != b:
        assert a.leaf_bytes() != b.leaf_bytes()


# --- rejection ----------------------------------------------------------------------------------


@given(entries, st.data())
def test_every_truncation_is_rejected(e: Entry, data: st.DataObject) -> None:
    leaf = e.leaf_bytes()
    cut = data.draw(st.integers(0, len(leaf) - 1))
    with pytest.raises(ValueError):  # noqa: PT011  (the decoder's one error type)
        decode_leaf(leaf[:cut])


@given(entries, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_rejected(e: Entry, extra: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        decode_leaf(e.leaf_bytes() + extra)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_version_is_rejected(version: int) -> None:
    leaf = encode_leaf(0, "add", "md5", "00" * 16, "", 0)
    with pytest.raises(ValueError):  # noqa: PT011
        decode_leaf(bytes([version]) + leaf[1:])


@pytest.mark.parametrize("op", [0, 3, 255])
def test_unknown_op_is_rejected(op: int) -> None:
    leaf = encode_leaf(0, "add", "md5", "00" * 16, "", 0)
    with pytest.raises(ValueError):  # noqa: PT011
        decode_leaf(leaf[:9] + bytes([op]) + leaf[10:])


@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_value_error(data: bytes) -> None:
    try:
        e = decode_leaf(data)
    except ValueError:
        return
    assert e.leaf_bytes() == data  # anything accepted is canonical


@pytest.mark.parametrize(
    "fields",
    [
        (-1, "add", "md5", "00" * 16, "", 0),
        (2**64, "add", "md5", "00" * 16, "", 0),
        (0, "add", "md5", "00" * 16, "", -1),
        (0, "add", "md5", "00" * 16, "", 2**64),
        (0, "replace", "md5", "00" * 16, "", 0),
        (0, "add", "t" * 256, "00", "", 0),
        (0, "add", "photodna", "v" * 65536, "", 0),
        (0, "add", "md5", "00", "\U0001d400" * 64, 0),
        (0, "add", "md5", "nön-ascii", "", 0),
    ],
    ids=[
        "seq<0",
        "seq>=2^64",
        "ts<0",
        "ts>=2^64",
        "bad-op",
        "type>255",
        "value>65535",
        "category>255-bytes",
        "value-not-ascii",
    ],
)
def test_encode_rejects_fields_that_do_not_fit(fields: tuple) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError):  # noqa: PT011
        encode_leaf(*fields)
    with pytest.raises(ValueError):  # noqa: PT011  (the bulk path refuses the same rows)
        leaf_hashes([(0, "add", "md5", "00" * 16, "", 0), fields])


# --- the bulk leaf hasher ---------------------------------------------------------------------


@given(st.lists(entries, max_size=20))
def test_bulk_leaf_hashes_equal_one_by_one(es: list[Entry]) -> None:
    rows = [(e.seq, e.op, e.hash_type, e.value, e.category, e.timestamp_ms) for e in es]
    assert leaf_hashes(rows) == [leaf_hash(e.leaf_bytes()) for e in es]


def test_decode_error_is_value_error_not_struct_error() -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        decode_leaf(b"\x01\x00")
    assert not issubclass(struct.error, ValueError)  # so the wrapping above is needed


# --- vectors -------------------------------------------------------------------------------------


def test_vectors_are_up_to_date() -> None:
    """Regenerate leaves.json and diff: the encoding and the file must agree."""
    generated = _load_generator().render()
    committed = VECTORS_FILE.read_text(encoding="utf-8")
    assert generated == committed, (
        "tests/vectors/leaves/leaves.json is out of date; run "
        "`.venv/bin/python tests/vectors/leaves/generate_leaves.py` and review the diff"
    )


def test_generator_check_mode_reports_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert _load_generator().main(["--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_valid_vectors_decode_and_hash_independently() -> None:
    vectors = _vectors()
    valid = vectors["valid"]
    assert isinstance(valid, list)
    assert len(valid) >= 3
    for v in valid:
        leaf = bytes.fromhex(v["leaf_hex"])
        want = v["entry"]
        assert decode_leaf(leaf) == Entry(**want), v["name"]
        # RFC 6962 leaf hash computed here with hashlib, not via crypto.merkle.
        assert hashlib.sha256(b"\x00" + leaf).hexdigest() == v["leaf_hash_hex"], v["name"]
        assert leaf_hash(leaf).hex() == v["leaf_hash_hex"], v["name"]
        op_code = {"add": 1, "remove": 2}[want["op"]]
        assert leaf == _by_hand(
            want["seq"],
            op_code,
            want["hash_type"].encode(),
            want["value"].encode(),
            want["category"].encode(),
            want["timestamp_ms"],
        ), v["name"]


def test_malformed_vectors_are_rejected() -> None:
    malformed = _vectors()["malformed"]
    assert isinstance(malformed, list)
    assert {m["name"] for m in malformed} >= {"empty", "trailing-byte", "op-3", "version-2"}
    for m in malformed:
        with pytest.raises(ValueError):  # noqa: PT011
            decode_leaf(bytes.fromhex(m["leaf_hex"]))


def test_protocol_section_quotes_the_vectors() -> None:
    """The PROTOCOL.md leaf section's worked examples are the generated ones."""
    root = Path(__file__).parents[3]
    docs = [
        p for p in (root / "docs" / "PROTOCOL.md", root / "docs" / "_leaf_section.md") if p.exists()
    ]
    if not docs:
        pytest.skip("no protocol document yet")
    text = "".join(p.read_text(encoding="utf-8") for p in docs)
    compact = "".join(text.split())
    quoted = [v for v in _vectors()["valid"] if v["leaf_hash_hex"] in compact]
    assert len(quoted) >= 3
    for v in quoted:
        assert v["leaf_hex"] in compact, v["name"]
