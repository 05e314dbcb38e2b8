"""In-memory match indexes: exact keys (md5, sha1, sha256, opaque) and PDQ codes.

Both indexes hold (key, ref) rows: ``ref`` is an opaque int64 the caller packs
(list id, category...), and the same key may appear under several refs. Both
take adds and removes that are visible as soon as the call returns, and a
``merge()`` that a background thread may run while queries go on.

    ExactIndex(width)   sorted uint64 prefixes + a bucket table, <= 44 B/key
    PdqIndex()          multi-index hashing over 11 x 23-bit substrings,
                        exact for any distance, ~96 B/code
    brute_force_pdq()   the plain reference PdqIndex is tested against
"""

from node.match.index._exact import ExactIndex
from node.match.index._hamming import brute_force_pdq
from node.match.index._pdq import PdqIndex

__all__ = ["ExactIndex", "PdqIndex", "brute_force_pdq"]
