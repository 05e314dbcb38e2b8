"""Scan reports: one self-contained HTML file, and a CSV with a row per file.

The HTML report loads nothing from outside: its CSS and the few lines of
JavaScript that sort the tables are inline, and a Content-Security-Policy
allows exactly those two blocks (by their SHA-256) and nothing else, so even
a file name crafted to break out of its cell could not run or load anything.
Every value is escaped with :func:`html.escape`. No thumbnail, no image
content of any kind is ever written: files are named by path and hashes.

The CSV has every file, known, unknown, unreadable and skipped. Cells that a
spreadsheet would run as a formula are prefixed with an apostrophe.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import os
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from node.local.matcher import ORIENTED, Hit
from node.local.results import FileProblem, FileResult, ScanResult

CSV_FIELDS = (
    "status",
    "path",
    "kind",
    "size",
    "md5",
    "sha1",
    "sha256",
    "pdq",
    "pdq_quality",
    "pdq_used",
    "list",
    "owner",
    "category",
    "matched_on",
    "distance",
    "note",
    "pdq_oriented",
    "variant",
)
#: Skipped entries listed in the HTML report; the CSV has them all.
MAX_SKIPPED_ROWS = 2000


# --- shared helpers --------------------------------------------------------------------------


def printable_path(path: str) -> str:
    """A path as text that can be written as UTF-8: undecodable bytes as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def visible_path(path: str) -> str:
    """A path for display: control and bidi-override characters made visible.

    A seized drive may hold names built to mislead (a right-to-left override
    that reverses an extension, a newline that fakes a second row).
    """
    out = []
    for ch in printable_path(path):
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(f"\\u{ord(ch):04x}" if ord(ch) > 0xFF else f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True)
class HitGroup:
    """The hits of one file on one list entry owner/category, merged across hash types.

    ``variant`` is that of the closest PDQ hit (as stored preferred on a tie),
    None when no PDQ hash matched.
    """

    list_name: str
    owner: str
    category: str
    matched_on: tuple[str, ...]
    distance: int
    variant: str | None = None


_TYPE_ORDER = {"sha256": 0, "sha1": 1, "md5": 2, "pdq": 3}


def group_hits(hits: Iterable[Hit]) -> list[HitGroup]:
    """Merge a file's hits per (list, owner, category); smallest distance kept."""
    groups: dict[tuple[str, str, str], list[Hit]] = {}
    for hit in hits:
        groups.setdefault((hit.list_name, hit.owner, hit.category), []).append(hit)
    out = []
    for (list_name, owner, category), items in groups.items():
        types = sorted({h.hash_type for h in items}, key=lambda t: (_TYPE_ORDER.get(t, 9), t))
        pdq = [h for h in items if h.variant is not None]
        best = min(pdq, key=lambda h: (h.distance, h.variant == ORIENTED)) if pdq else None
        distance = min(h.distance for h in items)
        variant = best.variant if best else None
        out.append(HitGroup(list_name, owner, category, tuple(types), distance, variant))
    return sorted(out, key=lambda g: (g.distance, g.list_name, g.owner, g.category))


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def _when(iso: str) -> str:
    """``2026-01-02T03:04:05+00:00`` as ``2026-01-02 03:04:05 UTC``."""
    text = iso.replace("T", " ")
    return text[:-6] + " UTC" if text.endswith("+00:00") else text


def _plural(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def _duration(seconds: float) -> str:
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


# --- CSV -------------------------------------------------------------------------------------


def _csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    text = printable_path(text)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        text = "'" + text  # a spreadsheet would run it as a formula
    return text


def _csv_rows(result: ScanResult) -> Iterator[dict[str, object]]:
    def base(f: FileResult, status: str) -> dict[str, object]:
        h = f.hashes
        return {
            "status": status,
            "path": h.path,
            "kind": h.kind,
            "size": h.size,
            "md5": h.md5,
            "sha1": h.sha1,
            "sha256": h.sha256,
            "pdq": h.pdq or "",
            "pdq_quality": "" if h.pdq_quality is None else h.pdq_quality,
            "pdq_used": "yes" if h.pdq_usable else "no",
            "note": _file_note(f, result.pdq_min_quality),
            "pdq_oriented": h.pdq_oriented or "",
        }

    for f in result.known:
        for g in group_hits(f.hits):
            row = base(f, "known")
            row.update(
                list=g.list_name,
                owner=g.owner,
                category=g.category,
                matched_on=" ".join(g.matched_on),
                distance=g.distance,
                variant=g.variant or "",
            )
            yield row
    for f in result.unknown:
        yield base(f, "unknown")
    for p in result.errors:
        if not p.hashed:
            yield {"status": "error", "path": p.path, "note": p.reason}
    for p in result.skipped:
        yield {"status": "skipped", "path": p.path, "note": p.reason}


def _file_note(f: FileResult, min_quality: int) -> str:
    notes = []
    h = f.hashes
    if f.pdq_low_quality:
        notes.append(f"PDQ quality {h.pdq_quality} < {min_quality}: exact hashes only")
    if h.kind == "video":
        notes.append("video: exact hashes only")
    if h.error:
        notes.append(h.error)
    return "; ".join(notes)


def write_csv_report(result: ScanResult, path: Path) -> None:
    """Write one CSV row per file (per list entry for known files), UTF-8."""
    with Path(path).open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="raise")
        writer.writeheader()
        for row in _csv_rows(result):
            writer.writerow({k: _csv_cell(row.get(k)) for k in CSV_FIELDS})


