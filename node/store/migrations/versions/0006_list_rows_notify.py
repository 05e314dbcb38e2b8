"""change feed: notify listeners when a list's row changes too (PostgreSQL only)

A label, a freeze or a new owner's description changes ``hash_list``, not
``list_state``; every serving process decides visibility on the rows it
keeps in memory, so they must hear of it at commit, not at the next poll.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # The function of revision 0003: same channel, same payload.
    op.execute(
        """
        CREATE TRIGGER hash_list_notify AFTER INSERT OR UPDATE ON hash_list
        FOR EACH ROW EXECUTE FUNCTION hashfed_notify_list_state()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS hash_list_notify ON hash_list")
