"""``hashfed sighting``, ``webhook``, ``list review`` and ``principal sightings``.

Registered on the ``hashfed`` command when imported (api/cli.py does). The
commands import what they need when they run (see node/cli.py).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from crypto.errors import InputError
from crypto.sighting import DISPOSITIONS
from node.cli import DEFAULT_DATA, DataOpt, _actor, app, list_app, open_node, out
from node.cli_identity import principal_app

if TYPE_CHECKING:
    from node.local.scan import ScanResult

sighting_app = typer.Typer(
    help="Report sightings to list owners; see your own.", no_args_is_help=True
)
webhook_app = typer.Typer(help="Signed alerts to your systems.", no_args_is_help=True)
app.add_typer(sighting_app, name="sighting")
app.add_typer(webhook_app, name="webhook")


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# --- sightings ------------------------------------------------------------------------


@sighting_app.command("report")
def sighting_report(
    list_name: Annotated[str, typer.Argument(metavar="LIST", help="owner/name")],
    seq: Annotated[int, typer.Argument(help="The entry's seq (from a match or scan answer).")],
    disposition: Annotated[str, typer.Option(help=f"One of {', '.join(DISPOSITIONS)}.")] = "seen",
    reason: Annotated[str | None, typer.Option(help="Reason code, [a-z0-9_]{1,32}.")] = None,
    send: Annotated[bool, typer.Option(help="Send to the next hop now (else serve does).")] = True,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Sign a sighting of one entry and send it toward the list's owner."""
    from federation.sightings import relay_due
    from node.sightings import report

    if disposition not in DISPOSITIONS:
        raise InputError(f"expected one of {', '.join(DISPOSITIONS)}", where="--disposition")
    with open_node(data) as node:
        got = report(node, list_name, seq, disposition=disposition, reason=reason)
        if got.status == "recorded":
            out.print(f"recorded: {list_name} entry {seq} ({disposition}); this node owns the list")
            return
        sent, failed = relay_due(node) if send else (0, 0)
        state = "sent" if sent and not failed else "queued (serve retries)"
        out.print(f"{state}: {list_name} entry {seq} ({disposition}) via {got.next_hop}")


