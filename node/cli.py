"""The ``hashfed`` command. Errors are presented here, decided elsewhere.

Every command takes ``--data DIR`` (default ``$HASHFED_DATA`` or ``./data``).
:func:`main` maps the error hierarchy to exit codes in one place.

Every command module is imported at each start (typer builds the whole
command tree), so the command modules import the node, the store and the
settings inside the commands that use them: ``hashfed --help`` then loads no
database layer, and each command only what it needs.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from crypto.errors import (
    AuthError,
    ConfigError,
    DatabaseUnavailableError,
    HashfedError,
    InputError,
    PeerAuthError,
    PeerError,
    StorageFullError,
    StoreError,
    VerificationError,
)
from node import cli_help  # noqa: F401  (help without type tags)
from node.cli_output import JsonOpt, print_json, print_table, progress_bar
from node.log.hashes import HASH_TYPES, MAX_CATEGORY_LENGTH

if TYPE_CHECKING:
    from node.node import Node

app = typer.Typer(
    help="hashfed: a node of a federation that shares signed hash lists.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
list_app = typer.Typer(help="Own, publish and inspect hash lists.", no_args_is_help=True)
keys_app = typer.Typer(help="This node's keys.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.add_typer(list_app, name="list")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

DataOpt = Annotated[
    Path,
    typer.Option("--data", envvar="HASHFED_DATA", help="The node's data folder."),
]
DEFAULT_DATA = Path("data")
CLI_ACTOR = "cli"

EXIT_CODES: list[tuple[type[HashfedError], int]] = [
    (InputError, 2),
    (ConfigError, 3),
    (VerificationError, 4),
    (PeerAuthError, 6),  # the peer refused our certificate or token: not a network error
    (PeerError, 5),
    (AuthError, 6),
    (StorageFullError, 8),
    (DatabaseUnavailableError, 9),
    (StoreError, 7),
    (HashfedError, 1),
]
# ``audit verify``: the chain is intact but gap records say records were lost.
EXIT_AUDIT_GAPS = 10


def exit_code_for(exc: HashfedError) -> int:
    return next(code for cls, code in EXIT_CODES if isinstance(exc, cls))


@contextmanager
def open_node(data: Path) -> Iterator[Node]:
    from config import load_settings
    from node.node import Node

    node = Node.open(load_settings(data))
    try:
        yield node
    finally:
        node.close()


def _actor(node: Node) -> str:
    return f"{CLI_ACTOR}@{node.node_id}"


# What a category may be (node/log/hashes.py parse_category), for help texts.
_CATEGORY_RULE = (
    f"At most {MAX_CATEGORY_LENGTH} letters, digits, spaces or . : / + - _ (e.g. A1, baseline)."
)


# --- init / keys / db ---------------------------------------------------------------------


@app.command()
def init(
    node_id: Annotated[str, typer.Option(help="This node's id, e.g. au-argos.")],
    data: DataOpt = DEFAULT_DATA,
    role: Annotated[str, typer.Option(help="agency or partner.")] = "agency",
    port: Annotated[int, typer.Option(help="HTTPS port.")] = 8443,
    force: Annotated[bool, typer.Option(help="Replace an existing signing key.")] = False,
) -> None:
    """Create a node's data folder: node.toml, signing key, TLS identity, database."""
    from node.datadir import init_data_dir

    result = init_data_dir(data, node_id=node_id, role=role, port=port, force=force)
    with open_node(data):
        pass  # creates and migrates the database
    out.print(f"initialised node [bold]{result.node_id}[/] in {data}")
    out.print(f"signing key: {result.verifier_key}")
    out.print(f"cosigner key: {result.cosigner_key}")


@keys_app.command("show")
def keys_show(data: DataOpt = DEFAULT_DATA) -> None:
    """Print this node's public identity, to give to peers."""
    from config import load_settings
    from crypto.pki import cert_fingerprint, load_certificate

    settings = load_settings(data)
    with open_node(data) as node:
        cert = load_certificate(settings.path(settings.tls_cert_file))
        out.print(f"node_id          {node.node_id}")
        out.print(f"signing_key      {node.signer.verifier_key}")
        out.print(f"cosigner_key     {node.cosigner.verifier_key}")
        out.print(f"tls_fingerprint  {cert_fingerprint(cert)}")
        out.print(f"url              {settings.effective_public_url}")


