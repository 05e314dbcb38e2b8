"""change feed: notify listeners when a list's log grows (PostgreSQL only)

Every serving process LISTENs on this channel to apply what other processes
committed (node/store/changes.py). SQLite needs nothing: its watchers poll
``PRAGMA data_version``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Must equal node.store.changes.CHANGE_CHANNEL (a migration keeps its own copy).
_CHANNEL = "hashfed_list_state"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # The payload is the table's schema: nodes that share a database in
    # separate schemas ignore each other's notifications. NOTIFY is delivered
    # at commit, and identical notifications in one transaction fold into one.
    op.execute(
        f"""
        CREATE FUNCTION hashfed_notify_list_state() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify('{_CHANNEL}', TG_TABLE_SCHEMA);
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE TRIGGER list_state_notify AFTER INSERT OR UPDATE ON list_state
        FOR EACH ROW EXECUTE FUNCTION hashfed_notify_list_state()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS list_state_notify ON list_state")
    op.execute("DROP FUNCTION IF EXISTS hashfed_notify_list_state()")
