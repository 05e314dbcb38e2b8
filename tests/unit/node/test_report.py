"""node.local.report: the self-contained HTML report and the CSV, from hand-made scan results."""

from __future__ import annotations

import base64
import csv
import hashlib
import os
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from node.local import report as report_mod
from node.local.hashing import FileHashes, Kind
from node.local.matcher import Hit
from node.local.report import (
    CSV_FIELDS,
    group_hits,
    render_html_report,
    visible_path,
    write_csv_report,
    write_html_report,
)
from node.local.results import FileProblem, FileResult, ScanResult

HOSTILE = '<script>alert("x")</script>&amp;'


def fh(
    path: str,
    n: int,
    *,
    kind: Kind = "other",
    quality: int | None = None,
    error: str | None = None,
    hashed: bool = True,
) -> FileHashes:
    """A FileHashes with distinct, recognisable fake values."""
    hexd = f"{n:02x}"
    if not hashed:
        return FileHashes(path, 0, "", "", "", None, None, kind, error)
    return FileHashes(
        path,
        1000 * n,
        hexd * 16,
        hexd * 20,
        hexd * 32,
        (hexd * 32) if quality is not None else None,
        quality,
        kind,
        error,
    )


def sample_result() -> ScanResult:
    surrogate = os.fsdecode(b"/case/bad\xffname.jpg")
    files = (
        FileResult(
            fh("/case/a.jpg", 1, kind="image", quality=100),
            (
                Hit("alpha", "node-a", "A1", "sha256", 0),
                Hit("alpha", "node-a", "A1", "md5", 0),
                Hit("beta", "node-b", "B2", "pdq", 12),
            ),
        ),
        FileResult(
            fh(f"/case/{HOSTILE}.jpg", 2, kind="image", quality=90),
            (Hit(f"list{HOSTILE}", "node-a", f"A1{HOSTILE}", "pdq", 20),),
        ),
        FileResult(
            fh(surrogate, 3, kind="image", quality=80), (Hit("alpha", "o", "A1", "md5", 0),)
        ),
        FileResult(
            fh("/case/cut.jpg", 4, kind="image", error="image data truncated"),
            (Hit("gamma", "node-c", "=1+1", "sha1", 0),),
        ),
        FileResult(fh("/case/notes.txt", 5)),
        FileResult(fh("/case/flat.png", 6, kind="image", quality=10)),
        FileResult(fh("/case/clip.mp4", 7, kind="video")),
        FileResult(fh("/case/photo\u202egpj.exe", 8)),
    )
    errors = (
        FileProblem("/case/cut.jpg", "image data truncated", hashed=True),
        FileProblem("/case/locked.bin", f"permission denied {HOSTILE}"),
        FileProblem("/case/dir", "cannot list or stat: permission denied"),
    )
    skipped = (
        FileProblem("/case/link", "symbolic link, not followed"),
        FileProblem("/case/pipe", "named pipe (fifo), not opened"),
    )
    return ScanResult(
        root="/case",
        started="2026-01-02T03:04:05+00:00",
        finished="2026-01-02T03:14:05+00:00",
        files=files,
        errors=errors,
        skipped=skipped,
        max_distance=31,
        matcher=f"https://node.example {HOSTILE}",
        hashed_now=8,
        bytes_total=36000,
        seconds=600.0,
    )


