"""``hashfed ca``, ``hashfed principal`` and ``hashfed token``: who may connect.

Registered on the ``hashfed`` command (:mod:`node.cli`) when this module is
imported, as the console entry point (:mod:`api.cli`) does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from crypto.errors import (
    ConfigError,
    InputError,
)
from node.cli import DEFAULT_DATA, DataOpt, _actor, app, open_node, out
from node.cli_output import JsonOpt, print_json, print_table

ca_app = typer.Typer(help="A federation CA for a pilot or a closed group.", no_args_is_help=True)
principal_app = typer.Typer(help="Who may connect, and what they may see.", no_args_is_help=True)
token_app = typer.Typer(help="Partners' API tokens.", no_args_is_help=True)
app.add_typer(ca_app, name="ca")
app.add_typer(principal_app, name="principal")
app.add_typer(token_app, name="token")

CA_DIR = "ca"


@ca_app.command("init")
def ca_init(
    name: Annotated[str, typer.Option(help="The CA's common name.")] = "hashfed federation CA",
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Create a federation CA in <data>/ca; this node then trusts certificates it issues."""
    from crypto.pki import cert_fingerprint, create_ca, save_certificate
    from crypto.pki import save_private_key as save_key

    folder = data / CA_DIR
    if (folder / "ca.key").exists():
        raise ConfigError(f"{folder / 'ca.key'}: a CA exists already")
    key, cert = create_ca(name)
    save_key(key, folder / "ca.key")
    save_certificate(cert, folder / "ca.crt")
    out.print(f"created CA {name!r} in {folder} ({cert_fingerprint(cert)})")


