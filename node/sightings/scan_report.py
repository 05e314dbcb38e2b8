"""The scan report's "report these": a sighting of every list entry a local scan found.

Only hits whose stored entry is known exactly are reported: exact types, and
PDQ at distance 0 (the entry holds the file's own code). A near PDQ hit does
not say which entry's code it was near, so it is counted as skipped. One
sighting per (list, entry) per scan, however many files matched it. Nothing
of the file (name, path, content) goes into a sighting.
"""

from __future__ import annotations

from dataclasses import dataclass

from crypto.errors import HashfedError
from node.local.results import ScanResult
from node.node import Node
from node.sightings.receive import report

__all__ = ["ScanReported", "report_scan"]

_EXACT = ("md5", "sha1", "sha256")


@dataclass(frozen=True)
class ScanReported:
    reported: int
    skipped: int  # near PDQ hits, or entries no longer in the list
    failed: int  # refused here (e.g. a list with no route to its owner)


def report_scan(node: Node, result: ScanResult, *, disposition: str = "seen") -> ScanReported:
    wanted: dict[tuple[str, str, str], None] = {}
    skipped = 0
    for f in result.known:
        for hit in f.hits:
            if hit.hash_type in _EXACT:
                value = getattr(f.hashes, hit.hash_type)
            elif hit.hash_type == "pdq" and hit.distance == 0:
                value = f.hashes.pdq_oriented if hit.variant == "oriented" else f.hashes.pdq
            else:
                skipped += 1
                continue
            if value:
                wanted[(hit.list_name, hit.hash_type, value)] = None
    seqs: dict[tuple[str, int], None] = {}
    for list_name, htype, value in wanted:
        row = node.get_list(list_name)
        got = node.store.content_of(list_id=row.id, keys=[(htype, value)])
        if (htype, value) in got:
            seqs[(list_name, got[(htype, value)][1])] = None
        else:
            skipped += 1
    reported = failed = 0
    for list_name, seq in seqs:
        try:
            report(node, list_name, seq, disposition=disposition)
            reported += 1
        except HashfedError:
            failed += 1
    return ScanReported(reported, skipped, failed)
