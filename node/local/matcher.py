"""The matcher boundary: what a scan asks (:class:`Query`), what it gets back
(:class:`Hit`) and who answers (:class:`Matcher`: a local index or a remote node).

Only hashes cross it. Which queries a file's hashes make is decided here:
PDQ hashes below :data:`node.local.hashing.PDQ_MIN_QUALITY` are not sent, and
an image with an EXIF orientation tag sends its PDQ hash both as stored and
as displayed, tagged with the variant so that a hit can say which one matched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from node.local.hashing import FileHashes

__all__ = ["AS_STORED", "ORIENTED", "Hit", "Matcher", "Query", "queries_for", "tagged_queries"]


@dataclass(frozen=True)
class Query:
    """One hash to look up: ``type`` is md5, sha1, sha256 or pdq; ``value`` lower-case hex."""

    type: str
    value: str


@dataclass(frozen=True)
class Hit:
    """One list entry a query matched; ``distance`` is 0 for exact types.

    ``variant`` says which PDQ hash of the file matched: ``"as_stored"`` (the
    pixels as stored, Meta's hash) or ``"oriented"`` (the pixels with the
    EXIF orientation applied); None for exact types. Matchers leave it None;
    the scan fills it in.
    """

    list_name: str
    owner: str
    category: str
    hash_type: str
    distance: int
    variant: str | None = None


class Matcher(Protocol):
    """Looks hashes up (a local index or a remote node)."""

    def match(self, queries: Sequence[Query], *, max_distance: int) -> list[list[Hit]]:
        """One list of hits per query, in order. Raises on failure."""
        ...


AS_STORED = "as_stored"
ORIENTED = "oriented"


def tagged_queries(h: FileHashes) -> list[tuple[Query, str | None]]:
    """The queries one file's hashes make, each with its PDQ variant (None: exact).

    The exact hashes always; PDQ of the pixels as stored if usable, and of the
    pixels as displayed if the image has one and it is usable.
    """
    if not h.hashed:
        return []
    out: list[tuple[Query, str | None]] = [
        (Query("md5", h.md5), None),
        (Query("sha1", h.sha1), None),
        (Query("sha256", h.sha256), None),
    ]
    if h.pdq is not None and h.pdq_usable:
        out.append((Query("pdq", h.pdq), AS_STORED))
    if h.pdq_oriented is not None and h.pdq_oriented_usable:
        out.append((Query("pdq", h.pdq_oriented), ORIENTED))
    return out


def queries_for(h: FileHashes) -> list[Query]:
    """The queries one file's hashes make (see :func:`tagged_queries`)."""
    return [q for q, _ in tagged_queries(h)]
