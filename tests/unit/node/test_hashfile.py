"""Reading import files: CSV and one-hash-a-line text, refused whole when malformed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from crypto.errors import InputError, UnknownListError
from node.log.hashfile import MAX_REPORTED_ERRORS, detect_format, read_hash_file
from node.node import Node

MD5 = "0123456789abcdef0123456789abcdef"
SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


def _write(tmp_path: Path, text: str, name: str = "hashes.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- CSV ------------------------------------------------------------------------------------


def test_csv_with_header_and_categories(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"type,value,category\nmd5,{MD5.upper()},A1\nsha256, {SHA256} ,B2\npdq,{PDQ},A1\n",
    )
    assert list(read_hash_file(path)) == [
        ("md5", MD5, "A1"),
        ("sha256", SHA256, "B2"),
        ("pdq", PDQ, "A1"),
    ]


def test_csv_without_header_or_category_uses_default_category(tmp_path: Path) -> None:
    path = _write(tmp_path, f"md5,{MD5}\nSHA1,{SHA1},C\n")
    assert list(read_hash_file(path, default_category="baseline")) == [
        ("md5", MD5, "baseline"),
        ("sha1", SHA1, "C"),
    ]


@pytest.mark.parametrize("header", ["type,value", "Type, Value, Category", "TYPE,VALUE,category"])
def test_header_spellings(tmp_path: Path, header: str) -> None:
    path = _write(tmp_path, f"{header}\nmd5,{MD5}\n")
    assert list(read_hash_file(path)) == [("md5", MD5, "")]


def test_header_after_leading_comments(tmp_path: Path) -> None:
    path = _write(tmp_path, f"# exported 2026-01-01\n\ntype,value,category\nmd5,{MD5},A1\n")
    assert list(read_hash_file(path)) == [("md5", MD5, "A1")]


def test_header_is_only_allowed_first(tmp_path: Path) -> None:
    path = _write(tmp_path, f"md5,{MD5}\ntype,value\n")
    with pytest.raises(InputError):
        list(read_hash_file(path))


def test_csv_with_byte_order_mark_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(f"\ufefftype,value,category\r\nmd5,{MD5},A1\r\n".encode())
    assert list(read_hash_file(path)) == [("md5", MD5, "A1")]


def test_csv_quoted_fields(tmp_path: Path) -> None:
    path = _write(tmp_path, f'"md5","{MD5}","cat 1"\n')
    assert list(read_hash_file(path)) == [("md5", MD5, "cat 1")]


def test_blank_and_comment_lines_are_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path, f"\n# a comment, with a comma\n   \nmd5,{MD5}\n  # indented\n\n")
    assert list(read_hash_file(path)) == [("md5", MD5, "")]


def test_duplicates_are_kept_for_the_list_to_skip(tmp_path: Path) -> None:
    path = _write(tmp_path, f"md5,{MD5}\nmd5,{MD5.upper()}\n")
    assert list(read_hash_file(path)) == [("md5", MD5, ""), ("md5", MD5, "")]


# --- text -----------------------------------------------------------------------------------------


def test_text_file_with_type(tmp_path: Path) -> None:
    path = _write(tmp_path, f"{SHA256}\n\n# comment\n  {SHA256.upper()[:-1]}4 \n", "h.txt")
    assert list(read_hash_file(path, default_type="SHA256", default_category="A1")) == [
        ("sha256", SHA256, "A1"),
        ("sha256", SHA256[:-1] + "4", "A1"),
    ]


def test_text_file_needs_a_type(tmp_path: Path) -> None:
    path = _write(tmp_path, f"{SHA256}\n", "h.txt")
    with pytest.raises(InputError):
        list(read_hash_file(path))


def test_text_file_with_unknown_type(tmp_path: Path) -> None:
    path = _write(tmp_path, f"{SHA256}\n", "h.txt")
    with pytest.raises(InputError) as info:
        list(read_hash_file(path, default_type="sha512"))
    assert info.value.where == "--type"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (f"md5,{MD5}\n", "csv"),
        (f"{MD5}\n", "text"),
        (f"\n# c, d\n{MD5}\n", "text"),
        (f"  # c, d\n{MD5}\n", "text"),
        ("", "text"),
    ],
)
def test_detect_format(tmp_path: Path, text: str, want: str) -> None:
    assert detect_format(_write(tmp_path, text)) == want


def test_explicit_format_overrides_detection(tmp_path: Path) -> None:
    path = _write(tmp_path, f"{MD5}\n")
    with pytest.raises(InputError):
        list(read_hash_file(path, fmt="csv"))  # one field is not a CSV row
    with pytest.raises(InputError):
        list(read_hash_file(path, fmt="xml"))


# --- refusals -------------------------------------------------------------------------------------


def test_malformed_file_names_file_and_line_and_not_the_values(tmp_path: Path) -> None:
    bad_value = "c0ffee" * 5  # 30 hex characters: wrong length for md5
    path = _write(
        tmp_path,
        "\n".join(
            [
                "type,value,category",  # 1
                f"md5,{MD5}",  # 2 ok
                f"md5,{bad_value}",  # 3 bad length
                f"sha999,{SHA256}",  # 4 unknown type
                f"md5,{MD5},bad;category",  # 5 bad category
                f"md5,{MD5},A1,extra",  # 6 too many fields
                f"sha1,{SHA1}",  # 7 ok
            ]
        )
        + "\n",
    )
    with pytest.raises(InputError) as info:
        list(read_hash_file(path))
    msg = str(info.value)
    for line in (3, 4, 5, 6):
        assert f"{path}:{line}" in msg
    for line in (1, 2, 7):
        assert f"{path}:{line}:" not in msg
    for value in (bad_value, MD5, SHA1, SHA256):
        assert value not in msg


def test_at_most_ten_errors_are_listed_then_a_count(tmp_path: Path) -> None:
    bad = [f"md5,{'ab' * 15}{i:02d}x" for i in range(25)]  # 33 characters each
    path = _write(tmp_path, "\n".join([f"md5,{MD5}", *bad]) + "\n")
    with pytest.raises(InputError) as info:
        list(read_hash_file(path))
    msg = str(info.value)
    listed = [n for n in range(1, 27) if f"{path}:{n}:" in msg]
    assert listed == list(range(2, 2 + MAX_REPORTED_ERRORS))
    assert f"{25 - MAX_REPORTED_ERRORS} more" in msg
    assert "25 invalid" in msg
    assert not any(b.split(",")[1] in msg for b in bad)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        list(read_hash_file(tmp_path / "nope.csv", default_type="md5"))
    assert info.value.where == str(tmp_path / "nope.csv")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        list(read_hash_file(tmp_path, fmt="csv"))


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(f"md5,{MD5},Kategorie-\xc4\n".encode("latin-1"))
    with pytest.raises(InputError):
        list(read_hash_file(path))


# --- through the node: all or nothing ------------------------------------------------------------


def test_failed_import_writes_nothing(node_factory: Callable[..., Node], tmp_path: Path) -> None:
    node = node_factory()
    node.create_list("au-argos/series", label="baseline", actor="t")
    audit_before = node.store.count_rows("audit")
    good = [f"md5,{i:032x}" for i in range(50)]
    path = _write(tmp_path, "\n".join([*good, "md5,nothex", *good]) + "\n")

    with pytest.raises(InputError):
        node.import_file("au-argos/series", path, actor="t")

    row = node.get_list("au-argos/series")
    state = node.store.get_state(list_id=row.id)
    assert (state.size, state.live_count) == (0, 0)
    assert node.store.count_rows("entries") == 0
    assert node.store.count_rows("content") == 0
    assert node.store.count_rows("audit") == audit_before


def test_import_into_unknown_list_fails_before_reading(
    node_factory: Callable[..., Node], tmp_path: Path
) -> None:
    node = node_factory()
    with pytest.raises(UnknownListError):
        node.import_file("au-argos/none", tmp_path / "does-not-exist.csv", actor="t")


def test_import_adds_once_and_reports_progress(
    node_factory: Callable[..., Node], tmp_path: Path
) -> None:
    node = node_factory()
    node.create_list("au-argos/series", label="baseline", actor="t")
    values = [f"{i:064x}" for i in range(300)]
    path = _write(tmp_path, "\n".join(values + values[:10]) + "\n", "h.txt")
    seen: list[int] = []

    result = node.import_file(
        "au-argos/series",
        path,
        default_type="sha256",
        default_category="A1",
        actor="t",
        progress=seen.append,
    )

    assert (result.appended, result.skipped, result.size) == (300, 10, 300)
    assert sum(seen) == 300
    assert sorted(node.content("au-argos/series")) == sorted(("sha256", v, "A1") for v in values)
    again = node.import_file("au-argos/series", path, default_type="sha256", actor="t")
    assert (again.appended, again.skipped, again.size) == (0, 310, 300)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n  # and another\n"])
@pytest.mark.parametrize("fmt", [None, "text", "csv"])
def test_an_empty_or_comment_only_file_is_refused_as_empty(
    tmp_path: Path, text: str, fmt: str | None
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as info:
        list(read_hash_file(path, fmt=fmt, default_type="md5" if fmt == "text" else None))
    assert "--type" not in info.value.message  # not "needs --type": the file is empty


def test_a_quoted_field_over_the_csv_limit_is_a_line_error(tmp_path: Path) -> None:
    path = _write(tmp_path, f'md5,{MD5}\nmd5,"{"a" * 131_073}"\n')
    with pytest.raises(InputError) as info:
        list(read_hash_file(path))
    assert f"{path}:2" in info.value.message
    assert "\n" not in info.value.message.split(":2", 1)[1].split("\n  ")[0]