# --- HTML ------------------------------------------------------------------------------------

_CSS = """
:root{--ink:#1b2430;--muted:#5b6676;--line:#d5dae1;--bg:#f4f6f8;--panel:#fff;
--head:#17212e;--accent:#8a1c1c;--ok:#1f5f3a;--warn:#8a5a00}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
font:13px/1.45 "Segoe UI",system-ui,-apple-system,"Helvetica Neue",Arial,sans-serif}
.banner{background:var(--accent);color:#fff;text-align:center;font-weight:700;
letter-spacing:.08em;font-size:11px;padding:4px 8px;text-transform:uppercase}
header{background:var(--head);color:#e9edf2;padding:14px 28px;display:flex;
justify-content:space-between;align-items:flex-end;gap:24px}
header h1{margin:0;font-size:19px;font-weight:600;letter-spacing:.02em}
header .sub{color:#a9b4c2;font-size:12px}
main{padding:18px 28px 40px;max-width:1600px}
section{background:var(--panel);border:1px solid var(--line);border-radius:3px;
margin:0 0 16px;padding:14px 18px}
h2{font-size:13px;text-transform:uppercase;letter-spacing:.07em;color:var(--muted);
margin:0 0 10px;border-bottom:1px solid var(--line);padding-bottom:6px}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:3px 18px;margin:0}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0;word-break:break-all}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px}
.card{border:1px solid var(--line);border-left:4px solid var(--muted);padding:8px 12px;
background:#fafbfc}
.card .n{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}
.card .l{color:var(--muted);font-size:11px;text-transform:uppercase;letter-spacing:.06em}
.card.hit{border-left-color:var(--accent)}.card.hit .n{color:var(--accent)}
.card.err{border-left-color:var(--warn)}.card.ok{border-left-color:var(--ok)}
table{border-collapse:collapse;width:100%;font-size:12px}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600;white-space:nowrap;position:sticky;top:0}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th::after{content:" \\2195";color:#9aa4b1;font-size:10px}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2";color:var(--ink)}
table.sortable th[aria-sort=descending]::after{content:" \\25BC";color:var(--ink)}
tbody tr:nth-child(even){background:#fafbfc}tbody tr:hover{background:#fff6e5}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.mono,td.path{font-family:"Cascadia Mono",Consolas,"DejaVu Sans Mono",monospace;font-size:11.5px}
td.path{word-break:break-all;min-width:260px}
td.hash{font-family:Consolas,"DejaVu Sans Mono",monospace;font-size:11px;word-break:break-all;
color:#38414d}
.tag{display:inline-block;border:1px solid var(--line);border-radius:2px;padding:0 5px;
font-size:11px;background:#f1f3f5;margin:0 3px 2px 0}
.tag.cat{border-color:#c99;background:#fbeeee;color:var(--accent);font-weight:600}
.note{color:var(--muted);font-size:12px;margin:8px 0 0}
.none{color:var(--muted);font-style:italic}
footer{color:var(--muted);font-size:11px;padding:0 28px 24px}
@media print{body{background:#fff}header{background:#fff;color:#000;border-bottom:2px solid #000}
header .sub{color:#333}section{border:0;padding:0;page-break-inside:auto}
th{position:static}.banner{background:#fff;color:#000;border:2px solid #000}}
"""

_JS = """
document.querySelectorAll("table.sortable").forEach(function(t){
var hs=t.tHead.rows[0].cells;
Array.prototype.forEach.call(hs,function(th,i){th.tabIndex=0;
var go=function(){var b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows),
num=th.classList.contains("num"),asc=th.getAttribute("aria-sort")!=="ascending";
Array.prototype.forEach.call(hs,function(h){h.removeAttribute("aria-sort");});
th.setAttribute("aria-sort",asc?"ascending":"descending");
rows.sort(function(x,y){var a=x.cells[i],c=y.cells[i];
a=a.hasAttribute("data-v")?a.getAttribute("data-v"):a.textContent;
c=c.hasAttribute("data-v")?c.getAttribute("data-v"):c.textContent;
var r=num?(parseFloat(a)||0)-(parseFloat(c)||0):a.localeCompare(c);return asc?r:-r;});
rows.forEach(function(r){b.appendChild(r);});};
th.addEventListener("click",go);
th.addEventListener("keydown",function(e){if(e.key==="Enter"){go();}});});});
"""


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


