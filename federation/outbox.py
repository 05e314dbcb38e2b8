"""The background loop that empties both outboxes: sightings to relay, alerts to deliver.

Runs in every serve process (the tables' leases and statuses keep them from
doing the same work twice) every ``_EVERY_SECONDS``; a failure is logged and
the loop goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from federation.sightings import relay_due
from federation.webhooks import deliver_due
from node.node import Node

__all__ = ["OutboxWorker"]

log = logging.getLogger("hashfed.outbox")

_EVERY_SECONDS = 0.25


class OutboxWorker:
    def __init__(self, node: Node, *, every: float = _EVERY_SECONDS) -> None:
        self.node = node
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> None:
        relay_due(self.node)
        deliver_due(self.node.store, self.node.settings.alerts, node_id=self.node.node_id)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.run_once()
            except Exception:  # pragma: no cover - logged, the loop must survive
                log.exception("outbox run failed")

    def start(self) -> Callable[[], None]:
        self._thread = threading.Thread(target=self._loop, name="outbox", daemon=True)
        self._thread.start()
        return self.stop

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)


def with_outbox(start: Callable[[Any], Callable[[], None]]) -> Callable[[Any], Callable[[], None]]:
    """Wrap a serve ``on_start`` hook so the outbox worker runs beside it."""

    def both(state: Any) -> Callable[[], None]:
        stop_first = start(state)
        worker = OutboxWorker(state.node)
        stop_worker = worker.start()

        def stop() -> None:
            stop_worker()
            stop_first()

        return stop

    return both