@db_app.command("upgrade")
def db_upgrade(data: DataOpt = DEFAULT_DATA) -> None:
    """Run the database migrations up to the newest schema."""
    from config import load_settings
    from node.store import Store, run_migrations

    settings = load_settings(data)
    store = Store.open(settings.effective_database_url, migrate=False)
    try:
        run_migrations(store.engine)
    finally:
        store.close()
    out.print("database schema is up to date")


@audit_app.command("verify")
def audit_verify(
    data: DataOpt = DEFAULT_DATA,
    strict: Annotated[
        bool, typer.Option(help=f"Exit {EXIT_AUDIT_GAPS} if records were lost (gap records).")
    ] = False,
) -> None:
    """Check every link of the audit log's hash chain and report gaps (records lost).

    Exit 0: intact (gaps, if any, are reported); 4: broken; with --strict, 10:
    intact but gap records say records were lost.
    """
    from node.identity.audit import LOST_FILE, lost_on_file, verify_audit_chain

    with open_node(data) as node:
        result = verify_audit_chain(node.store)
    if not result.ok:
        err.print(f"[red]audit chain broken at record {result.first_bad_id}[/]")
        raise typer.Exit(4)
    out.print(f"audit chain intact: {result.records} records, head {result.head.hex()[:16]}…")
    if result.gaps:
        out.print(
            f"[yellow]but {result.lost} records were lost in {result.gaps} gap(s): "
            "see the audit.gap records[/]"
        )
    unrecorded = lost_on_file(data / LOST_FILE)
    if unrecorded:
        out.print(
            f"[yellow]{unrecorded} records lost at the last shutdown are not in the chain yet: "
            f"the node records them as a gap when it next serves ({LOST_FILE})[/]"
        )
    if strict and (result.gaps or unrecorded):
        raise typer.Exit(EXIT_AUDIT_GAPS)


# --- lists ------------------------------------------------------------------------------------