_CSP = (
    "default-src 'none'; img-src 'none'; media-src 'none'; object-src 'none'; "
    f"style-src {_csp_hash(_CSS)}; script-src {_csp_hash(_JS)}; "
    "base-uri 'none'; form-action 'none'"
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _path_cell(path: str) -> str:
    return f'<td class="path">{_e(visible_path(path))}</td>'


def _num_cell(value: int, text: str | None = None) -> str:
    shown = f"{value:,}" if text is None else text
    return f'<td class="num" data-v="{value}">{_e(shown)}</td>'


def _table(
    headers: Iterable[tuple[str, bool]], rows: Iterable[str], *, sortable: bool = True
) -> str:
    head = "".join(
        f'<th scope="col" class="num">{_e(h)}</th>' if num else f'<th scope="col">{_e(h)}</th>'
        for h, num in headers
    )
    cls = ' class="sortable"' if sortable else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _card(label: str, value: int, cls: str = "") -> str:
    return (
        f'<div class="card {cls}"><div class="n">{value:,}</div>'
        f'<div class="l">{_e(label)}</div></div>'
    )


def _hit_rows(result: ScanResult) -> Iterator[str]:
    for f in result.known:
        h = f.hashes
        pdq = "" if h.pdq_quality is None else f"q={h.pdq_quality}"
        for g in group_hits(f.hits):
            matched = "".join(
                f'<span class="tag">{_e(_type_label(t, g.variant))}</span>' for t in g.matched_on
            )
            yield (
                "<tr>"
                + _path_cell(h.path)
                + f"<td>{_e(h.kind)}</td>"
                + _num_cell(h.size, _human_size(h.size))
                + f"<td>{_e(g.list_name)}</td><td>{_e(g.owner)}</td>"
                + f'<td><span class="tag cat">{_e(g.category or "uncategorised")}</span></td>'
                + f"<td>{matched}</td>"
                + _num_cell(g.distance)
                + f'<td class="hash">{_e(h.sha256)}</td>'
                + f'<td class="hash">{_e(h.md5)}</td>'
                + _num_cell(h.pdq_quality if h.pdq_quality is not None else -1, pdq)
                + "</tr>"
            )


def _type_label(hash_type: str, variant: str | None) -> str:
    if hash_type != "pdq" or variant is None:
        return hash_type
    return "pdq (oriented)" if variant == ORIENTED else "pdq (as stored)"


def _problem_rows(problems: Iterable[FileProblem], *, with_hashed: bool) -> Iterator[str]:
    for p in problems:
        extra = f"<td>{'yes' if p.hashed else 'no'}</td>" if with_hashed else ""
        yield f"<tr>{_path_cell(p.path)}<td>{_e(p.reason)}</td>{extra}</tr>"


def render_html_report(result: ScanResult) -> str:
    """The whole report as one HTML document (a string)."""
    known = result.known
    unknown = result.unknown
    low_quality = result.low_quality
    kinds = result.counts_by_kind()
    videos = kinds.get("video", 0)
    hit_count = sum(len(group_hits(f.hits)) for f in known)
    examined = len(result.files) + sum(1 for p in result.errors if not p.hashed)

    meta = [
        ("Folder scanned", visible_path(result.root)),
        ("Started", _when(result.started)),
        ("Finished", _when(result.finished)),
        ("Duration", _duration(result.seconds)),
        ("Matched against", result.matcher or "-"),
        ("Files hashed in this run", f"{result.hashed_now:,}"),
        ("Taken from the resume state", f"{result.reused:,}"),
        ("Data hashed", _human_size(result.bytes_total)),
        ("PDQ near-match threshold", f"distance \u2264 {result.max_distance} of 256 bits"),
        ("PDQ minimum quality", f"{result.pdq_min_quality} (lower: exact hashes only)"),
    ]
    meta_html = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in meta)

    cards = "".join(
        [
            _card("Files hashed", len(result.files), "ok"),
            _card("Known files", len(known), "hit"),
            _card("Unknown files", len(unknown)),
            _card("Errors", len(result.errors), "err"),
            _card("Skipped entries", len(result.skipped)),
            _card("Low-quality PDQ", len(low_quality)),
        ]
    )

    totals = result.totals_by_category()
    if totals:
        cat_rows = (
            f'<tr><td><span class="tag cat">{_e(c or "uncategorised")}</span></td>'
            f"{_num_cell(n)}</tr>"
            for c, n in totals.items()
        )
        cat_html = _table([("Category", False), ("Known files", True)], cat_rows)
    else:
        cat_html = '<p class="none">No file matched any list.</p>'

    if known:
        hits_html = _table(
            [
                ("Path", False),
                ("Kind", False),
                ("Size", True),
                ("List", False),
                ("Owner", False),
                ("Category", False),
                ("Matched on", False),
                ("Distance", True),
                ("SHA-256", False),
                ("MD5", False),
                ("PDQ quality", True),
            ],
            _hit_rows(result),
        )
    else:
        hits_html = '<p class="none">No hits.</p>'

    kind_text = ", ".join(
        f"{n:,} {k}" for k, n in sorted(Counter(f.hashes.kind for f in unknown).items())
    )
    unknown_notes = [
        f"<p><strong>{len(unknown):,}</strong> {'file' if len(unknown) == 1 else 'files'} "
        "matched no list"
        + (f" ({_e(kind_text)})" if kind_text else "")
        + ". The CSV report lists every file with its hashes.</p>"
    ]
    if low_quality:
        unknown_notes.append(
            f'<p class="note">{_plural(len(low_quality), "image", "images")} with a PDQ '
            f"quality below {result.pdq_min_quality} (too little detail for a reliable "
            "perceptual hash): PDQ not used for near matching, matched on exact hashes "
            "only.</p>"
        )
    if videos:
        unknown_notes.append(
            f'<p class="note">{_plural(videos, "video file", "video files")}: matched on '
            "exact hashes (MD5, SHA-1, SHA-256) only; no video perceptual hash is computed.</p>"
        )

    if result.errors:
        errors_html = _table(
            [("Path", False), ("Reason", False), ("Exact hashes matched", False)],
            _problem_rows(result.errors, with_hashed=True),
        )
    else:
        errors_html = '<p class="none">Every file was read and decoded.</p>'

    skipped = result.skipped
    if skipped:
        skipped_html = _table(
            [("Path", False), ("Reason", False)],
            _problem_rows(skipped[:MAX_SKIPPED_ROWS], with_hashed=False),
        )
        if len(skipped) > MAX_SKIPPED_ROWS:
            skipped_html += (
                f'<p class="note">{len(skipped) - MAX_SKIPPED_ROWS:,} more skipped entries '
                "are listed in the CSV report.</p>"
            )
    else:
        skipped_html = '<p class="none">None.</p>'

    title = f"hashfed scan report \u2014 {visible_path(result.root)}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex,nofollow">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<div class="banner">Restricted \u2014 contains hashes and file paths of seized material.
