"""The ``hashfed`` entry point: the node's commands plus those that need the API.

node/cli.py holds the commands that need only the node; this module adds
``serve`` (and the federation layer adds its own), keeping imports flowing
api -> federation -> node.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from crypto.errors import InputError
from federation import cli as federation_cli
from federation import cli_cases  # adds `sighting`, `webhook`, `list review`
from node import cli as node_cli
from node import (
    cli_audit,  # noqa: F401  (adds `hashfed audit ls`, `audit export`)
    cli_certs,  # noqa: F401  (adds `hashfed ca sign`, `ca bundle`, `ca trust`)
    cli_identity,  # noqa: F401  (adds `hashfed ca`, `principal`, `token`)
    cli_overlaps,  # adds `hashfed overlaps`
)
from node.cli import DEFAULT_DATA, DataOpt, out

app = node_cli.app
federation_cli.register(app)  # peer add/ls/rm/trust, sync, demo


@app.command()
def serve(
    data: DataOpt = DEFAULT_DATA,
    node_id: Annotated[
        str | None, typer.Option(help="Node id for a first start (default: random).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default: node.toml).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default: node.toml).")] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Serving processes sharing the port (one per core).")
    ] = 1,
    worker: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Run the node: HTTPS with client certificates, matching, lists, federation."""
    from node.datadir import ensure_data_dir

    if workers > 1 and not worker:
        from api.workers import supervise

        ensure_data_dir(Path(data), node_id=node_id)  # once, before the workers race to it
        extra = [f"--{k}={v}" for k, v in {"host": host, "port": port}.items() if v is not None]
        raise typer.Exit(supervise(Path(data), workers, extra))
    from api.routes.federation import build_routers
    from api.server import serve as run
    from federation.outbox import with_outbox
    from federation.scheduler import FederationRuntime

    settings = ensure_data_dir(Path(data), node_id=node_id)
    updates = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    if updates:
        settings = settings.model_copy(update=updates)
    out.print(
        f"node {settings.node_id} serving on https://{settings.host}:{settings.port} (data {data})"
    )
    runtime = FederationRuntime()
    run(
        settings,
        extra_routers=build_routers(runtime),
        on_start=with_outbox(runtime.start),
        reuse_port=worker,
    )


@app.command()
def scan(
    folder: Annotated[Path, typer.Argument(help="Folder to scan; nothing leaves this machine.")],
    node: Annotated[
        str | None, typer.Option(help="Match against this node (https://…) instead of --data.")
    ] = None,
    cert: Annotated[Path | None, typer.Option(help="Client certificate for --node.")] = None,
    key: Annotated[Path | None, typer.Option(help="Client key for --node.")] = None,
    server_cert: Annotated[
        list[Path] | None, typer.Option(help="Pinned certificate of --node.")
    ] = None,
    ca: Annotated[
        list[Path] | None, typer.Option(help="CA that issued --node's certificate.")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write an HTML report here.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write a CSV report here.")] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="HASHFED_TOKEN", help="API token for --node (or $HASHFED_TOKEN)."),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(help="State file for --resume (default: in the data folder, 0600)."),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted scan.")] = False,
    report_sightings: Annotated[
        bool, typer.Option(help="Report a 'seen' sighting of each matched entry to its owner.")
    ] = False,
    max_distance: Annotated[int, typer.Option(help="PDQ match distance.")] = 31,
    workers: Annotated[int, typer.Option(help="Hashing processes.")] = 2,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Hash every file under FOLDER with both cores and match the hashes; write reports."""
    from node.cli import open_node
    from node.local.report import write_csv_report, write_html_report
    from node.local.scan import scan as run_scan
    from node.match.matcher import LocalScanMatcher

    folder = folder.resolve()
    if report_sightings and node is not None:
        raise InputError("--report-sightings needs a local node (--data)", where="--node")
    state_file = state or scan_state_file(Path(data), folder)
    if node is not None:
        from federation.scan_remote import RemoteScanMatcher

        if (cert is None or key is None) and token is None:
            raise InputError(
                "--node needs --cert and --key (a client certificate) or --token", where="--node"
            )
        if (cert is None) != (key is None):
            raise InputError("give both --cert and --key", where="--cert")
        matcher: Any = RemoteScanMatcher(
            node,
            cert_file=cert,
            key_file=key,
            ca_files=ca or [],
            pinned_cert_files=server_cert or [],
            token=token if cert is None else None,
        )
        result = run_scan(
            folder,
            matcher,
            state_file=state_file,
            resume=resume,
            workers=workers,
            max_distance=max_distance,
        )
        matcher.close()
    else:
        with open_node(data) as local:
            matcher = LocalScanMatcher(local.store, pdq_min_quality=local.settings.pdq_min_quality)
            result = run_scan(
                folder,
                matcher,
                state_file=state_file,
                resume=resume,
                workers=workers,
                max_distance=max_distance,
            )
    if report:
        write_html_report(result, report)
    if csv_out:
        write_csv_report(result, csv_out)
    if report_sightings:
        cli_cases.report_scan_sightings(data, result)
    out.print(
        f"{len(result.files)} files: {len(result.known)} known, {len(result.unknown)} unknown, "
        f"{len(result.errors)} unreadable, {len(result.skipped)} skipped"
        + (f"; report {report}" if report else "")
    )


def scan_state_file(data: Path, folder: Path) -> Path:
    """Where a scan of ``folder`` keeps its state: ``<data>/scans/``, private to the user.

    Not beside the scanned folder: the state lists every path and hash, and
    the folder may be on shared or seized media.
    """
    import hashlib

    scans = data / "scans"
    scans.mkdir(parents=True, exist_ok=True, mode=0o700)
    scans.chmod(0o700)
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    return scans / f"{folder.name[:40]}-{digest}.hashfed-scan"


def _add_pull() -> None:
    """Register ``hashfed pull`` where the help has always listed it: before ``overlaps``."""
    if "federation.feed_pull.cli" in sys.modules:
        return  # imported already (by a test, say): registered then
    from federation.feed_pull import cli as _  # noqa: F401  (adds `hashfed pull`, last)

    commands = app.registered_commands
    pull = commands.pop()
    commands.insert(
        next(i for i, c in enumerate(commands) if c.callback is cli_overlaps.overlaps), pull
    )


def _may_need_pull(args: list[str]) -> bool:
    """Whether this command line may need ``hashfed pull``: itself, the help, an unknown name.

    Its module loads the feed client (httpx, the protocol's models), which no
    other command needs; every command names itself first (``hashfed`` takes
    no options of its own but --help).
    """
    first = next((a for a in args if not a.startswith("-")), None)
    names = {g.name for g in app.registered_groups} | {
        c.name or c.callback.__name__.lower().replace("_", "-")
        for c in app.registered_commands
        if c.callback is not None
    }
    return first is None or first == "pull" or first not in names


def main() -> None:
    if _may_need_pull(sys.argv[1:]):
        _add_pull()
    node_cli.main()
