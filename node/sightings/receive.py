"""Accepting a signed sighting: verify, refuse replays and stale notes, record or queue."""

from __future__ import annotations

import time
from dataclasses import dataclass

from crypto.errors import ForbiddenError, InputError, UnknownListError
from crypto.sighting import (
    Sighting,
    new_nonce,
    sighting_digest,
    sign_sighting,
    unverified_reporter,
    verify_sighting,
)
from node.alerts import emit
from node.identity.principals import Principal
from node.identity.visibility import may_see
from node.node import Node

# Sightings this node's operator reports arrive through no principal.
LOCAL_VIA = "local"


class ReplayedSightingError(InputError):
    """A sighting whose signed text was received before."""

    code = "replayed_sighting"

    def __init__(self) -> None:
        super().__init__("this sighting was received before (replay refused)", where="note")


class SightingTimeError(InputError):
    code = "sighting_time"

    def __init__(self, reason: str) -> None:
        super().__init__(reason, where="note.when")


@dataclass(frozen=True)
class Accepted:
    sighting: Sighting
    status: str  # recorded | forward
    next_hop: str | None


def accept(
    node: Node, note: str, *, via: str, principal: Principal | None = None, now: float | None = None
) -> Accepted:
    """Verify ``note`` and record it (our list) or queue it for the next hop.

    ``principal`` (None for the local operator) must have been opted in and
    must be cleared for the list: one it may not see is an unknown list.

    Raises:
        ForbiddenError: the principal may not send sightings here.
        VerificationError: forged, altered, or signed by someone else than the reporter.
        SightingTimeError: in the future, or older than ``sightings.max_age_seconds``.
        UnknownListError: no such list here, or not one the principal may see.
        ReplayedSightingError: the same signed text came before.
        InputError: the entry does not exist, or there is no route to the owner.
    """
    store = node.store
    settings = node.settings
    if principal is not None and principal.name not in store.sighting_optins():
        raise ForbiddenError(reason=f"principal {principal.name!r} may not send sightings here")
    s = verify_sighting(note, node.verifiers_for(unverified_reporter(note)))
    t = time.time() if now is None else now
    if s.when > t + settings.max_clock_skew_seconds:
        raise SightingTimeError("the sighting is dated in the future")
    if s.when < t - settings.sightings.max_age_seconds:
        raise SightingTimeError("the sighting is older than sightings.max_age_seconds")
    row = store.get_list(owner=s.owner, name=s.name)
    if row is None or (principal is not None and not may_see(principal, row)):
        raise UnknownListError(list_name=s.list_name)
    ours = row.local and row.owner == node.node_id
    if ours:
        size = store.get_state(list_id=row.id).size
        if s.seq >= size:
            raise InputError(f"{s.list_name} has no entry {s.seq}", where="note.seq")
        status, hop = "recorded", None
    else:
        if row.source_peer is None:
            raise InputError(f"no route toward the owner of {s.list_name}", where="note.list")
        status, hop = "forward", row.source_peer
    fresh = store.add_sighting(
        digest=sighting_digest(note),
        owner=s.owner,
        name=s.name,
        seq=s.seq,
        reporter=s.reporter,
        disposition=s.disposition,
        reason=s.reason,
        seen_s=s.when,
        via=via,
        note=note,
        status=status,
        next_hop=hop,
        audit=(
            via,
            "sighting.recorded" if ours else "sighting.queued",
            s.list_name,
            1,
            {"seq": s.seq, "reporter": s.reporter, "disposition": s.disposition},
        ),
    )
    if not fresh:
        raise ReplayedSightingError()
    if ours:
        emit(
            store,
            "sighting",
            {
                "list": s.list_name,
                "seq": s.seq,
                "reporter": s.reporter,
                "disposition": s.disposition,
                "reason": s.reason,
                "when": s.when,
            },
        )
    return Accepted(s, status, hop)


def report(
    node: Node,
    full_name: str,
    seq: int,
    *,
    disposition: str,
    reason: str | None = None,
    when: int | None = None,
) -> Accepted:
    """Sign a sighting as this node and accept it locally (recorded, or queued to relay)."""
    if "/" not in full_name:
        raise InputError("expected owner/name", where="list")
    s = Sighting(
        list_name=full_name,
        seq=seq,
        when=int(time.time()) if when is None else when,
        reporter=node.node_id,
        disposition=disposition,
        reason=reason,
        nonce=new_nonce(),
    )
    from crypto.sighting import MalformedSightingError

    try:
        note = sign_sighting(s, node.signer)
    except MalformedSightingError as exc:
        raise InputError(exc.reason, where="sighting") from None
    return accept(node, note, via=LOCAL_VIA)
