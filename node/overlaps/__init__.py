"""Overlaps between the lists of different owners, and allow-lists that suppress them.

OverlapDetector   trails the log follower, checks new entries in batches
report            the overlaps a principal may see, grouped by list pair
"""

from node.overlaps.detector import OverlapDetector, OverlapListener
from node.overlaps.report import PairReport, overlap_report, parse_since

__all__ = [
    "OverlapDetector",
    "OverlapListener",
    "PairReport",
    "overlap_report",
    "parse_since",
]
