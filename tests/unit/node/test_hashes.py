"""Hash types: canonical forms, rejection of bad input, distances.

Hash values are sensitive, so every rejection is also checked for *not*
repeating the value it rejected.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.errors import InputError
from node.log.hashes import (
    HASH_TYPES,
    MAX_CATEGORY_LENGTH,
    REGISTRY,
    distance,
    get_type,
    hamming,
    parse_category,
    parse_hash,
)

HEX_TYPES = [name for name, t in REGISTRY.items() if t.hex_bytes is not None]
WIDTH = {"md5": 16, "sha1": 20, "sha256": 32, "pdq": 32}

# Characters that are not hex but look like they could be; at least six of
# them in a row never occur in any of the error messages, so "the value is
# not in the message" cannot pass by accident.
_NOT_QUITE_HEX = "0123456789abcdefABCDEFgxyz"


def _mixed_case(hexstr: str, flips: list[bool]) -> str:
    return "".join(c.upper() if i < len(flips) and flips[i] else c for i, c in enumerate(hexstr))


# --- registry ----------------------------------------------------------------------------


def test_registry_has_the_documented_types() -> None:
    assert set(HASH_TYPES) == {"md5", "sha1", "sha256", "pdq", "photodna"}
    assert {n: REGISTRY[n].hex_bytes for n in WIDTH} == WIDTH
    assert REGISTRY["pdq"].match == "hamming"
    assert REGISTRY["photodna"].hex_bytes is None


@pytest.mark.parametrize("raw", ["sha256", "SHA256", " Sha256 ", "\tsha256\n"])
def test_type_names_are_case_and_whitespace_insensitive(raw: str) -> None:
    assert get_type(raw).name == "sha256"


@pytest.mark.parametrize("raw", ["sha-256", "md4", "", "pdq2", "sha256 x"])
def test_unknown_type_is_rejected_naming_the_position(raw: str) -> None:
    with pytest.raises(InputError) as info:
        parse_hash(raw, "ab" * 16, where="hashes[17]")
    assert info.value.where == "hashes[17].type"
    assert "hashes[17].type" in str(info.value)
    assert "ab" * 16 not in str(info.value)


# --- canonical form ------------------------------------------------------------------------


@pytest.mark.parametrize("htype", HEX_TYPES)
@given(data=st.data())
def test_hex_values_canonicalise_to_lowercase_without_whitespace(
    htype: str, data: st.DataObject
) -> None:
    raw = data.draw(st.binary(min_size=WIDTH[htype], max_size=WIDTH[htype])).hex()
    flips = data.draw(st.lists(st.booleans(), max_size=len(raw)))
    pad_left = data.draw(st.sampled_from(["", " ", "\t", "  \n"]))
    pad_right = data.draw(st.sampled_from(["", " ", "\r\n", "\t "]))
    typed = pad_left + _mixed_case(raw, flips) + pad_right

    name, canonical = parse_hash(htype.upper(), typed)

    assert (name, canonical) == (htype, raw)
    # Canonical forms are fixed points, and the index key is the raw bytes.
    assert parse_hash(name, canonical) == (name, canonical)
    assert REGISTRY[name].key(canonical) == bytes.fromhex(raw)


@given(
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=300
    )
)
def test_opaque_values_are_kept_as_printed(value: str) -> None:
    assert parse_hash("photodna", f"  {value}\n") == ("photodna", value)
    key = REGISTRY["photodna"].key(value)
    assert len(key) == REGISTRY["photodna"].key_width == 32


def test_opaque_keys_differ_for_different_values() -> None:
    t = REGISTRY["photodna"]
    assert t.key("AAAA,1,2") != t.key("AAAA,1,3")


# --- rejection ---------------------------------------------------------------------------------


@pytest.mark.parametrize("htype", HEX_TYPES)
@pytest.mark.parametrize("delta", [-2, -1, 1, 2, 10])
def test_wrong_length_is_rejected_without_echoing_the_value(htype: str, delta: int) -> None:
    value = ("c0ffee" * 30)[: 2 * WIDTH[htype] + delta]
    with pytest.raises(InputError) as info:
        parse_hash(htype, value, where="hashes[17]")
    assert info.value.where == "hashes[17].value"
    assert str(info.value).startswith("hashes[17].value")
    assert value not in str(info.value)
    assert value not in repr(info.value.fields)


@pytest.mark.parametrize("htype", HEX_TYPES)
@given(data=st.data())
def test_non_hex_values_are_rejected_without_echoing_the_value(
    htype: str, data: st.DataObject
) -> None:
    n = 2 * WIDTH[htype]
    value = data.draw(st.text(alphabet=_NOT_QUITE_HEX, min_size=n, max_size=n))
    if all(c in "0123456789abcdefABCDEF" for c in value):
        value = value[:-1] + "g"  # make sure at least one character is not hex
    with pytest.raises(InputError) as info:
        parse_hash(htype, value, where="hashes[3]")
    assert info.value.where == "hashes[3].value"
    assert value not in str(info.value)
    assert value.lower() not in str(info.value)


@given(st.text(alphabet=_NOT_QUITE_HEX, min_size=6, max_size=100))
def test_any_rejected_value_is_absent_from_the_message(value: str) -> None:
    if len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value):
        assert parse_hash("sha256", value) == ("sha256", value.lower())
        return
    with pytest.raises(InputError) as info:
        parse_hash("sha256", value, where="hashes[0]")
    assert value not in str(info.value)
    assert value.lower() not in str(info.value)
    assert info.value.where == "hashes[0].value"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "has space inside",
        "tab\tinside",
        "nön-ascii-välue",
        "x" * 2049,
        "ctrl\x01char",
    ],
)
def test_bad_opaque_values_are_rejected(value: str) -> None:
    with pytest.raises(InputError) as info:
        parse_hash("photodna", value, where="hashes[9]")
    assert info.value.where == "hashes[9].value"
    if value.strip():
        assert value.strip() not in str(info.value)


def test_where_defaults_to_plain_field_names() -> None:
    with pytest.raises(InputError) as info:
        parse_hash("md5", "zz")
    assert info.value.where == "value"
    with pytest.raises(InputError) as info:
        parse_hash("nope", "zz")
    assert info.value.where == "type"


# --- categories -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("A1", "A1"),
        ("  baseline ", "baseline"),
        ("", ""),
        ("cat 2/b.c:d+e-f_g", "cat 2/b.c:d+e-f_g"),
        ("Kategorie-Ä", "Kategorie-Ä"),
        ("x" * MAX_CATEGORY_LENGTH, "x" * MAX_CATEGORY_LENGTH),
    ],
)
def test_good_categories(raw: str, want: str) -> None:
    assert parse_category(raw) == want


@pytest.mark.parametrize(
    "raw", ["x" * (MAX_CATEGORY_LENGTH + 1), "a,b", "semi;colon", 'quote"', "new\nline", "<b>"]
)
def test_bad_categories_name_the_field(raw: str) -> None:
    with pytest.raises(InputError) as info:
        parse_category(raw, where="hashes[4].category")
    assert info.value.where == "hashes[4].category"


def test_category_must_fit_the_one_byte_leaf_length() -> None:
    # 64 letters of four UTF-8 bytes each would need 256 bytes in the leaf,
    # whose category length is one byte (node/log/entry.py).
    with pytest.raises(InputError):
        parse_category("\U0001d400" * MAX_CATEGORY_LENGTH)


@given(st.text(max_size=80))
def test_every_accepted_category_can_be_encoded_in_a_leaf(raw: str) -> None:
    try:
        cat = parse_category(raw)
    except InputError:
        return
    assert len(cat) <= MAX_CATEGORY_LENGTH
    assert len(cat.encode("utf-8")) <= 255


# --- distance -------------------------------------------------------------------------------------


def _hamming_reference(a: bytes, b: bytes) -> int:
    """Bit by bit, the slow obvious way."""
    count = 0
    for x, y in zip(a, b, strict=True):
        for bit in range(8):
            if (x >> bit) & 1 != (y >> bit) & 1:
                count += 1
    return count


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_hamming_matches_bit_by_bit_reference(a: bytes, b: bytes) -> None:
    assert hamming(a, b) == _hamming_reference(a, b)
    assert distance("pdq", a.hex(), b.hex()) == _hamming_reference(a, b)
    assert hamming(a, b) == hamming(b, a)
    assert hamming(a, a) == 0


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [
        ("00" * 32, "00" * 32, 0),
        ("00" * 32, "ff" * 32, 256),
        ("00" * 31 + "01", "00" * 32, 1),
        ("80" + "00" * 31, "00" * 32, 1),
        ("0f" * 32, "f0" * 32, 256),
        ("01" * 32, "03" * 32, 32),
    ],
)
def test_hamming_known_values(a: str, b: str, want: int) -> None:
    assert distance("pdq", a, b) == want


def test_hamming_rejects_codes_of_different_lengths() -> None:
    with pytest.raises(ValueError):  # noqa: PT011  (a programming error, no message contract)
        hamming(b"\x00" * 32, b"\x00" * 31)


@pytest.mark.parametrize("htype", ["md5", "sha1", "sha256", "photodna"])
def test_exact_types_have_distance_zero_or_one(htype: str) -> None:
    a = "ab" * (WIDTH.get(htype, 4))
    b = "ac" * (WIDTH.get(htype, 4))
    assert distance(htype, a, a) == 0
    assert distance(htype, a, b) == 1


# --- batches ------------------------------------------------------------------------------------


_batch_values = st.lists(
    st.one_of(
        st.binary(min_size=32, max_size=32).map(bytes.hex),
        st.binary(min_size=32, max_size=32).map(lambda b: " " + b.hex().upper() + "\t"),
        st.text(alphabet=_NOT_QUITE_HEX + " ", min_size=60, max_size=68),
    ),
    min_size=1,
    max_size=6,
)


@pytest.mark.parametrize("htype", ["sha256", "pdq", "photodna"])
@given(values=_batch_values)
def test_parse_many_agrees_with_parse_hash(htype: str, values: list[str]) -> None:
    """The batch fast path accepts and rejects exactly what one-by-one parsing does."""
    from node.log.hashes import parse_many

    positions = [10 + i for i in range(len(values))]
    expected: list[str] = []
    first_error: InputError | None = None
    for v, p in zip(values, positions, strict=True):
        try:
            expected.append(parse_hash(htype, v, where=f"hashes[{p}]")[1])
        except InputError as exc:
            first_error = exc
            break
    if first_error is None:
        assert parse_many(htype, values, positions, where="hashes") == expected
        return
    with pytest.raises(InputError) as info:
        parse_many(htype, values, positions, where="hashes")
    assert info.value.where == first_error.where
    for v in values:
        if v.strip():
            assert v.strip() not in str(info.value)
