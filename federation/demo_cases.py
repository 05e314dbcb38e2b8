"""The demo's last act: a partner's sighting reaches the owner, and an alert is delivered.

Set-up (before the nodes start): the partner's key is known to the relay and
to the owner, each hop opts the previous one in, and the owner has a webhook
pointing at a receiver this process runs on 127.0.0.1, which checks every
delivery's HMAC signature as docs/OPERATIONS.md says a receiver should.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from config import TrustedOwner, load_settings
from federation.client import AdminClient
from federation.peers import add_trusted_owner
from federation.sightings import relay_due
from node.alerts import EVENT_TYPES, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from node.node import Node
from node.sightings import report

__all__ = ["DemoReceiver", "prepare_cases", "sighting_and_alert"]


@dataclass
class DemoReceiver:
    """A local webhook receiver that verifies each delivery's signature."""

    secret: str
    got: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hashfed"

    def start(self) -> DemoReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ok = verify_signature(
                    receiver.secret,
                    timestamp=self.headers.get(TIMESTAMP_HEADER, ""),
                    signature=self.headers.get(SIGNATURE_HEADER, ""),
                    body=body,
                )
                self.send_response(204 if ok else 401)
                self.end_headers()
                if ok:
                    receiver.got.append(json.loads(body))

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def prepare_cases(*, owner: Path, relay: Path, partner: Path) -> DemoReceiver:
    """Trust and opt-ins along partner -> relay -> owner; the owner's webhook; the receiver."""
    p_settings = load_settings(partner)
    p_key = (partner / "keys" / "signing.pub").read_text().strip()
    add_trusted_owner(owner, TrustedOwner(node_id=p_settings.node_id, signing_keys=[p_key]))
    relay_id = load_settings(relay).node_id
    receiver = DemoReceiver(secret=secrets.token_hex(32)).start()
    for data, sender in ((owner, relay_id), (relay, p_settings.node_id)):
        node = Node.open(load_settings(data))
        try:
            node.store.set_sighting_optin(principal=sender, enabled=True)
            if data == owner:
                node.store.add_webhook(
                    url=receiver.url,
                    events=",".join(EVENT_TYPES),
                    include_hashes=False,
                    secret=receiver.secret,
                )
        finally:
            node.close()
    return receiver


def sighting_and_alert(
    *,
    partner: Path,
    owner_client: Callable[[], AdminClient],
    list_name: str,
    seq: int,
    receiver: DemoReceiver,
    say: Callable[[str], None],
    timeout: float = 60.0,
) -> None:
    """The partner reports a sighting; wait until the owner counts it and the alert arrives."""
    node = Node.open(load_settings(partner))
    try:
        got = report(node, list_name, seq, disposition="confirmed", reason="demo")
        relay_due(node)
    finally:
        node.close()
    say(f"{got.sighting.reporter} signed a sighting of {list_name} entry {seq} → {got.next_hop}")
    deadline = time.monotonic() + timeout
    stats: dict[str, Any] = {}
    with owner_client() as client:
        while time.monotonic() < deadline:
            stats = client.request("GET", "/api/v1/sightings", None)
            if stats["lists"]:
                break
            time.sleep(0.1)
    if not stats.get("lists"):
        raise TimeoutError("the sighting did not reach the owner")
    lst = stats["lists"][0]
    say(f"owner's stats: {lst['list']} seen {lst['total']}× by {', '.join(lst['reporters'])}")
    while time.monotonic() < deadline and not any(g["type"] == "sighting" for g in receiver.got):
        time.sleep(0.05)
    alert = next((g for g in receiver.got if g["type"] == "sighting"), None)
    if alert is None:
        raise TimeoutError("no sighting alert reached the receiver")
    data = alert["data"]
    say(
        f"receiver got a signed '{alert['type']}' alert (HMAC verified): {data['list']} entry "
        f"{data['seq']}, {data['disposition']} by {data['reporter']}; no hash values"
    )
