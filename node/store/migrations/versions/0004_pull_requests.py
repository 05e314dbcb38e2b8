"""pull requests handed from any serve process to the scheduler holder

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('pull_request',
    sa.Column('peer', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('requested_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('peer')
    )


def downgrade() -> None:
    op.drop_table('pull_request')