@ca_app.command("issue")
def ca_issue(
    node_id: str,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for node.crt, node.key, ca.crt.")],
    dns: Annotated[list[str] | None, typer.Option(help="DNS names (default localhost).")] = None,
    ip: Annotated[list[str] | None, typer.Option(help="IP addresses (default 127.0.0.1).")] = None,
    days: Annotated[int, typer.Option(help="Validity.")] = 825,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Issue a node or partner certificate (ECDSA P-256, server+client auth)."""
    import shutil

    from crypto.pki import (
        cert_fingerprint,
        issue_certificate,
        load_certificate,
        load_private_key,
        save_certificate,
    )
    from crypto.pki import save_private_key as save_key

    folder = data / CA_DIR
    ca_key = load_private_key(folder / "ca.key")
    ca_cert = load_certificate(folder / "ca.crt")
    key, cert = issue_certificate(
        ca_key,
        ca_cert,
        node_id,
        dns_names=tuple(dns or ["localhost"]),
        ip_addresses=tuple(ip or ["127.0.0.1"]),
        days=days,
    )
    save_key(key, out_dir / "node.key")
    save_certificate(cert, out_dir / "node.crt")
    shutil.copyfile(folder / "ca.crt", out_dir / "ca.crt")
    out.print(f"issued {node_id}: {out_dir / 'node.crt'} ({cert_fingerprint(cert)})")


@ca_app.command("revoke")
def ca_revoke(
    cert: Annotated[Path, typer.Argument(help="The certificate to revoke (issued by this CA).")],
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Revoke a certificate in <data>/ca/crl.pem; nodes checking the CRL refuse it at once."""
    from crypto.crl import load_crl, revoke_in_crl, save_crl
    from crypto.pki import load_certificate, load_private_key

    folder = data / CA_DIR
    ca_cert = load_certificate(folder / "ca.crt")
    revoked = load_certificate(cert)
    if revoked.issuer != ca_cert.subject:
        raise InputError("not issued by this node's CA", where="cert")
    crl_path = folder / "crl.pem"
    previous = load_crl(crl_path) if crl_path.exists() else None
    crl = revoke_in_crl(
        load_private_key(folder / "ca.key"), ca_cert, [revoked.serial_number], previous=previous
    )
    save_crl(crl, crl_path)
    out.print(f"revoked serial {revoked.serial_number:x}; {crl_path} lists {len(crl)}")


@principal_app.command("add")
def principal_add(
    name: str,
    role: Annotated[str, typer.Option(help="admin, peer or partner.")],
    labels: Annotated[str, typer.Option(help="Comma-separated sharing labels.")] = "",
    fingerprint: Annotated[
        str | None, typer.Option(help="Pinned certificate, sha256:<hex>.")
    ] = None,
    cert: Annotated[
        Path | None,
        typer.Option(help="Its certificate: self-signed is pinned, CA-issued binds CA and key."),
    ] = None,
    ca: Annotated[
        Path | None, typer.Option(help="The CA that issues NAME's certificates (several CAs).")
    ] = None,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Register a caller; without --fingerprint/--cert, a CA-issued certificate for NAME."""
    from crypto.pki import load_certificate
    from node.identity.principals import (
        add_principal,
        binding_for_cert,
        default_issuer,
        mark_changed,
    )
    from node.identity.trust import PINNED_DIR, TrustAnchors

    with open_node(data) as node:
        anchors = TrustAnchors.from_settings(node.settings)
        issuer = key = None
        if cert is not None:
            bound = binding_for_cert(load_certificate(cert), name=name, anchors=anchors)
            fingerprint, issuer, key = bound.fingerprint, bound.issuer_fingerprint, bound.public_key
        elif fingerprint is None:
            issuer = default_issuer(anchors, load_certificate(ca) if ca else None)
        row = add_principal(
            node.store,
            name=name,
            role=role,
            labels=[x for x in labels.split(",") if x.strip()],
            fingerprint=fingerprint,
            actor=_actor(node),
            issuer_fingerprint=issuer,
            public_key=key,
        )
    mark_changed(data)
    if cert is not None and row.cert_fingerprint is not None:
        # A running node trusts files in tls/pinned/ within seconds (api/server.py).
        pinned = data / PINNED_DIR / f"{name}.crt"
        pinned.parent.mkdir(parents=True, exist_ok=True)
        pinned.write_bytes(cert.read_bytes())
    how = row.cert_fingerprint or (
        f"issued by {row.issuer_fingerprint}"
        if row.issuer_fingerprint
        else "API tokens only; --ca or --cert to accept a certificate"
    )
    out.print(f"added {row.name} ({row.role}; labels {','.join(sorted(row.labels)) or '-'}; {how})")


@principal_app.command("ls")
def principal_ls(data: DataOpt = DEFAULT_DATA, as_json: JsonOpt = False) -> None:
    """Registered principals."""
    with open_node(data) as node:
        rows: list[dict[str, Any]] = [
            {
                "name": p.name,
                "role": p.role,
                "labels": sorted(p.labels),
                "cert_fingerprint": p.cert_fingerprint,
                "issuer_fingerprint": p.issuer_fingerprint,
            }
            for p in node.store.all_principals()
        ]
    if as_json:
        print_json(rows)
        return
    cells = [
        (
            str(r["name"]),
            str(r["role"]),
            ",".join(r["labels"] or []),
            str(
                r["cert_fingerprint"] or ("CA-issued" if r["issuer_fingerprint"] else "tokens only")
            ),
        )
        for r in rows
    ]
    print_table(("name", "role", "labels", "certificate"), cells, console=out)


@principal_app.command("rm")
def principal_rm(name: str, data: DataOpt = DEFAULT_DATA) -> None:
    """Remove a principal and its tokens: it is refused from its next request on."""
    from node.identity.principals import mark_changed
    from node.identity.trust import PINNED_DIR

    with open_node(data) as node:
        if not node.store.remove_principal(name=name):
            raise InputError(f"no principal named {name!r}", where="name")
        (data / PINNED_DIR / f"{name}.crt").unlink(missing_ok=True)
        node.audit(actor=_actor(node), action="principal.remove", target=name, detail={})
    mark_changed(data)
    out.print(f"removed {name}")


@token_app.command("create")
def token_create(
    principal: str,
    ttl_days: Annotated[int | None, typer.Option(help="Expiry in days, 1-366.")] = None,
    scopes: Annotated[
        str,
        typer.Option(
            help="Comma-separated: match feeds lists:read lists:write status peers federation "
            "metrics."
        ),
    ] = "match,feeds",
    allow_admin: Annotated[bool, typer.Option(help="Allow a token for an administrator.")] = False,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Issue an API token; it is shown once and stored only as a hash."""
    from node.identity.principals import create_token, mark_changed

    with open_node(data) as node:
        token = create_token(
            node.store,
            principal=principal,
            scopes=scopes,
            ttl_days=ttl_days,
            actor=_actor(node),
            allow_admin=allow_admin,
        )
    mark_changed(data)
    out.print(token)


@token_app.command("revoke")
def token_revoke(prefix: str, data: DataOpt = DEFAULT_DATA) -> None:
    """Revoke tokens by their prefix (the 8 hex digits after hf_)."""
    from node.identity.principals import mark_changed

    with open_node(data) as node:
        n = node.store.revoke_tokens(prefix=prefix)
        node.audit(actor=_actor(node), action="token.revoke", target=prefix, detail={})
    mark_changed(data)
    out.print(f"revoked {n} token(s)")


@token_app.command("ls")
def token_ls(data: DataOpt = DEFAULT_DATA, as_json: JsonOpt = False) -> None:
    """API tokens: principal, prefix, scopes, expiry (never the token itself)."""
    import datetime as dt

    with open_node(data) as node:
        rows = node.store.all_tokens()

    def when(ms: object) -> str:
        if not isinstance(ms, int):
            return "-"
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")

    if as_json:
        print_json(rows)
        return
    cells = [
        (
            str(r["principal"]),
            f"hf_{r['prefix']}",
            str(r["scopes"]),
            when(r["created_ms"]),
            when(r["expires_ms"]),
            "revoked" if r["revoked"] else "live",
        )
        for r in rows
    ]
    print_table(
        ("principal", "prefix", "scopes", "created", "expires", "state"), cells, console=out
    )