class Collector(HTMLParser):
    """Collects tags, attributes, text per element class, and table rows."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.cards: dict[str, int] = {}
        self._section = ""
        self._in: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._card: list[str] = []
        self._card_field = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        self._in.append(tag)
        if tag == "section":
            self._section = a.get("id") or ""
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "div" and a.get("class") in ("n", "l"):
            self._card_field = a["class"] or ""

    def handle_endtag(self, tag: str) -> None:
        if self._in and self._in[-1] == tag:
            self._in.pop()
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables.setdefault(self._section, []).append(self._row)
            self._row = None
        elif tag == "div" and self._card_field:
            self._card_field = ""

    def handle_data(self, data: str) -> None:
        current = self._in[-1] if self._in else ""
        if current == "script":
            self.scripts.append(data)
            return
        if current == "style":
            self.styles.append(data)
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._card_field == "n":
            self._card = [data]
        elif self._card_field == "l":
            self.cards[data] = int(self._card[0].replace(",", ""))


def parse(html_text: str) -> Collector:
    c = Collector()
    c.feed(html_text)
    c.close()
    return c


def body(c: Collector, section: str) -> list[list[str]]:
    return c.tables.get(section, [])[1:]  # without the header row


# --- HTML ------------------------------------------------------------------------------------


def test_html_totals_hits_unknown_and_errors(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    write_html_report(sample_result(), out)
    c = parse(out.read_text(encoding="utf-8"))

    assert c.cards == {
        "Files hashed": 8,
        "Known files": 4,
        "Unknown files": 4,
        "Errors": 3,
        "Skipped entries": 2,
        "Low-quality PDQ": 1,
    }
    categories = {row[0]: int(row[1]) for row in body(c, "categories")}
    assert categories == {"A1": 2, f"A1{HOSTILE}": 1, "=1+1": 1, "B2": 1}

    hits = body(c, "hits")
    assert len(hits) == 5  # a.jpg on two lists (md5+sha256 merged), and one row each for 3 more
    a_rows = [r for r in hits if r[0] == "/case/a.jpg"]
    assert [(r[3], r[5], r[6], r[7]) for r in a_rows] == [
        ("alpha", "A1", "sha256md5", "0"),
        ("beta", "B2", "pdq", "12"),
    ]
    unknown_text = " ".join(" ".join(c.text).split())
    assert "4 files matched no list" in unknown_text
    assert "1 image with a PDQ quality below 50" in unknown_text
    assert "1 video file: matched on exact hashes" in unknown_text

    errors = body(c, "errors")
    assert [r[0] for r in errors] == ["/case/cut.jpg", "/case/locked.bin", "/case/dir"]
    assert errors[0][2] == "yes"
    assert errors[1][1] == f"permission denied {HOSTILE}"  # shown as text, not markup
    assert [r[0] for r in body(c, "skipped")] == ["/case/link", "/case/pipe"]


def test_html_has_no_image_no_external_resource_and_escapes_everything() -> None:
    text = render_html_report(sample_result())
    c = parse(text)
    tags = [t for t, _ in c.tags]
    for forbidden in (
        "img",
        "picture",
        "video",
        "audio",
        "source",
        "iframe",
        "object",
        "embed",
        "link",
        "svg",
        "canvas",
        "form",
        "base",
    ):
        assert forbidden not in tags
    assert tags.count("script") == 1
    assert tags.count("style") == 1
    for _, attrs in c.tags:
        for name in ("src", "href", "srcset", "action", "background", "poster"):
            assert name not in attrs
        assert not any(k.startswith("on") for k in attrs)
    assert "data:image" not in text
    assert "url(" not in text
    assert "<script>alert" not in text
    joined = "".join(c.text)
    assert f"/case/{HOSTILE}.jpg" in joined  # the hostile name reads as text
    assert f"list{HOSTILE}" in joined


def test_html_content_security_policy_allows_exactly_the_inline_blocks() -> None:
    c = parse(render_html_report(sample_result()))
    [csp] = [a["content"] for t, a in c.tags if t == "meta" and a.get("http-equiv")]
    assert csp is not None
    assert "default-src 'none'" in csp
    assert "img-src 'none'" in csp

    def sha(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    [script] = c.scripts
    [style] = c.styles
    assert re.search(r"script-src ([^;]+)", csp)[1] == sha(script)  # type: ignore[index]
    assert re.search(r"style-src ([^;]+)", csp)[1] == sha(style)  # type: ignore[index]


def test_html_shows_hostile_path_characters_visibly() -> None:
    c = parse(render_html_report(sample_result()))
    joined = "".join(c.text)
    assert "/case/bad\\xffname.jpg" in joined
    assert visible_path("/case/photo\u202egpj.exe") == "/case/photo\\u202egpj.exe"
    assert visible_path("a\nb") == "a\\x0ab"


def test_html_report_of_an_empty_scan(tmp_path: Path) -> None:
    empty = ScanResult(
        root="/empty",
        started="2026-01-01T00:00:00+00:00",
        finished="2026-01-01T00:00:01+00:00",
        files=(),
        errors=(),
        skipped=(),
        max_distance=31,
    )
    c = parse(render_html_report(empty))
    assert c.cards["Known files"] == 0
    joined = " ".join(c.text)
    assert "No hits." in joined
    assert "No file matched any list." in joined


def test_html_caps_a_long_skipped_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_mod, "MAX_SKIPPED_ROWS", 3)
    result = sample_result()
    many = tuple(FileProblem(f"/case/l{i}", "symbolic link, not followed") for i in range(10))
    capped = ScanResult(**{**result.__dict__, "skipped": many})
    c = parse(render_html_report(capped))
    assert len(body(c, "skipped")) == 3
    assert "7 more skipped entries" in " ".join(c.text)
    assert c.cards["Skipped entries"] == 10


def test_group_hits_merges_hash_types_and_keeps_the_smallest_distance() -> None:
    groups = group_hits(
        [
            Hit("l", "o", "A1", "md5", 0),
            Hit("l", "o", "A1", "pdq", 9),
            Hit("l", "o", "A1", "sha256", 0),
            Hit("m", "o", "B", "pdq", 30),
        ]
    )
    assert [(g.list_name, g.matched_on, g.distance) for g in groups] == [
        ("l", ("sha256", "md5", "pdq"), 0),
        ("m", ("pdq",), 30),
    ]


# --- CSV -------------------------------------------------------------------------------------


def test_csv_has_every_file_and_guards_formulas(tmp_path: Path) -> None:
    out = tmp_path / "report.csv"
    write_csv_report(sample_result(), out)
    with out.open(encoding="utf-8", newline="") as fh_:
        rows = list(csv.DictReader(fh_))
    assert tuple(rows[0]) == CSV_FIELDS
    statuses = [r["status"] for r in rows]
    assert statuses.count("known") == 5  # one row per list entry group
    assert statuses.count("unknown") == 4
    assert statuses.count("error") == 2  # cut.jpg was hashed: it is a known row with a note
    assert statuses.count("skipped") == 2

    cut = next(r for r in rows if r["path"] == "/case/cut.jpg")
    assert cut["category"] == "'=1+1"  # a spreadsheet must not evaluate it
    assert cut["note"] == "image data truncated"
    a = [r for r in rows if r["path"] == "/case/a.jpg"]
    assert a[0]["matched_on"] == "sha256 md5"
    assert a[0]["sha256"] == "01" * 32
    assert a[1]["distance"] == "12"
    flat = next(r for r in rows if r["path"] == "/case/flat.png")
    assert flat["pdq_used"] == "no"
    assert "PDQ quality 10 < 50" in flat["note"]
    clip = next(r for r in rows if r["path"] == "/case/clip.mp4")
    assert "video: exact hashes only" in clip["note"]
    assert any(r["path"] == "/case/bad\\xffname.jpg" for r in rows)


# --- PDQ variants ----------------------------------------------------------------------------


def _oriented_result() -> ScanResult:
    photo = replace(
        fh("/case/phone.jpg", 9, kind="image", quality=100),
        pdq_oriented="0a" * 32,
        pdq_oriented_quality=100,
    )
    hits = (
        Hit("l", "o", "A1", "pdq", 4, "oriented"),
        Hit("m", "o", "B", "pdq", 7, "as_stored"),
    )
    return ScanResult(
        root="/case",
        started="2026-01-02T03:04:05+00:00",
        finished="2026-01-02T03:14:05+00:00",
        files=(FileResult(photo, hits), FileResult(fh("/case/a.bin", 1))),
        errors=(),
        skipped=(),
        max_distance=31,
    )


def test_group_hits_keeps_the_variant_of_the_closest_pdq_hit() -> None:
    groups = group_hits(
        [
            Hit("l", "o", "A1", "pdq", 9, "oriented"),
            Hit("l", "o", "A1", "pdq", 9, "as_stored"),  # a tie: as stored wins
            Hit("m", "o", "B", "pdq", 3, "oriented"),
            Hit("m", "o", "B", "pdq", 8, "as_stored"),
            Hit("n", "o", "C", "md5", 0),
        ]
    )
    assert [(g.list_name, g.distance, g.variant) for g in groups] == [
        ("n", 0, None),
        ("m", 3, "oriented"),
        ("l", 9, "as_stored"),
    ]


def test_csv_says_which_pdq_variant_matched(tmp_path: Path) -> None:
    out = tmp_path / "report.csv"
    write_csv_report(_oriented_result(), out)
    with out.open(encoding="utf-8", newline="") as fh_:
        rows = list(csv.DictReader(fh_))
    assert tuple(rows[0])[-2:] == ("pdq_oriented", "variant")  # appended: old columns keep place
    phone = [r for r in rows if r["path"] == "/case/phone.jpg"]
    assert [(r["list"], r["variant"]) for r in phone] == [("l", "oriented"), ("m", "as_stored")]
    assert {r["pdq_oriented"] for r in phone} == {"0a" * 32}
    other = next(r for r in rows if r["path"] == "/case/a.bin")
    assert (other["pdq_oriented"], other["variant"]) == ("", "")


def test_html_says_which_pdq_variant_matched() -> None:
    c = parse(render_html_report(_oriented_result()))
    matched = [row[6] for row in body(c, "hits")]
    assert matched == ["pdq (oriented)", "pdq (as stored)"]
