"""List kinds: ``block`` (hashes to find, the default) and ``allow`` (known-benign hashes).

An allow-list is signed and shared like any list. Wherever it is held, a
hash on it (exact, or a PDQ code within the list's own ``allow_distance``)
matches nothing and overlaps nothing.
"""

from __future__ import annotations

from crypto.errors import InputError

BLOCK_KIND = "block"
ALLOW_KIND = "allow"
KINDS = (BLOCK_KIND, ALLOW_KIND)
# An allow-list's PDQ distance: wider would let benign look-alikes hide real material.
MAX_ALLOW_DISTANCE = 31


def check_kind(kind: str, allow_distance: int) -> tuple[str, int]:
    """A valid ``(kind, allow_distance)``; InputError naming the field otherwise.

    A block list's distance is always 0: it means nothing there.
    """
    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}, got {kind[:20]!r}", where="kind")
    if not 0 <= allow_distance <= MAX_ALLOW_DISTANCE:
        raise InputError(
            f"allow distance must be 0..{MAX_ALLOW_DISTANCE}, got {allow_distance}",
            where="allow_distance",
        )
    return kind, allow_distance if kind == ALLOW_KIND else 0
