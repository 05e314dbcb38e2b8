"""A peer that misbehaves on purpose: a real HTTPS server process serving crafted answers.

Run as ``python _misbehaving_peer.py SCENARIO.json``. It speaks the federation
protocol's URLs over mutual TLS (it requires the receiver's certificate),
and answers from the scenario file, which it re-reads on every request so a
test can switch scenarios without a restart::

    {
      "port": 12345, "cert": "...", "key": "...", "pinned": ["receiver.crt"],
      "node_info": {...},
      "catalog": {...},                          # served as is
      "lists": {"a/x": {"lines": ["{...}", ...], # entry lines, without newlines
                        "proofs": {"10-20": ["<hex>", ...]}}},
      "mode": "normal" | "oversize" | "endless" | "slow"
    }

Modes for entries: ``oversize`` sends more entries than asked for;
``endless`` sends the page and then repeats its last line forever;
``slow`` sends one line a second. The test process writes scenarios with the
real owner's signing key, so checkpoints verify and only the misbehaviour is
wrong.
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from crypto.tls import server_context  # noqa: E402

SCENARIO: Path


def _load() -> dict[str, Any]:
    scenario: dict[str, Any] = json.loads(SCENARIO.read_text())
    return scenario


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # close-delimited bodies: an endless one is possible

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        self._json({"scheduled": False}, 202)

    def do_GET(self) -> None:
        sc = _load()
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        if url.path == "/healthz":
            return self._json({"status": "ok"})
        if url.path == "/federation/v1/node":
            return self._json(sc["node_info"])
        if url.path == "/federation/v1/lists":
            return self._json(sc["catalog"])
        if len(parts) >= 6 and parts[:3] == ["federation", "v1", "lists"]:
            name = f"{parts[3]}/{parts[4]}"
            lst = sc["lists"].get(name)
            if lst is None:
                return self._json({"error": "unknown_list", "detail": "no such list"}, 404)
            if parts[5] == "entries":
                return self._entries(sc, lst, int(q["start"]), int(q["limit"]))
            if parts[5:] == ["proof", "consistency"]:
                key = f"{q['from']}-{q['to']}"
                return self._json(
                    {
                        "from": int(q["from"]),
                        "to": int(q["to"]),
                        "proof": lst.get("proofs", {}).get(key, []),
                    }
                )
        return self._json({"error": "not_found", "detail": self.path}, 404)

    def _entries(self, sc: dict[str, Any], lst: dict[str, Any], start: int, limit: int) -> None:
        lines: list[str] = lst["lines"]
        mode = sc.get("mode", "normal")
        page = lines[start : start + limit]
        if mode == "oversize":
            page = lines[start : start + limit] + lines[: limit + 5]
        self.send_response(200)
        self.send_header("content-type", "application/x-ndjson")
        self.end_headers()
        try:
            if mode == "slow":
                for line in page:
                    self.wfile.write((line + "\n").encode())
                    self.wfile.flush()
                    time.sleep(1.0)
                return
            self.wfile.write("".join(line + "\n" for line in page).encode())
            if mode == "endless":
                chunk = ((page[-1] if page else "{}") + "\n").encode() * 1000
                while True:
                    self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError, OSError):
            return


def main() -> None:
    global SCENARIO
    SCENARIO = Path(sys.argv[1])
    sc = _load()
    ctx = server_context(sc["cert"], sc["key"], pinned_cert_files=sc["pinned"])
    server = ThreadingHTTPServer(("127.0.0.1", sc["port"]), Handler)
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
