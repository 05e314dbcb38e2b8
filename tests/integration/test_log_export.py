"""`hashfed list export --log` and `hashfed verify-export`, run as real processes.

An export is checked offline with nothing but the owner's verifier key; every
mutation an attacker could make to the file is refused with exit code 4.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _nodes import run_cli

from crypto.errors import (
    MalformedExportError,
    NoTrustedSignatureError,
    RootMismatchError,
    UnknownOriginError,
)
from crypto.keys import NoteSigner, NoteVerifier, generate_signing_key
from node.log.export import verify_export

NODE_ID = "au-argos"
LIST = f"{NODE_ID}/series-7"
MD5S = [f"ab{i:030x}" for i in range(1, 6)]
PDQ = "9f4617a47a68259c1dff816d31021356fa9d20c49c87cdf579da4cad6987a5e4"
CLEAN_ENV = {"COLUMNS": "300", "NO_COLOR": "1", "TERM": "dumb"}


def _env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("HASHFED_")}, **CLEAN_ENV}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str], str]:
    """A published list with adds, a remove, a non-ASCII category and an unpublished tail."""
    root = tmp_path_factory.mktemp("export")
    data = root / "data"
    env = _env()
    run_cli("init", "--node-id", NODE_ID, data=data, env=env)
    run_cli("list", "create", LIST, "--label", "baseline", data=data, env=env)
    for v in MD5S:
        run_cli("list", "add", LIST, "md5", v, "--category", "A1", data=data, env=env)
    run_cli("list", "add", LIST, "pdq", PDQ, "--category", "Kategorie-Ä", data=data, env=env)
    run_cli("list", "remove", LIST, "md5", MD5S[2], data=data, env=env)
    run_cli("list", "publish", LIST, data=data, env=env)
    run_cli("list", "add", LIST, "md5", "f" * 32, data=data, env=env)  # not signed yet
    out = root / "series-7.ndjson"
    run_cli("list", "export", LIST, "--log", "--out", str(out), data=data, env=env)
    keys = run_cli("keys", "show", data=data, env=env).stdout
    vkey = [
        line.split()[1]
        for line in keys.splitlines()
        if line.startswith(("signing_key", "cosigner_key"))
    ]
    show = run_cli("list", "show", LIST, data=data, env=env).stdout
    return data, out, vkey, show


def _verify(lines: list[bytes], vkey: list[str]) -> object:
    return verify_export(lines, [NoteVerifier.from_verifier_key(k) for k in vkey])


def _keys(vkey: list[str]) -> list[str]:
    return [arg for k in vkey for arg in ("--key", k)]


def test_list_show_prints_the_signed_note(exported: tuple[Path, Path, list[str], str]) -> None:
    _data, out, _vkey, show = exported
    note = json.loads(out.read_bytes().splitlines()[0])["checkpoint"]
    assert note in show
    assert f"hashfed:{LIST}\n7\n" in show


def test_export_holds_every_signed_entry_and_verifies_offline(
    exported: tuple[Path, Path, list[str], str],
) -> None:
    _data, out, vkey, _show = exported
    lines = out.read_bytes().splitlines(keepends=True)
    header = json.loads(lines[0])
    assert (header["list"], header["start"], header["size"]) == (LIST, 0, 7)
    entries = [json.loads(line) for line in lines[1:]]
    assert [(e["seq"], e["op"]) for e in entries] == [(i, "add") for i in range(6)] + [
        (6, "remove")
    ]
    assert entries[5]["category"] == "Kategorie-Ä"
    assert b"\\u00c4" in lines[6]  # non-ASCII is escaped in the canonical line
    r = run_cli("verify-export", str(out), *_keys(vkey), env=_env())
    assert f"ok  {LIST}  entries 7 (6 adds, 1 removes)" in r.stdout


def _mutated(out: Path, tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "mutated.ndjson"
    path.write_bytes(b"".join(lines))
    return path


def test_verify_export_refuses_a_changed_value_with_exit_4(
    exported: tuple[Path, Path, list[str], str], tmp_path: Path
) -> None:
    _data, out, vkey, _show = exported
    lines = out.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(MD5S[1].encode(), b"e" * 32)
    with pytest.raises(RootMismatchError):
        _verify(lines, vkey)
    r = run_cli(
        "verify-export", str(_mutated(out, tmp_path, lines)), *_keys(vkey), env=_env(), check=False
    )
    assert r.returncode == 4
    assert "Traceback" not in r.stderr
    assert "e" * 32 not in r.stderr  # no hash value in an error


def test_verify_export_refuses_a_key_other_than_the_owners(
    exported: tuple[Path, Path, list[str], str],
) -> None:
    _data, out, _vkey, _show = exported
    impostor = NoteSigner(NODE_ID, generate_signing_key()).verifier_key
    with pytest.raises(NoTrustedSignatureError):
        _verify(out.read_bytes().splitlines(keepends=True), [impostor, *_vkey[1:]])
    r = run_cli("verify-export", str(out), "--key", impostor, env=_env(), check=False)
    assert r.returncode == 4


@pytest.mark.parametrize(
    "mutation",
    [
        "dropped-last-entry",
        "extra-entry",
        "swapped-entries",
        "renumbered-seq",
        "non-canonical-spacing",
        "uppercase-value",
        "unescaped-category",
        "other-list-name",
        "header-size-differs",
    ],
)
def test_verify_export_refuses_a_mutated_file(
    exported: tuple[Path, Path, list[str], str], mutation: str
) -> None:
    _data, out, vkey, _show = exported
    lines = out.read_bytes().splitlines(keepends=True)
    if mutation == "dropped-last-entry":
        lines.pop()
    elif mutation == "extra-entry":
        lines.append(lines[-1].replace(b'"seq":6', b'"seq":7'))
    elif mutation == "swapped-entries":
        lines[1], lines[2] = lines[2], lines[1]
    elif mutation == "renumbered-seq":
        lines[3] = lines[3].replace(b'"seq":2', b'"seq":9')
    elif mutation == "non-canonical-spacing":
        lines[1] = lines[1].replace(b'"seq":0', b'"seq": 0')
    elif mutation == "uppercase-value":
        lines[1] = lines[1].replace(MD5S[0].encode(), MD5S[0].upper().encode())
    elif mutation == "unescaped-category":
        lines[6] = lines[6].replace(b"\\u00c4", "Ä".encode())
    elif mutation == "other-list-name":
        lines[0] = lines[0].replace(LIST.encode(), f"{NODE_ID}/other".encode(), 1)
    elif mutation == "header-size-differs":
        lines[0] = lines[0].replace(b'"size":7', b'"size":6')
    want: tuple[type[Exception], ...] = (MalformedExportError, RootMismatchError)
    if mutation == "other-list-name":
        want = (UnknownOriginError,)
    with pytest.raises(want):
        _verify(lines, vkey)


def test_export_log_of_an_unpublished_list_is_an_input_error(
    exported: tuple[Path, Path, list[str], str],
) -> None:
    data = exported[0]
    run_cli("list", "create", f"{NODE_ID}/draft", "--label", "baseline", data=data, env=_env())
    r = run_cli("list", "export", f"{NODE_ID}/draft", "--log", data=data, env=_env(), check=False)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
