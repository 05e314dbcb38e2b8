"""Collecting witnesses' cosignatures for this node's own lists (the log's side of tlog-witness).

A peer configured with ``cosigns = true`` witnesses our lists: after we sign
a checkpoint of a list that peer may receive, we submit it to the peer's
``add-checkpoint`` endpoint (c2sp.org/tlog-witness) with a consistency proof
from the last tree it cosigned, and store the cosignature line it returns
with the checkpoint (``writer.add_cosignatures_to_latest``). Every receiver
then gets the witnesses' cosignatures with the owner's note, and one whose
policy requires them (``witnesses``, ``witness_quorum``) refuses a tree that
no witness has seen: the owner, or whoever holds its key, cannot show two
peers two different lists unnoticed.

The size each witness last cosigned is remembered in memory; after a restart
the first submission says ``old 0``, the witness answers 409 with its size,
and the second one carries the proof from there, as the spec intends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from config import PeerSettings
from crypto.checkpoint import list_origin
from crypto.cosignature import signer_names
from crypto.errors import HashfedError, PeerTimeoutError, PeerUnreachableError
from federation.client import PeerClient
from federation.policy import may_receive
from node.identity.principals import from_row
from node.log import writer
from node.log.proofs import ProofCache
from node.node import Node
from node.store import CheckpointRow, ListRow

__all__ = ["WitnessSubmitter"]

log = logging.getLogger("hashfed.witness")

# old 0 → 409 with the witness's size → the submission from that size.
_TRIES = 2
# A witness found down is tried again after this long (the scheduler's retry job).
REST_SECONDS = 30.0


class WitnessSubmitter:
    """Submits this node's new checkpoints to the peers that witness them."""

    def __init__(self, node: Node, proofs: ProofCache) -> None:
        self._node = node
        self._proofs = proofs  # the API's: one copy of each list's tree per process
        # (witness, origin) -> the size it told us it last cosigned.
        self._witnessed_size: dict[tuple[str, str], int] = {}
        # (witness, list id) -> (size, root) whose cosignature we hold.
        self._held: dict[tuple[str, int], tuple[int, bytes]] = {}
        # witness -> monotonic time before which it is not dialled again (it was down).
        self._resting: dict[str, float] = {}

    def run(self, list_ids: Iterable[int] | None = None) -> int:
        """Submit the newest checkpoint of our lists (all, or ``list_ids``) where a witness's
        cosignature is missing.

        Returns:
            How many cosignatures were added. Failures are logged (without
            hashes) and tried again on the next run.
        """
        node = self._node
        witnesses = [p for p in node.settings.peers if p.cosigns]
        if not witnesses:
            return 0
        wanted = set(list_ids) if list_ids is not None else None
        rows = [
            r
            for r in node.store.all_lists()
            if r.local and r.owner == node.node_id and (wanted is None or r.id in wanted)
        ]
        added = 0
        for peer in witnesses:
            if self._resting.get(peer.node_id, 0.0) > time.monotonic():
                continue
            principal_row = node.store.get_principal(name=peer.node_id)
            if principal_row is None:
                continue
            principal = from_row(principal_row, via="cert")
            for row in rows:
                if not may_receive(principal, row):
                    continue  # a witness learns of a list only if it may receive it
                latest = node.store.latest_checkpoint(list_id=row.id)
                if latest is None or self._held.get((peer.node_id, row.id)) == (
                    latest.size,
                    latest.root_hash,
                ):
                    continue
                if peer.node_id in signer_names(latest.note):
                    # Cosigned before this process started: a witness signs as its node id.
                    self._held[(peer.node_id, row.id)] = (latest.size, latest.root_hash)
                    continue
                try:
                    added += self._submit(peer, row, latest)
                except (PeerUnreachableError, PeerTimeoutError) as exc:
                    # Down: no more dialling it for a while, so that the notify
                    # path that calls this does not wait on its timeouts per list.
                    self._resting[peer.node_id] = time.monotonic() + REST_SECONDS
                    log.warning("witness %s unreachable: %s", peer.node_id, exc.message)
                    break
                except HashfedError as exc:
                    log.warning(
                        "witness %s did not cosign %s: %s", peer.node_id, row.full_name, exc.message
                    )
        return added

    def _submit(self, peer: PeerSettings, row: ListRow, latest: CheckpointRow) -> int:
        node = self._node
        witness = peer.node_id
        origin = list_origin(row.owner, row.name)
        key = (witness, origin)
        with PeerClient.for_peer(node.settings, peer) as client:
            for _ in range(_TRIES):
                old = self._witnessed_size.get(key, 0)
                if old > latest.size:
                    log.warning(
                        "witness %s cosigned %s at size %d, larger than ours (%d)",
                        witness,
                        row.full_name,
                        old,
                        latest.size,
                    )
                    return 0
                proof = (
                    self._proofs.consistency(
                        node.store, list_id=row.id, size1=old, size2=latest.size
                    )
                    if 0 < old < latest.size
                    else []
                )
                answer = client.add_checkpoint(old_size=old, proof=proof, note=latest.note)
                if isinstance(answer, int):
                    self._witnessed_size[key] = answer
                    continue
                self._witnessed_size[key] = latest.size
                self._held[(witness, row.id)] = (latest.size, latest.root_hash)
                stored = writer.add_cosignatures_to_latest(
                    node.store,
                    row=row,
                    size=latest.size,
                    root_hash=latest.root_hash,
                    lines=[answer],
                    actor=f"witness:{witness}",
                )
                return int(stored)
        return 0