@sighting_app.command("stats")
def sighting_stats_cmd(
    list_name: Annotated[str | None, typer.Option("--list", help="One list (owner/name).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """How often and by whom this node's entries were seen, per list and per entry."""
    from node.sightings import sighting_stats

    with open_node(data) as node:
        stats = sighting_stats(node, list_name)
    if as_json:
        out.print(json.dumps(stats, indent=2), markup=False)
        return
    for lst in stats["lists"]:
        by = ", ".join(f"{k} {v}" for k, v in sorted(lst["by_disposition"].items()))
        out.print(
            f"{lst['list']}: {lst['total']} sightings ({by}) by {', '.join(lst['reporters'])}",
            markup=False,
        )
        table = Table("seq", "total", "seen", "confirmed", "false_positive", "reporters")
        for e in lst["entries"]:
            d = e["by_disposition"]
            table.add_row(
                str(e["seq"]),
                str(e["total"]),
                *(str(d.get(k, 0)) for k in DISPOSITIONS),
                ", ".join(f"{r} ({n})" for r, n in sorted(e["reporters"].items())),
            )
        out.print(table)
    if not stats["lists"]:
        out.print("no sightings of this node's lists yet")


@list_app.command("review")
def list_review(
    name: Annotated[str, typer.Argument(help="owner/name of a list this node owns")],
    remove: Annotated[
        bool, typer.Option("--remove-flagged", help="Remove every flagged entry (one append).")
    ] = False,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Entries that enough distinct reporters called false_positive."""
    from node.sightings import flagged_entries, remove_flagged

    with open_node(data) as node:
        flagged = flagged_entries(node, name)
        threshold = node.settings.sightings.false_positive_threshold
        table = Table("seq", "false_positive reporters", "in list", "category")
        for f in flagged:
            table.add_row(
                str(f["seq"]),
                str(f["false_positive_reporters"]),
                "yes" if f["in_list"] else "removed",
                f["category"] or "",
            )
        out.print(f"{name}: {len(flagged)} entries flagged (threshold {threshold} reporters)")
        if flagged:
            out.print(table)
        if remove:
            result = remove_flagged(node, name, actor=_actor(node))
            n = result.appended if result else 0
            out.print(f"removed {n} flagged entries from {name}; publish to sign the change")


@principal_app.command("sightings")
def principal_sightings(
    name: str,
    state: Annotated[str, typer.Argument(metavar="on|off")],
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Allow (on) or refuse (off) sightings sent by a principal."""
    if state not in ("on", "off"):
        raise InputError("expected on or off", where="state")
    with open_node(data) as node:
        if node.store.get_principal(name=name) is None:
            raise InputError(f"no principal named {name!r}", where="name")
        node.store.set_sighting_optin(principal=name, enabled=state == "on")
        node.audit(
            actor=_actor(node), action=f"principal.sightings.{state}", target=name, detail={}
        )
    out.print(f"sightings from {name}: {state}")


# --- webhooks -------------------------------------------------------------------------


@webhook_app.command("add")
def webhook_add(
    url: str,
    events: Annotated[
        str,
        typer.Option(
            help="Comma-separated: overlap, sighting, fork_refused, "
            "rollback_refused, list_stale, peer_failing; or '*'."
        ),
    ] = "*",
    include_hashes: Annotated[
        bool, typer.Option(help="Put hash values in payloads (off: names and counts only).")
    ] = False,
    secret: Annotated[str | None, typer.Option(help="HMAC secret (default: generated).")] = None,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Send signed JSON alerts to URL; prints the id and the HMAC secret."""
    from node.alerts import parse_events

    if not url.startswith(("https://", "http://")) or len(url) > 2000:
        raise InputError("expected an http(s):// URL of at most 2000 characters", where="url")
    types = parse_events(events)
    key = secret or secrets.token_hex(32)
    if len(key) < 16 or len(key) > 128:
        raise InputError("a secret of 16 to 128 characters", where="--secret")
    with open_node(data) as node:
        wid = node.store.add_webhook(
            url=url, events=",".join(types), include_hashes=include_hashes, secret=key
        )
        node.audit(
            actor=_actor(node),
            action="webhook.add",
            target=str(wid),
            detail={"events": types, "include_hashes": include_hashes},
        )
    out.print(f"webhook {wid}: {url} ({','.join(types)})", markup=False)
    out.print(f"secret {key}", markup=False)


@webhook_app.command("ls")
def webhook_ls(data: DataOpt = DEFAULT_DATA) -> None:
    """Configured webhooks (secrets not shown)."""
    with open_node(data) as node:
        table = Table("id", "url", "events", "hashes", "created")
        for h in node.store.webhooks():
            table.add_row(
                str(h["id"]),
                h["url"],
                h["events"],
                "yes" if h["include_hashes"] else "no",
                _when(h["created_ms"]),
            )
    out.print(table)


@webhook_app.command("rm")
def webhook_rm(webhook_id: int, data: DataOpt = DEFAULT_DATA) -> None:
    """Remove a webhook and its deliveries."""
    with open_node(data) as node:
        if not node.store.remove_webhook(webhook_id=webhook_id):
            raise InputError(f"no webhook {webhook_id}", where="id")
        node.audit(actor=_actor(node), action="webhook.remove", target=str(webhook_id), detail={})
    out.print(f"removed webhook {webhook_id}")


@webhook_app.command("deliveries")
def webhook_deliveries(
    webhook: Annotated[int | None, typer.Option(help="One webhook's deliveries.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Recent deliveries, newest first: status, attempts, last answer."""
    with open_node(data) as node:
        rows = node.store.deliveries(webhook_id=webhook, limit=limit)
    if as_json:
        out.print(json.dumps(rows, indent=2), markup=False)
        return
    table = Table("id", "webhook", "event", "status", "attempts", "last", "created", "delivered")
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["webhook_id"]),
            r["event_type"],
            r["status"],
            str(r["attempts"]),
            r["last_error"] or (str(r["last_status"]) if r["last_status"] else "-"),
            _when(r["created_ms"]),
            _when(r["delivered_ms"]),
        )
    out.print(table)


@webhook_app.command("replay")
def webhook_replay(delivery_id: int, data: DataOpt = DEFAULT_DATA) -> None:
    """Send a delivery again (serve sends it within a second; this tries once now)."""
    from federation.webhooks import deliver_due

    with open_node(data) as node:
        if not node.store.replay_delivery(delivery_id=delivery_id):
            raise InputError(f"no delivery {delivery_id}", where="id")
        node.audit(actor=_actor(node), action="webhook.replay", target=str(delivery_id), detail={})
        ok, _bad = deliver_due(node.store, node.settings.alerts, node_id=node.node_id)
    out.print(f"delivery {delivery_id}: " + ("delivered" if ok else "queued for retry"))


def report_scan_sightings(data: Path, result: ScanResult) -> None:
    """``hashfed scan --report-sightings``: report what a local scan found, then send."""
    from federation.sightings import relay_due
    from node.sightings.scan_report import report_scan

    with open_node(data) as node:
        got = report_scan(node, result)
        sent, failed = relay_due(node)
    out.print(
        f"sightings: {got.reported} reported ({sent} sent now, {failed} queued for retry), "
        f"{got.skipped} skipped (near PDQ hits or removed entries), {got.failed} refused"
    )
