"""Sightings: verified reports of an owner's entries, recorded or relayed toward the owner.

:func:`accept` takes a signed note from a peer (or from this node's own
operator), verifies it with the reporter's keys, refuses a replay, and
either records it (this node owns the list) or queues it for the next hop
(the peer the list was pulled from). federation/sightings.py sends the
queue; :mod:`node.sightings.review` is what the owner sees and removes.
"""

from __future__ import annotations

from node.sightings.receive import (
    LOCAL_VIA,
    ReplayedSightingError,
    SightingTimeError,
    accept,
    report,
)
from node.sightings.review import flagged_entries, remove_flagged, sighting_stats

__all__ = [
    "LOCAL_VIA",
    "ReplayedSightingError",
    "SightingTimeError",
    "accept",
    "flagged_entries",
    "remove_flagged",
    "report",
    "sighting_stats",
]
