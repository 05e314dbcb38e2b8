"""Project VIC (VICS) import and export (node/log/vics.py, node/feeds/vics.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import node.log.vics as vics_mod
from config import load_settings
from crypto.errors import InputError
from node.datadir import init_data_dir
from node.feeds.vics import MODEL_URLS, write_vics
from node.log.vics import CategoryMap, VicsInfo, looks_like_vics, read_vics
from node.node import Node

NodeFactory = Callable[..., Node]
HASHFED = Path(sys.executable).with_name("hashfed")
V13 = "http://github.com/ICMEC/ProjectVic/DataModels/1.3.xml#Media"
V20 = "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/Default/$metadata#Media"
V20_CASES = "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/UK/$metadata#Cases"
PDNA = bytes(range(144))


def md5(i: int) -> str:
    return hashlib.md5(f"m{i}".encode()).hexdigest()  # noqa: S324 (test data)


def sha1(i: int) -> str:
    return hashlib.sha1(f"s{i}".encode()).hexdigest()  # noqa: S324 (test data)


def write(tmp_path: Path, doc: object, name: str = "set.json", bom: bool = False) -> Path:
    p = tmp_path / name
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + json.dumps(doc, indent=1).encode())
    return p


def test_version_2_hash_set_with_photodna_on_top(tmp_path: Path) -> None:
    doc = {
        "@odata.context": V20,
        "value": [
            {"MediaID": 1, "Category": 1, "MD5": md5(1).upper(), "SHA1": sha1(1).upper(),
             "MediaSize": 2835, "IsPrecategorized": True,
             "PhotoDNA": base64.b64encode(PDNA).decode()},
            {"MediaID": 2, "Category": 2, "MD5": md5(2)},
            {"MediaID": 3, "Category": 0, "MD5": md5(3)},  # non-pertinent: not imported
            {"MediaID": 4, "MD5": md5(4)},  # uncategorised: not imported
        ],
    }  # fmt: skip
    info = VicsInfo()
    items = list(read_vics(write(tmp_path, doc), info=info))
    assert items == [
        ("md5", md5(1), "CAM"),
        ("sha1", sha1(1), "CAM"),
        ("photodna", base64.b64encode(PDNA).decode(), "CAM"),
        ("md5", md5(2), "exploitive"),
    ]
    assert (info.version, info.kind, info.media, info.skipped) == ("2.0", "Media", 4, 2)


def test_version_1_3_photodna_in_alternative_hashes_and_odd_encodings(tmp_path: Path) -> None:
    doc = {
        "odata.metadata": V13,
        "value": [
            {"odata.id": f"Media(\"{md5(1)}\")", "MediaID": "1", "Category": "1",
             "MD5": md5(1).upper(), "MediaSize": "2835", "IsPrecategorized": "false",
             "VictimIdentified": "true", "RelativeFilePath": "a\\b.jpg",
             "AlternativeHashes": [
                 {"MD5": md5(1), "HashName": "SHA1", "HashValue": sha1(1)},
                 {"MD5": md5(1), "HashName": "PhotoDNA", "HashValue": PDNA.hex().upper()},
             ]},
        ],
    }  # fmt: skip
    info = VicsInfo()
    items = list(read_vics(write(tmp_path, doc, bom=True), info=info))
    assert items == [
        ("md5", md5(1), "CAM"),
        ("photodna", base64.b64encode(PDNA).decode(), "CAM"),  # ICSE hex, stored as base64
    ]
    assert info.version == "1.3"


def test_case_export_with_media_inside_cases(tmp_path: Path) -> None:
    doc = {
        "@odata.context": V20_CASES,
        "value": [
            {"CaseID": "{X}", "CaseNumber": "42", "ContactEmail": "a@b", "TotalMediaFiles": 2,
             "Media": [{"MediaID": 1, "Category": 1, "MD5": md5(1),
                        "MediaFiles": [{"FileName": "x.jpg", "FilePath": "C:\\x"}]}],
             "SourceApplicationName": "Clees4All"},
            {"CaseID": "{Y}", "Media": [{"MediaID": 1, "Category": 3, "SHA1": sha1(2)}]},
        ],
    }  # fmt: skip
    items = list(read_vics(write(tmp_path, doc)))
    assert items == [("md5", md5(1), "CAM"), ("sha1", sha1(2), "CGI")]


@pytest.mark.parametrize("version", ["2.0", "1.3"])
def test_round_trip(tmp_path: Path, version: str) -> None:
    items = [("md5", md5(i), "CAM") for i in range(50)] + [
        ("sha1", sha1(7), "exploitive"),
        ("photodna", base64.b64encode(PDNA).decode(), "CGI"),
        ("pdq", "ab" * 32, "CAM"),  # no VICS field: left out
    ]
    p = tmp_path / "out.json"
    p.write_text("".join(write_vics(items, version=version)))
    doc = json.loads(p.read_text())
    key, url = MODEL_URLS[version]
    assert doc[key] == url
    assert all(set(m) <= {"MediaID", "Category", "MD5", "SHA1", "PhotoDNA", "AlternativeHashes"}
               for m in doc["value"])  # fmt: skip
    assert looks_like_vics(p)
    assert list(read_vics(p)) == items[:-1]


def test_records_split_across_read_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vics_mod, "_CHUNK", 7)  # every token crosses a chunk boundary
    items = [("md5", md5(i), "CAM") for i in range(30)] + [("sha1", sha1(1), "CGI")]
    p = tmp_path / "small.json"
    p.write_text("".join(write_vics(items)).replace(",", ",\n  "))
    assert list(read_vics(p)) == items


def test_custom_category_table(tmp_path: Path) -> None:
    table = tmp_path / "map.json"
    table.write_text(json.dumps({"0": None, "1": "A1", "2": "B2", "5": "A1"}))
    doc = {
        "@odata.context": V20,
        "value": [{"Category": 5, "MD5": md5(1)}, {"Category": 2, "MD5": md5(2)}],
    }
    items = list(read_vics(write(tmp_path, doc), categories=CategoryMap.load(table)))
    assert items == [("md5", md5(1), "A1"), ("md5", md5(2), "B2")]
    unknown = write(tmp_path, {"@odata.context": V20, "value": [{"Category": 3, "MD5": md5(1)}]})
    with pytest.raises(InputError, match="not in the category table"):
        list(read_vics(unknown, categories=CategoryMap.load(table)))


@pytest.mark.parametrize(
    ("doc", "what"),
    [
        ({"value": []}, "before value"),
        ({"@odata.context": "http://example.com/x", "value": []}, "data model"),
        ({"@odata.context": V20, "value": [{"Category": 1, "MD5": "xyz"}]}, "MD5"),
        ({"@odata.context": V20, "value": [{"Category": 1, "MD5": md5(1), "MediaSize": "big"}]},
         "MediaSize"),
        ({"@odata.context": V20,
          "value": [{"Category": 1, "MD5": md5(1), "IsPrecategorized": "maybe"}]}, "boolean"),
        ({"@odata.context": V20, "value": [{"Category": 1, "PhotoDNA": "AAAA"}]}, "PhotoDNA"),
        ({"@odata.context": V20, "value": [{"Category": 1}]}, "without MD5"),
    ],
)  # fmt: skip
def test_bad_documents_name_the_file_and_line(tmp_path: Path, doc: object, what: str) -> None:
    p = write(tmp_path, doc)
    with pytest.raises(InputError) as info:
        list(read_vics(p))
    assert what in info.value.message
    assert str(p) in str(info.value)


def test_truncated_json_names_its_line(tmp_path: Path) -> None:
    p = tmp_path / "cut.json"
    p.write_text('{"@odata.context": "' + V20 + '",\n "value": [\n  {"Category": 1, "MD5": "')
    with pytest.raises(InputError) as info:
        list(read_vics(p))
    assert f"{p}:3" in str(info.value)


def test_import_is_one_transaction(node_factory: NodeFactory, tmp_path: Path) -> None:
    node = node_factory()
    node.create_list("au-argos/vics", label="baseline", actor="t")
    good = [{"Category": 1, "MD5": md5(i)} for i in range(20)]
    bad = write(tmp_path, {"@odata.context": V20, "value": [*good, {"Category": 1, "MD5": "no"}]})
    with pytest.raises(InputError):
        node.import_file("au-argos/vics", bad, actor="t")
    assert list(node.content("au-argos/vics")) == []
    ok = write(tmp_path, {"@odata.context": V20, "value": good}, name="ok.json")
    r = node.import_file("au-argos/vics", ok, actor="t")  # format sniffed
    assert r.appended == 20
    assert sorted(v for _t, v, _c in node.content("au-argos/vics")) == sorted(
        md5(i) for i in range(20)
    )


def synthetic(path: Path, n: int) -> None:
    """A VICS 2.0 set of ``n`` media, with the bulky fields real exports carry."""
    with path.open("w") as fh:
        fh.write('{"@odata.context":"' + V20 + '","value":[')
        for i in range(n):
            m = hashlib.md5(i.to_bytes(8, "big")).hexdigest().upper()  # noqa: S324
            s = hashlib.sha1(i.to_bytes(8, "big")).hexdigest().upper()  # noqa: S324
            fh.write(
                ("," if i else "") + f'{{"MediaID":{i + 1},"Category":1,"MD5":"{m}","SHA1":"{s}",'
                f'"MediaSize":"{1000 + i}","IsPrecategorized":"true",'
                f'"MediaFiles":[{{"FileName":"IMG_{i:08d}.jpg","FilePath":"C:\\\\case\\\\{i}"}}]}}'
            )
        fh.write("]}")


@pytest.mark.slow
def test_large_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    n = 1_000_000
    synthetic(path, n)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    count = sum(1 for _ in read_vics(path))  # streamed: nothing kept
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert count == 2 * n
    assert path.stat().st_size > 200 << 20
    assert grown_mb < 64, (
        f"peak memory grew {grown_mb:.0f} MB reading {path.stat().st_size >> 20} MB"
    )


# The interpreter and its libraries (~100 MB), SQLite's bulk-write cache
# (256 MB) and one page of the import: the file below is over 2 GB.
IMPORT_BOUND_MB = 600


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_a_multi_gb_file_imports_through_the_cli_in_bounded_memory(tmp_path: Path) -> None:
    media = 10_000_000
    data = tmp_path / "node"
    init_data_dir(data, node_id="au-argos")
    node = Node.open(load_settings(data))
    node.create_list("au-argos/vics", label="baseline", actor="t")
    node.close()
    path = tmp_path / "set.json"
    synthetic(path, media)
    size_mb = path.stat().st_size / 2**20
    assert size_mb > 2048

    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHFED_")}
    argv = [str(HASHFED), "list", "import", "au-argos/vics", str(path), "--data", str(data)]
    with (tmp_path / "out").open("w") as out, (tmp_path / "err").open("w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        try:
            # wait4: the peak memory of this one child, not of every child reaped.
            _pid, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started

    peak_mb = usage.ru_maxrss / 1024
    print(f"{media:,} media, {size_mb:,.0f} MB: {seconds:.0f} s, peak RSS {peak_mb:.0f} MB")
    assert proc.returncode == 0, (tmp_path / "err").read_text()
    assert f"{2 * media} added" in (tmp_path / "out").read_text()
    assert peak_mb < IMPORT_BOUND_MB, f"peak RSS {peak_mb:.0f} MB importing {size_mb:,.0f} MB"