@list_app.command("create")
def list_create(
    name: Annotated[str, typer.Argument(help="owner/name, the owner being this node.")],
    label: Annotated[str, typer.Option(help="Sharing label: baseline, restricted, private…")],
    description: Annotated[str, typer.Option(help="What the list holds.")] = "",
    kind: Annotated[
        str, typer.Option(help="block (hashes to find) or allow (known-benign: suppresses).")
    ] = "block",
    allow_distance: Annotated[
        int, typer.Option(help="For --kind allow: PDQ codes this near count as on the list.")
    ] = 0,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Create an empty list owned by this node."""
    with open_node(data) as node:
        row = node.create_list(
            name,
            label=label,
            description=description,
            actor=_actor(node),
            kind=kind,
            allow_distance=allow_distance,
        )
    out.print(f"created {row.full_name} (label {row.label}, kind {row.kind})")


class _ImportProgress:
    """The import on two lines: the file read (bytes), and the entries appended so far."""

    def __init__(self, progress: Progress, file: Path) -> None:
        self.p = progress
        size = file.stat().st_size if file.is_file() else None
        self.reading = progress.add_task(f"reading {file.name}", total=size, unit="bytes")
        self.entries = progress.add_task("appending", total=None, unit="entries")

    def read(self, chars: int) -> None:
        self.p.advance(self.reading, chars)

    def __call__(self, entries: int) -> None:
        self.p.advance(self.entries, entries)


@list_app.command("import")
def list_import(
    name: Annotated[str, typer.Argument(help="owner/name of a list this node owns.")],
    file: Annotated[Path, typer.Argument(help="The hash file (UTF-8).")],
    type_: Annotated[
        str | None,
        typer.Option(
            "--type",
            help=f"Hash type of a one-hash-per-line file: {', '.join(HASH_TYPES)}.",
        ),
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv, text or vics (default: guess).")
    ] = None,
    category: Annotated[
        str, typer.Option(help=f"Category for rows without one. {_CATEGORY_RULE}")
    ] = "",
    category_map: Annotated[
        Path | None,
        typer.Option(help="VICS: a JSON object of Category code -> list category (null: skip)."),
    ] = None,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Import a hash file in one transaction: all of it, or nothing if a line is bad.

    CSV: type,value[,category] a line (a header row type,value,category is
    allowed). Text: one value a line, with --type. Project VIC (VICS) JSON,
    versions 1.3 and 2.0: MD5, SHA1 and PhotoDNA, categories mapped by
    --category-map. Types: md5, sha1, sha256 (hex), pdq (64 hex), photodna
    (opaque). Blank lines and lines starting with # are skipped.
    """
    from node.log.vics import CategoryMap

    cats = CategoryMap.load(category_map) if category_map else None
    with open_node(data) as node, progress_bar(err) as progress:
        stages = _ImportProgress(progress, file)
        result = node.import_file(
            name,
            file,
            fmt=fmt,
            default_type=type_,
            default_category=category,
            actor=_actor(node),
            categories=cats,
            read_progress=stages.read,
            progress=stages,
        )
    out.print(
        f"{result.row.full_name}: {result.appended} added, {result.skipped} already present, "
        f"size {result.size}"
    )


@list_app.command("add")
def list_add(
    name: Annotated[str, typer.Argument(help="owner/name of a list this node owns.")],
    hash_type: Annotated[
        str, typer.Argument(metavar="TYPE", help=f"One of {', '.join(HASH_TYPES)}.")
    ],
    value: Annotated[str, typer.Argument(help="The hash: hex for md5/sha1/sha256/pdq.")],
    category: Annotated[str, typer.Option(help=f"Category, e.g. A1. {_CATEGORY_RULE}")] = "",
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Add one hash (a no-op if the list holds it already)."""
    with open_node(data) as node:
        result = node.add_raw(
            name,
            [(hash_type, value, category)],
            actor=_actor(node),
            field_names=("TYPE", "VALUE", "--category"),
        )
    out.print("added" if result.appended else "already present", f"(size {result.size})")


@list_app.command("remove")
def list_remove(
    name: str,
    hash_type: Annotated[str, typer.Argument(metavar="TYPE")],
    value: str,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Remove one hash by appending a tombstone entry."""
    with open_node(data) as node:
        result = node.remove(
            name, [(hash_type, value)], actor=_actor(node), field_names=("TYPE", "VALUE")
        )
    out.print(f"removed (size {result.size})")


@list_app.command("publish")
def list_publish(name: str, data: DataOpt = DEFAULT_DATA) -> None:
    """Sign a checkpoint over the list's current entries."""
    with open_node(data) as node:
        cp = node.publish(name, actor=_actor(node))
    out.print(f"published {name} at size {cp.size}, root {cp.root_hash.hex()}")


@list_app.command("resign")
def list_resign(
    name: Annotated[str | None, typer.Argument(help="An owned list (default: all).")] = None,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Re-sign owned lists' newest published checkpoints with the current keys, dated now."""
    with open_node(data) as node:
        names = (
            [name]
            if name
            else [
                r.full_name for r in node.store.all_lists() if r.local and r.owner == node.node_id
            ]
        )
        for full in names:
            if (
                name is None
                and node.store.latest_checkpoint(list_id=node.get_list(full).id) is None
            ):
                continue  # never published: nothing to re-sign
            cp = node.resign(full, actor=_actor(node), now=int(time.time()))
            out.print(f"re-signed {full} at size {cp.size}")


@list_app.command("ls")
def list_ls(data: DataOpt = DEFAULT_DATA, as_json: JsonOpt = False) -> None:
    """All lists: owned and received."""
    rows: list[dict[str, Any]] = []
    with open_node(data) as node:
        for row in node.store.all_lists():
            st = node.store.get_state(list_id=row.id)
            cp = node.store.latest_checkpoint(list_id=row.id)
            rows.append(
                {
                    "list": row.full_name,
                    "label": row.label,
                    "owned": bool(row.local),
                    "source_peer": None if row.local else row.source_peer,
                    "hashes": st.live_count,
                    "entries": st.size,
                    "checkpoint_size": cp.size if cp else None,
                    "frozen": row.frozen_reason,
                }
            )
    if as_json:
        print_json(rows)
        return
    columns = ("list", "label", "owned", "hashes", "entries", "checkpoint", "state")
    cells = [
        (
            escape(r["list"]),
            escape(r["label"]),
            "yes" if r["owned"] else f"via {r['source_peer']}",
            str(r["hashes"]),
            str(r["entries"]),
            "-" if r["checkpoint_size"] is None else str(r["checkpoint_size"]),
            f"frozen: {escape(r['frozen'])}" if r["frozen"] else "ok",
        )
        for r in rows
    ]
    print_table(columns, cells, console=out)


@list_app.command("show")
def list_show(name: str, data: DataOpt = DEFAULT_DATA) -> None:
    """One list's metadata, size and newest signed checkpoint."""
    with open_node(data) as node:
        row = node.get_list(name)
        st = node.store.get_state(list_id=row.id)
        cp = node.store.latest_checkpoint(list_id=row.id)
    out.print(f"list         {row.full_name}")
    out.print(f"label        {row.label}")
    out.print(f"description  {row.description}")
    out.print(f"owned        {'yes' if row.local else 'no, received via ' + str(row.source_peer)}")
    out.print(f"hashes       {st.live_count}")
    out.print(f"entries      {st.size}")
    if row.frozen_reason:
        out.print(f"[red]frozen       {row.frozen_reason}[/]")
    if cp is None:
        out.print("checkpoint   none (unpublished)")
    else:
        when = dt.datetime.fromtimestamp(cp.timestamp, dt.UTC).isoformat()
        out.print(f"checkpoint   size {cp.size}, root {cp.root_hash.hex()}, signed {when}")
        if cp.size != st.size:
            out.print(f"             {st.size - cp.size} entries not yet published")
        out.print("signed note:")
        out.print(cp.note, markup=False, end="")


@list_app.command("export")
def list_export(
    name: str,
    fmt: Annotated[
        str, typer.Option("--format", help="csv, ndjson, vics (VICS 2.0) or vics13 (VICS 1.3).")
    ] = "csv",
    output: Annotated[Path | None, typer.Option("--out", help="File (default: stdout).")] = None,
    log: Annotated[
        bool,
        typer.Option("--log", help="Every signed entry and the signed note (NDJSON), to verify."),
    ] = False,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Export a list's current content, or with --log its signed log."""
    from node.feeds.vics import write_vics
    from node.log.export import export_lines

    if fmt not in {"csv", "ndjson", "vics", "vics13"}:
        raise InputError("expected csv, ndjson, vics or vics13", where="--format")
    with open_node(data) as node:
        row = node.get_list(name)
        cp = node.store.latest_checkpoint(list_id=row.id) if log else None
        if log and cp is None:
            raise InputError("the list has no signed checkpoint: publish it first", where="--log")
        fh = output.open("w", newline="") if output else sys.stdout
        try:
            count = 0
            if cp is not None:
                fmt = "log"
                for line in export_lines(node.store, row=row, checkpoint=cp):
                    fh.write(line)
                    count += 1
                count -= 1  # the header line
            elif fmt in ("vics", "vics13"):
                version = "2.0" if fmt == "vics" else "1.3"
                for chunk in write_vics(node.content(name), version=version):
                    fh.write(chunk)
                    count += chunk.count('"MediaID"')
            elif fmt == "csv":
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(["type", "value", "category"])
                for item in node.content(name):
                    writer.writerow(item)
                    count += 1
            else:
                for t, v, c in node.content(name):
                    fh.write(json.dumps({"type": t, "value": v, "category": c}) + "\n")
                    count += 1
        finally:
            if output:
                fh.close()
        node.audit(
            actor=_actor(node),
            action="list.export",
            target=name,
            count=count,
            detail={"format": fmt},
        )
    if output:
        out.print(f"exported {count} {'entries' if log else 'hashes'} to {output}")


@app.command("verify-export")
def verify_export_file(
    file: Annotated[Path, typer.Argument(help="A file written by `list export --log`.")],
    key: Annotated[
        list[str],
        typer.Option(
            help="The owner's verifier keys (name+id+key): its signing key and its cosigner "
            "key; repeatable."
        ),
    ],
) -> None:
    """Check a list export offline against the owner's verifier key alone."""
    from crypto.keys import NoteVerifier
    from node.log.export import verify_export

    verifiers = [NoteVerifier.from_verifier_key(k) for k in key]
    if not file.is_file():
        raise InputError("no such file", where=str(file))
    with file.open("rb") as fh:
        got = verify_export(fh, verifiers)
    when = dt.datetime.fromtimestamp(got.timestamp, dt.UTC).isoformat()
    out.print(
        f"ok  {got.list_name}  entries {got.size} ({got.adds} adds, {got.removes} removes)  "
        f"root {got.root_hash.hex()}  signed {when}"
    )


@list_app.command("verify")
def list_verify(
    name: Annotated[str | None, typer.Argument(help="A list (default: all).")] = None,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Recompute each list's root from its entries and check the signed checkpoint."""
    with open_node(data) as node, progress_bar(err) as progress:
        rows = [node.get_list(name)] if name else node.store.all_lists()
        total = sum(node.store.get_state(list_id=r.id).size for r in rows)
        task = progress.add_task("verifying", total=total, unit="entries")
        results = node.verify(name, progress=lambda n: progress.advance(task, n))
    failed = [r for r in results if not r.ok]
    for r in results:
        mark = "[green]ok[/]" if r.ok else "[red]FAIL[/]"
        out.print(f"{mark}  {r.row.full_name}  entries {r.size}  {escape(r.reason)}")
    if failed:
        err.print(f"[red]verification failed: {', '.join(r.row.full_name for r in failed)}[/]")
        raise typer.Exit(4)


# --- local hashing ------------------------------------------------------------------------------


@app.command("hash")
def hash_files(
    files: Annotated[list[Path], typer.Argument(help="Files to hash (read locally only).")],
    fmt: Annotated[str, typer.Option("--format", help="json or csv.")] = "json",
) -> None:
    """Print md5, sha1, sha256 and, for images, PDQ with its quality."""
    import dataclasses

    from node.local.hashing import hash_file

    if fmt not in {"json", "csv"}:
        raise InputError("expected json or csv", where="--format")
    rows = [dataclasses.asdict(hash_file(f)) for f in files]
    if fmt == "json":
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    if any(r["error"] and not r["sha256"] for r in rows):
        raise typer.Exit(1)


def _command_name(argv: list[str]) -> str:
    """The command being run (``list add``), from known command names only:
    arguments can be hash values, and those are never printed."""
    cmd: Any = typer.main.get_command(app)
    names = []
    for token in argv:
        subcommands = getattr(cmd, "commands", None) or {}
        if token not in subcommands:
            break
        names.append(token)
        cmd = subcommands[token]
    return " ".join(names) or "hashfed"


def main() -> None:
    """Console entry point: run the app, present hashfed errors without a traceback.

    Database errors that escaped the store's translation (a bug, or a failure
    outside a transaction) are translated here as a last resort, so a full
    disk or a lost database never ends in a traceback.
    """
    os.umask(0o077)  # what the node writes (database, keys, exports) is its owner's alone
    try:
        app()
    except HashfedError as failure:
        _fail(failure)
    except Exception as raw:
        if not isinstance(raw, (*_db_errors(), OSError)):
            raise
        from node.store import translate_db_error

        exc = translate_db_error(raw, operation=_command_name(sys.argv[1:]))
        if not isinstance(exc, HashfedError):
            if isinstance(raw, OSError):
                raise
            exc = StoreError(f"unexpected database error: {type(raw).__name__}")
        _fail(exc)


def _db_errors() -> tuple[type[BaseException], ...]:
    """What the database layer raises; nothing if this run never loaded it (the store is
    the only module that talks to the database)."""
    if "node.store.errors" not in sys.modules:
        return ()
    from node.store import ANY_DB_ERROR

    return ANY_DB_ERROR


def _fail(exc: HashfedError) -> None:
    name = _command_name(sys.argv[1:])
    err.print(f"error: {name}: {exc.message}", style="red", markup=False, soft_wrap=True)
    sys.exit(exit_code_for(exc))
