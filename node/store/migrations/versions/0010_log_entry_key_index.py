"""log_entry: an index on (list_id, hash_type, value)

Every entry of one key (its adds and removes) is found by a search instead
of a scan of the list's log: the TAXII feed asks this for each key a list
removed, and a scan of a 1M-entry log took seconds on the first page after
a removal.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_log_entry_key", "log_entry", ["list_id", "hash_type", "value"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_log_entry_key", table_name="log_entry")
