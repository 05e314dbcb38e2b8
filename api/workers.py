"""``hashfed serve --workers N``: N serving processes on one machine and one port.

CPython answers requests on one core per process, so a machine with N cores
runs N processes. Each worker is a whole ``hashfed serve`` process with its
own listening socket on the same address, opened with ``SO_REUSEPORT``: the
kernel spreads new connections over them. They share what lives on the
machine: the index segments in the data folder (memory-mapped, one copy in
the page cache) and, on SQLite, the database file. Each follows the log, so
a commit in one is matchable in every other within a second; the scheduler
lock elects one worker to run the federation scheduler.

The supervisor (this module's :func:`supervise`) only starts the workers
and stops them: a worker that dies takes the others down with it, so the
service manager sees the failure and restarts the whole node.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

# How long a stopping worker gets before it is killed.
_STOP_SECONDS = 10.0


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` that other workers may bind too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def supervise(data: Path, workers: int, extra_args: list[str]) -> int:
    """Run ``workers`` worker processes until a signal or a worker's exit; returns its code."""
    argv = [sys.executable, "-c", "from api.cli import main; main()", "serve", "--data", str(data)]
    procs = [subprocess.Popen([*argv, *extra_args, "--worker"]) for _ in range(workers)]
    stopping = False

    def stop(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        while not stopping:
            done = [p for p in procs if p.poll() is not None]
            if done:
                code = done[0].returncode or 1
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + _STOP_SECONDS
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for s, h in old.items():
            signal.signal(s, h)
    return 0 if stopping else code
