"""The only package of hashfed that dials out (webhooks aside: federation/webhooks.py).

One client per kind of server, each turning every network failure into a
``PeerError`` in one place and bounding every response:

    peer     PeerClient: a peer's federation endpoints, over mutual TLS
    admin    AdminClient: a node's own admin API (the demo, benchmarks, scans)
    feed     FeedClient: a node's industry feeds (``hashfed pull``)
    connect  trust anchors, TLS client contexts, what the clients share
"""

from __future__ import annotations

from federation.client.admin import AdminClient
from federation.client.connect import cert_context, token_context, trust_anchors
from federation.client.feed import FEED_MAX_BYTES, FeedClient, Fetched
from federation.client.peer import PeerClient

__all__ = [
    "FEED_MAX_BYTES",
    "AdminClient",
    "FeedClient",
    "Fetched",
    "PeerClient",
    "cert_context",
    "token_context",
    "trust_anchors",
]
