"""The ``hashfed`` entry point: the node's commands plus those that need the API.

node/cli.py holds the commands that need only the node; this module adds
``serve`` (and the federation layer adds its own), keeping imports flowing
api -> federation -> node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from federation import cli as federation_cli
from federation import feed_cli  # noqa: F401  (adds `hashfed pull`)
from node import cli as node_cli
from node.cli import DEFAULT_DATA, DataOpt, out
from node.datadir import ensure_data_dir

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
) -> None:
    """Run the node: HTTPS with client certificates, matching, lists, federation."""
    from api.routes.federation import build_routers
    from api.server import serve as run
    from federation.scheduler import FederationRuntime

    settings = ensure_data_dir(Path(data), node_id=node_id)
    updates = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    if updates:
        settings = settings.model_copy(update=updates)
    out.print(
        f"node {settings.node_id} serving on https://{settings.host}:{settings.port} (data {data})"
    )
    runtime = FederationRuntime()
    run(settings, extra_routers=build_routers(runtime), on_start=runtime.start)


def main() -> None:
    node_cli.main()
