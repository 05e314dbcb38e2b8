"""``hashfed pull``: a partner's verified copy of a feed, as one sorted file per hash type.

One pull, module by module::

    fetch   GET /feeds/v1/{label}/entries?format=ndjson[&since=<cursor>]  → spool file
    verify  the spool, list by list, each through federation.trusted_state.ListUpdate
            (the one verifier of a list, whoever fetched it) against the owners'
            keys the user trusts (trust), never a key the server sends:
                checkpoint signature and origin, date not in the future
                size not below the last accepted one     (rollback)
                same size, same root; an extension of it (fork)
                not older than --max-age                 (freeze)
                cosigned by --witness-quorum of the --witness keys   (split view)
                stored right edge + new leaves = signed root  (tampered, dropped, reordered)
    apply   only then: new per-list files (new generation names; the old ones stay),
            the output files DIR/<type>.txt (temporary file + os.replace each),
            DIR/.hashfed-state.json (state, last, atomically)

``files`` holds the sorted files and the net changes; ``pull`` runs the
steps; ``cli`` is the command (imported by api/cli.py, not here, so that
using this package adds no command).

Working folder ``DIR/.hashfed/``: ``spool.ndjson`` (the download),
``lists/<owner>/<name>/<type>.<generation>.txt`` (each list's hashes, sorted),
``pending`` (the marker), ``tmp/`` (sorted runs of large pulls). Memory stays
bounded by the run size (``files.RUN_ENTRIES``), not by the feed.
"""

from __future__ import annotations

from federation.feed_pull.fetch import DEFAULT_MAX_BYTES
from federation.feed_pull.pull import PullResult, pull
from federation.feed_pull.state import STATE_FILE, ListState, PullState
from federation.feed_pull.trust import Witnesses, load_trust, load_witnesses
from federation.feed_pull.verify import FeedVerifier

__all__ = [
    "DEFAULT_MAX_BYTES",
    "STATE_FILE",
    "FeedVerifier",
    "ListState",
    "PullResult",
    "PullState",
    "Witnesses",
    "load_trust",
    "load_witnesses",
    "pull",
]
