"""The one writer: every change to a list, each in one transaction with its audit record.

Nothing else changes a list (a test reads the source to keep it so). The
callers decide *what* to change — the CLI and API through :class:`node.node.Node`,
the federation layer after :mod:`federation.trusted_state` verified an update —
and this package decides it against the list's state as read *inside* the
transaction, under the list's lock (:meth:`node.store.Store.change_list`).
Concurrent writers therefore queue instead of failing: the second add reads
the size the first one committed.

Each function returns what its callers emit to this process's indexes
(:class:`~node.log.lists.Committed`), after the commit.

The writer is this package, one module per kind of change: ``create``
(new lists), ``local`` (entries of our own lists), ``imports`` (a file's
hashes into one of our lists, streamed), ``signing`` (checkpoints
of our own lists) and ``received`` (lists pulled from peers). Callers use
it as ``from node.log import writer``.
"""

from __future__ import annotations

from node.log.writer.create import create_local, create_received
from node.log.writer.imports import import_items
from node.log.writer.local import AddRequest, add_batch, add_hashes, remove_hashes
from node.log.writer.received import (
    Verified,
    apply_verified,
    follow_metadata,
    record_evidence,
    refresh,
    set_frozen,
)
from node.log.writer.signing import add_cosignatures_to_latest, heartbeat, publish

__all__ = [
    "AddRequest",
    "Verified",
    "add_batch",
    "add_cosignatures_to_latest",
    "add_hashes",
    "apply_verified",
    "create_local",
    "create_received",
    "follow_metadata",
    "heartbeat",
    "import_items",
    "publish",
    "record_evidence",
    "refresh",
    "remove_hashes",
    "set_frozen",
]
