"""All database access. Nothing else in hashfed talks to the database.

The engine is SQLite (WAL) in the node's data folder by default, or
PostgreSQL from a URL. Hot paths (appends, entry and content scans) use
SQLAlchemy Core statements in batches, never one ORM object per row.

The queries are split by what they store, one module each; :class:`Store`
puts them together, so callers hold one object:

- ``engine``: engine, migrations, transactions, the raw driver paths;
- ``lists``: list rows and metadata;
- ``log``: entries, content and list state (appends, scans);
- ``checkpoints``: signed checkpoints, accepted and evidence;
- ``audit``: the chained audit records;
- ``principals``: principals and API tokens;
- ``federation``: peer health, offers, evidence, the scheduler lock;
- ``changes``: list sizes and a wake-up on any commit (the change feed).
- ``pull_requests``: notifies handed to the process that runs the scheduler.
- ``cases``: sightings (opt-in, relay queue, counts) and alerts (webhooks, outbox).
- ``overlaps``: overlaps between lists and the detector's watermarks.
- ``witness``: the newest checkpoint this node cosigned per origin, as a witness.
"""

from __future__ import annotations

from node.store.audit import AUDIT_GENESIS, audit_record_hash
from node.store.cases import CaseQueries
from node.store.changes import ChangeQueries, ChangeWatch
from node.store.dashboard import DashboardQueries
from node.store.engine import MIGRATIONS_DIR, create_db_engine, now_ms, run_migrations
from node.store.errors import ANY_DB_ERROR, DB_ERRORS, translate_db_error
from node.store.federation import FederationQueries
from node.store.lists import ListQueries
from node.store.log import AuditTuple, ListChange, ListTxn, LogQueries
from node.store.overlaps import OverlapQueries, OverlapRow, PairCount
from node.store.principals import PrincipalQueries
from node.store.pull_requests import PullRequestQueries
from node.store.rows import (
    AuditRow,
    CheckpointRow,
    ContentTuple,
    EntryTuple,
    ListRow,
    PrincipalRow,
    StateRow,
)
from node.store.witness import Witnessed, WitnessQueries

__all__ = [
    "ANY_DB_ERROR",
    "AUDIT_GENESIS",
    "DB_ERRORS",
    "MIGRATIONS_DIR",
    "AuditRow",
    "AuditTuple",
    "ChangeWatch",
    "CheckpointRow",
    "ContentTuple",
    "EntryTuple",
    "ListChange",
    "ListRow",
    "ListTxn",
    "OverlapRow",
    "PairCount",
    "PrincipalRow",
    "StateRow",
    "Store",
    "Witnessed",
    "audit_record_hash",
    "create_db_engine",
    "now_ms",
    "run_migrations",
    "translate_db_error",
]


class Store(
    ListQueries,
    LogQueries,
    PrincipalQueries,
    FederationQueries,
    ChangeQueries,
    PullRequestQueries,
    CaseQueries,
    DashboardQueries,
    OverlapQueries,
    WitnessQueries,
):
    """The node's database. Methods take keyword arguments; rows come back frozen."""
