"""``hashfed ca sign``, ``ca bundle`` and ``ca trust``: certificates the way partners expect.

A partner keeps its private key and sends a request (CSR); this node's CA
signs it. ``ca bundle`` exports the CA certificate for the other side, and
``ca trust`` installs another federation's CA without editing node.toml by
hand. Registered on ``hashfed ca`` (:mod:`node.cli_identity`) when imported.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from crypto.errors import ConfigError, InputError
from node.cli import DEFAULT_DATA, DataOpt, _actor, open_node, out
from node.cli_identity import CA_DIR, ca_app

__all__ = ["ca_bundle", "ca_sign", "ca_trust"]


def _own_ca(data: Path) -> Path:
    folder = data / CA_DIR
    if not (folder / "ca.crt").exists():
        raise ConfigError(f"{folder / 'ca.crt'}: this node runs no CA; `hashfed ca init` makes one")
    return folder


@ca_app.command("sign")
def ca_sign(
    csr: Annotated[Path, typer.Option("--csr", help="The partner's request (PEM or DER).")],
    output: Annotated[
        Path | None, typer.Option("--out", help="Certificate file (default: NAME.crt here).")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Node or principal id (default: the request's CN).")
    ] = None,
    dns: Annotated[
        list[str] | None, typer.Option(help="DNS names (default: those requested).")
    ] = None,
    ip: Annotated[
        list[str] | None, typer.Option(help="IP addresses (default: those requested).")
    ] = None,
    days: Annotated[int, typer.Option(help="Validity in days.")] = 825,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Sign a partner's certificate request with this node's CA; the partner keeps its key.

    The request's signature must verify and it may not ask for CA:TRUE. The
    certificate is an end entity for client and server auth, named NAME.
    """
    from crypto.csr import csr_common_name, load_csr, requested_names, sign_csr
    from crypto.pki import cert_fingerprint, load_certificate, load_private_key, save_certificate

    folder = _own_ca(data)
    try:
        raw = csr.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=str(csr)) from None
    request = load_csr(raw, where=str(csr))
    node_id = name or csr_common_name(request)
    if node_id is None:
        raise InputError("the request has no single common name: give --name", where=str(csr))
    want_dns, want_ip = requested_names(request)
    try:
        cert = sign_csr(
            load_private_key(folder / "ca.key"),
            load_certificate(folder / "ca.crt"),
            request,
            node_id,
            dns_names=dns if dns is not None else want_dns,
            ip_addresses=ip if ip is not None else want_ip,
            days=days,
        )
    except ValueError as exc:
        raise InputError(str(exc), where="--name" if name else str(csr)) from None
    target = output or Path(f"{node_id}.crt")
    save_certificate(cert, target)
    with open_node(data) as node:
        node.audit(
            actor=_actor(node),
            action="ca.sign",
            target=node_id,
            detail={"fingerprint": cert_fingerprint(cert), "days": days},
        )
    out.print(f"signed {node_id}: {target} ({cert_fingerprint(cert)})")
    out.print(
        f"register it: hashfed principal add {node_id} --role partner --labels … --cert {target}"
    )


@ca_app.command("bundle")
def ca_bundle(
    output: Annotated[Path | None, typer.Option("--out", help="File (default: stdout).")] = None,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Export this node's CA certificate (PEM) for peers and partners to trust."""
    from crypto.pki import cert_fingerprint, load_certificate

    folder = _own_ca(data)
    pem = (folder / "ca.crt").read_bytes()
    if output is None:
        sys.stdout.write(pem.decode("ascii"))
        return
    output.write_bytes(pem)
    fpr = cert_fingerprint(load_certificate(folder / "ca.crt"))
    out.print(f"wrote {output} ({fpr}); on the other node: hashfed ca trust {output.name}")


@ca_app.command("trust")
def ca_trust(
    file: Annotated[Path, typer.Argument(help="A CA certificate or bundle (PEM).")],
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Trust certificates issued by another CA (added to tls_ca_files for you)."""
    from node.identity.ca_trust import install_ca

    got = install_ca(data, file)
    names = ", ".join(got.subjects)
    if not got.added:
        out.print(f"already trusted: {names}")
        return
    with open_node(data) as node:
        node.audit(
            actor=_actor(node),
            action="ca.trust",
            target=names[:200],
            detail={"fingerprints": got.fingerprints},
        )
    out.print(f"trusting {names} ({', '.join(got.fingerprints)}) from {got.path}")
    out.print("restart `hashfed serve` to accept its certificates")
