"""Accept-Encoding negotiation and If-None-Match comparison (api/http_cache.py)."""

from __future__ import annotations

import pytest

from api.http_cache import choose_coding, etag_matches


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("identity", None),
        ("gzip", "gzip"),
        ("gzip, deflate", "gzip"),
        ("zstd", "zstd"),
        ("gzip, zstd", "zstd"),
        ("gzip;q=1, zstd;q=0.5", "gzip"),
        ("GZIP;Q=0.8", "gzip"),
        ("gzip;q=0", None),
        ("*", "zstd"),
        ("*;q=0.1, zstd;q=0", "gzip"),
        ("br", None),
        ("gzip;q=nonsense", None),
    ],
)
def test_choose_coding(header: str | None, expected: str | None) -> None:
    assert choose_coding(header) == expected


@pytest.mark.parametrize(
    ("sent", "matches"),
    [
        ('"abc"', True),
        ('W/"abc"', True),
        ('"abc-gzip"', True),
        ('W/"abc-zstd"', True),
        ('"x", "abc"', True),
        ("*", True),
        ('"abcd"', False),
        ('"ab"', False),
        ("", False),
        (None, False),
        ("abc", False),  # not a quoted entity tag
    ],
)
def test_if_none_match_uses_weak_comparison(sent: str | None, matches: bool) -> None:
    assert etag_matches(sent, '"abc"') is matches