Handle under your agency's evidence procedures.</div>
<header>
<div><h1>hashfed \u00b7 Scan report</h1>
<div class="sub">Local hash triage: only hashes were sent for matching.
This report contains no image content.</div></div>
<div class="sub">Generated {_e(_when(result.finished))}</div>
</header>
<main>
<section id="summary"><h2>Summary</h2><div class="cards">{cards}</div></section>
<section id="case"><h2>Scan details</h2><dl class="meta">{meta_html}</dl>
<p class="note">{examined:,} files examined, {hit_count:,} list hits on
{len(known):,} known files.</p></section>
<section id="categories"><h2>Known files by category</h2>{cat_html}</section>
<section id="hits"><h2>Hits ({hit_count:,})</h2>{hits_html}
<p class="note">Distance is the PDQ Hamming distance (0 for an identical perceptual hash);
exact matches on MD5, SHA-1 or SHA-256 have distance 0. PDQ hashes the pixels as stored,
as Meta's tools do; "pdq (oriented)" matched the pixels with the EXIF orientation applied.</p>
</section>
<section id="unknown"><h2>Unknown files</h2>{"".join(unknown_notes)}</section>
<section id="errors"><h2>Errors ({len(result.errors):,})</h2>{errors_html}</section>
<section id="skipped"><h2>Skipped entries ({len(skipped):,})</h2>
<p class="note">Symbolic links are not followed and special files (pipes, sockets, devices)
are never opened.</p>{skipped_html}</section>
</main>
<footer>hashfed \u2014 self-contained report: no external resources, no scripts beyond
table sorting, no image content.</footer>
<script>{_JS}</script>
</body>
</html>
"""


def write_html_report(result: ScanResult, path: Path) -> None:
    """Write the self-contained HTML report (UTF-8)."""
    Path(path).write_text(render_html_report(result), encoding="utf-8")
