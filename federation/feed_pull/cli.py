"""``hashfed pull``: a partner's command to keep a verified copy of a feed as plain files.

It needs no node and no data folder: only the server's URL, a way to
authenticate (a client certificate or a token), the server's TLS anchor, and
the owners' verifier keys the partner trusts. Importing this module adds the
command to the ``hashfed`` app (api/cli.py imports it); errors are presented
by node/cli.py's ``main`` (one place for exit codes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from crypto.errors import InputError
from federation.client import FeedClient, cert_context, token_context
from federation.feed_pull import DEFAULT_MAX_BYTES, load_trust, load_witnesses, pull
from node.cli import app, err, out
from node.cli_output import progress_bar

__all__ = ["pull_command"]

DEFAULT_MAX_AGE = 7 * 86_400


@app.command("pull")
def pull_command(
    url: Annotated[str, typer.Argument(help="The node, e.g. https://node.example:8443")],
    label: Annotated[str, typer.Option(help="The feed: a sharing label such as baseline.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for <type>.txt files and state.")],
    trust: Annotated[
        list[str] | None,
        typer.Option(
            help="A list owner's verifier key you trust, e.g. 'au-argos+9a268aa7+AS…' "
            "(its name is the owner; OWNER=KEY also works; repeatable)."
        ),
    ] = None,
    trust_file: Annotated[
        Path | None, typer.Option(help="File of verifier keys, one a line ('#' comments).")
    ] = None,
    cert: Annotated[Path | None, typer.Option(help="Your client certificate (PEM).")] = None,
    key: Annotated[Path | None, typer.Option(help="Its private key (PEM).")] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="HASHFED_FEED_TOKEN", help="API token (or $HASHFED_FEED_TOKEN)."),
    ] = None,
    ca: Annotated[
        list[Path] | None, typer.Option(help="CA certificate for the server (repeatable).")
    ] = None,
    pin: Annotated[
        list[Path] | None,
        typer.Option(help="The server's own self-signed certificate, pinned (repeatable)."),
    ] = None,
    max_age: Annotated[
        int, typer.Option(help="Refuse checkpoints older than this many seconds (0: off).")
    ] = DEFAULT_MAX_AGE,
    max_bytes: Annotated[int, typer.Option(help="Refuse a download larger than this.")] = (
        DEFAULT_MAX_BYTES
    ),
    witness: Annotated[
        list[str] | None,
        typer.Option(
            help="OWNER=COSIGNER_KEY of a witness whose cosignature that owner's lists need "
            "(repeatable)."
        ),
    ] = None,
    witness_quorum: Annotated[
        int, typer.Option(help="How many distinct witnesses of an owner must have cosigned.")
    ] = 1,
) -> None:
    """Pull a feed, verify it against the owners' signatures, write one file per hash type."""
    owners = load_trust(trust or [], trust_file)
    witnesses = load_witnesses(witness or [], witness_quorum)
    if not owners:
        raise InputError("name at least one list owner you trust", where="--trust")
    cas, pins = list(ca or []), list(pin or [])
    if cert is not None or key is not None:
        if cert is None or key is None:
            raise InputError("give both --cert and --key", where="--cert")
        if not cas and not pins:
            raise InputError(
                "with a client certificate, give --ca or --pin for the server", where="--ca"
            )
        ctx = cert_context(cert, key, ca_files=cas, pinned_cert_files=pins)
    elif token:
        ctx = token_context(ca_files=cas, pinned_cert_files=pins)
    else:
        raise InputError("give --cert/--key or --token (or $HASHFED_FEED_TOKEN)", where="--token")
    with FeedClient(url, ssl_context=ctx, token=token) as client, progress_bar(err) as progress:
        result = pull(
            client,
            label=label,
            out_dir=out_dir,
            trust=owners,
            max_bytes=max_bytes,
            max_age_seconds=max_age,
            progress=progress,
            witnesses=witnesses,
        )
    how = "full" if result.full else "incremental"
    if result.resynced:
        out.print(
            "the server asked for a resync: pulled the feed in full, checked against "
            "what was accepted before"
        )
    out.print(
        f"{escape(result.label)}: {how} pull, {result.entries} entries from {result.lists} "
        f"lists verified in {result.seconds:.2f}s"
    )
    for name in result.dropped:
        out.print(f"[yellow]no longer served[/]: {escape(name)} (its hashes left the files)")
    for htype, count in sorted(result.outputs.items()):
        out.print(f"    {escape(str(out_dir / (htype + '.txt')))}  {count} hashes")
