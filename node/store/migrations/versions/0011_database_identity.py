"""database identity: a random id that derived files in the data folder check

Index segments (node/match/index/segment.py) record it, so a segment written
against another database (a restored backup, a changed URL) is rebuilt, not
trusted. The id is made here, once; it never changes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import secrets
import time

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "database_identity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(
        table,
        [{"id": 1, "value": secrets.token_hex(16), "created_ms": int(time.time() * 1000)}],
    )


def downgrade() -> None:
    op.drop_table("database_identity")
