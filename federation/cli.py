"""``hashfed peer …``, ``hashfed sync`` and ``hashfed demo``.

Registered onto the ``hashfed`` command by api/cli.py (:func:`register`).
Errors are presented by node/cli.py's ``main`` (one place for exit codes).
The commands import what they need when they run (see node/cli.py).
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import TaskID

from crypto.errors import InputError
from node.cli import DEFAULT_DATA, DataOpt, err, exit_code_for, open_node, out
from node.cli_output import JsonOpt, print_json, print_table, progress_bar

if TYPE_CHECKING:
    from federation.sync import PullReport

__all__ = ["peer_app", "register"]

peer_app = typer.Typer(
    help="Peers: whom we pull from, and what they may receive.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add the federation commands to the ``hashfed`` app."""
    app.add_typer(peer_app, name="peer")
    app.command("sync")(sync)
    app.command("demo")(demo)


def _actor(node_id: str) -> str:
    return f"cli@{node_id}"


def _split(values: list[str] | None) -> list[str]:
    out_: list[str] = []
    for v in values or []:
        out_ += [x.strip() for x in v.split(",") if x.strip()]
    return out_


# An owner's witness policy, for `peer add` and `peer trust` alike.
WitnessOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--witness",
        help="Cosigner key of a witness whose cosignature its lists need (repeatable).",
    ),
]
WitnessQuorumOpt = Annotated[
    int, typer.Option(help="How many of the --witness keys must have cosigned.")
]


@peer_app.command("add")
def peer_add(
    node_id: Annotated[str, typer.Argument(help="The peer's node id.")],
    url: Annotated[str, typer.Argument(help="https://host:port the peer listens on.")],
    fingerprint: Annotated[
        str | None, typer.Option(help="Pin its TLS certificate: sha256:<hex>.")
    ] = None,
    cert: Annotated[
        Path | None, typer.Option(help="Its self-signed certificate file, to pin and trust.")
    ] = None,
    signing_key: Annotated[
        list[str] | None,
        typer.Option("--signing-key", help="Its checkpoint verifier key (repeatable)."),
    ] = None,
    labels: Annotated[
        str, typer.Option(help="Comma-separated labels it may receive from us.")
    ] = "",
    subscribe: Annotated[
        list[str] | None,
        typer.Option(help="What we pull from it: '*', 'owner/*' or 'owner/name' (repeatable)."),
    ] = None,
    no_pull: Annotated[
        bool, typer.Option("--no-pull", help="Pull nothing from it (it only receives).")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between pulls.")] = 60.0,
    witness: WitnessOpt = None,
    witness_quorum: WitnessQuorumOpt = 0,
    cosigns: Annotated[
        bool,
        typer.Option("--cosigns", help="It witnesses our lists: submit our checkpoints to it."),
    ] = False,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Add a peer to node.toml and register it as a principal (role peer)."""
    from config import PeerSettings
    from crypto.pki import cert_fingerprint, load_certificate
    from federation.peers import check_peer, register_peer
    from node.identity.principals import check_labels
    from node.identity.trust import PINNED_DIR

    if cert is not None:
        pinned = cert_fingerprint(load_certificate(cert))
        if fingerprint is not None and fingerprint.lower() != pinned:
            raise InputError(
                "the certificate does not have this fingerprint", where="--fingerprint"
            )
        fingerprint = pinned
    peer = PeerSettings(
        node_id=node_id,
        url=url.rstrip("/"),
        fingerprint=fingerprint.lower() if fingerprint else None,
        signing_keys=signing_key or [],
        labels=check_labels(_split([labels])),
        subscribe=[] if no_pull else (_split(subscribe) or ["*"]),
        interval_seconds=interval,
        witnesses=witness or [],
        witness_quorum=witness_quorum,
        cosigns=cosigns,
    )
    check_peer(peer)
    from federation.witness_policy import witness_policy

    witness_policy(node_id, peer.witnesses, peer.witness_quorum)
    if peer.subscribe and not peer.signing_keys:
        err.print(
            f"[yellow]note: no --signing-key for {node_id}: only lists of owners trusted "
            "otherwise (peers, `hashfed peer trust`) will be accepted from it[/]"
        )
    with open_node(data) as node:
        register_peer(node.store, data, peer, actor=_actor(node.node_id))
    if cert is not None:
        # api/server.py trusts files in tls/pinned/ within seconds, for both directions.
        target = data / PINNED_DIR / f"{node_id}.crt"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cert, target)
    how = peer.fingerprint or "CA-issued certificate naming it"
    out.print(
        f"added peer {node_id} ({peer.url}; receives {','.join(peer.labels) or 'nothing'}; "
        f"we pull {','.join(peer.subscribe) or 'nothing'}; {how})"
    )
    out.print("a running node picks this up within seconds")


@peer_app.command("rm")
def peer_rm(node_id: str, data: DataOpt = DEFAULT_DATA) -> None:
    """Remove a peer: node.toml, its principal (cut off at once), its pinned certificate."""
    from federation.peers import remove_peer
    from node.identity.principals import mark_changed
    from node.identity.trust import PINNED_DIR

    found = remove_peer(data, node_id)
    with open_node(data) as node:
        had_principal = node.store.remove_principal(name=node_id)
        node.store.forget_peer(peer=node_id)
        node.audit(actor=_actor(node.node_id), action="peer.remove", target=node_id, detail={})
    mark_changed(data)  # running API processes drop their cached principals: cut off now
    (data / PINNED_DIR / f"{node_id}.crt").unlink(missing_ok=True)
    if not found and not had_principal:
        raise InputError(f"no peer named {node_id!r}", where="node_id")
    out.print(f"removed peer {node_id}")


@peer_app.command("trust")
def peer_trust(
    node_id: Annotated[str, typer.Argument(help="The list owner's node id.")],
    keys: Annotated[
        list[str] | None,
        typer.Argument(metavar="KEY", help="Its checkpoint verifier key(s): name+id+key."),
    ] = None,
    signing_key: Annotated[
        list[str] | None,
        typer.Option("--signing-key", help="The same, as an option (repeatable)."),
    ] = None,
    witness: WitnessOpt = None,
    witness_quorum: WitnessQuorumOpt = 0,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Trust an owner's signing key for its lists that peers relay (trusted_owners in node.toml)."""
    from config import TrustedOwner
    from federation.peers import add_trusted_owner

    given = [*(keys or []), *(signing_key or [])]
    if not given:
        raise InputError("give the owner's verifier key: hashfed peer trust OWNER KEY", where="KEY")
    from federation.witness_policy import witness_policy

    witness_policy(node_id, witness or [], witness_quorum)
    owner = TrustedOwner(
        node_id=node_id,
        signing_keys=given,
        witnesses=witness or [],
        witness_quorum=witness_quorum,
    )
    add_trusted_owner(data, owner)
    out.print(f"trusting {node_id}'s signing key for its lists, whoever relays them")


@peer_app.command("unfreeze")
def peer_unfreeze(
    name: Annotated[str, typer.Argument(help="The frozen list, owner/name.")],
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Take updates for a list frozen after a fork again (its evidence is kept)."""
    with open_node(data) as node:
        node.unfreeze(name, actor=_actor(node.node_id))
    out.print(f"{name} takes updates again; the evidence checkpoints are kept")


def _ago(ms: int | None, now: int) -> str:
    if ms is None:
        return "-"
    secs = (now - ms) / 1000
    return f"in {-secs:.0f}s" if secs < 0 else f"{secs:.0f}s ago"


@peer_app.command("ls")
def peer_ls(data: DataOpt = DEFAULT_DATA, as_json: JsonOpt = False) -> None:
    """Peers with their health: last success, last error, lag, next attempt."""
    from federation.health import peer_status
    from node.store import now_ms

    with open_node(data) as node:
        rows = peer_status(node, now_ms=now_ms(), now_s=int(time.time()))
    if as_json:
        print_json(rows)
        return
    now = now_ms()
    columns = (
        "peer",
        "url",
        "receives",
        "we pull",
        "last success",
        "failures",
        "next attempt",
        "lag",
        "last error",
    )
    cells = [
        (
            r["peer"],
            r["url"],
            ",".join(r["labels"]) or "-",
            ",".join(r["subscribe"]) or "-",
            _ago(r["last_success_ms"], now),
            str(r["failures"]),
            _ago(r["next_attempt_ms"], now),
            str(r["lag_entries"]),
            escape(f"{r['last_error_code']}: {r['last_error']}") if r["last_error_code"] else "",
        )
        for r in rows
    ]
    print_table(columns, cells, console=out)
    for r in rows:
        for a in r["alerts"]:
            out.print(f"[red]ALERT[/] {a['list']} {a['alert']}: {escape(a['detail'])}")


def _print_report(report: PullReport) -> None:
    mark = "[green]ok[/]" if report.ok else "[red]failed[/]"
    out.print(
        f"{mark}  {report.peer}: {report.applied_entries} entries applied in "
        f"{report.duration_s:.2f}s, lag {report.lag_entries}"
        + (
            f" — {escape(report.error_code or '')}: {escape(report.error or '')}"
            if not report.ok
            else ""
        )
    )
    for r in report.lists:
        out.print(
            f"    {r.full_name:40} {r.outcome:9} size {r.size}/{r.offered_size}"
            + (f"  {escape(r.detail)}" if r.detail else "")
        )


def sync(
    peer: Annotated[
        str | None, typer.Argument(help="One peer (default: every peer we pull).")
    ] = None,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Pull now, in this process (no server needed)."""
    from config import load_settings
    from federation.sync import Syncer

    settings = load_settings(data)
    targets = [peer] if peer else [p.node_id for p in settings.peers if p.subscribe]
    if not targets:
        out.print("no peers to pull from (hashfed peer add …)")
        return
    failed: list[PullReport] = []
    with open_node(data) as node, progress_bar(err) as progress:
        syncer = Syncer(node)
        shown: list[TaskID] = []

        def task(description: str, total: int | None) -> Callable[[int], None]:
            # One bar at a time: the previous list's is done when the next starts.
            for t in shown:
                progress.remove_task(t)
            shown[:] = [progress.add_task(description, total=total, unit="entries")]
            return lambda n: progress.advance(shown[0], n)

        syncer.progress_task = task
        for peer_id in targets:
            report = syncer.pull(peer_id)
            for t in shown:
                progress.remove_task(t)
            shown.clear()
            _print_report(report)
            if not report.ok:
                failed.append(report)
    if failed:
        # Network trouble (peer_*) exits like a PeerError, refusals like a
        # VerificationError (node/cli.py's exit codes).
        from crypto.errors import HashfedError, PeerAuthError, PeerError, VerificationError

        codes = [f.error_code or "" for f in failed]
        exc: HashfedError = VerificationError()
        if any(c.startswith("peer") for c in codes):
            exc = PeerError(peer=failed[0].peer, reason="")
        if "peer_auth_refused" in codes:
            exc = PeerAuthError(peer=failed[0].peer, reason="")
        raise typer.Exit(exit_code_for(exc))


def demo(
    keep: Annotated[
        bool, typer.Option(help="Keep the demo's data folders instead of deleting them.")
    ] = False,
    folder: Annotated[
        Path | None,
        typer.Option("--dir", help="Where to put the three nodes (default: a temp dir)."),
    ] = None,
) -> None:
    """Start a local federation of three nodes on 127.0.0.1 and walk through it."""
    from federation.demo import run_demo

    started = dt.datetime.now()
    ok = run_demo(folder=folder, keep=keep, console=out)
    if not ok:
        raise typer.Exit(1)
    out.print(f"[dim]demo finished in {(dt.datetime.now() - started).total_seconds():.1f}s[/]")
