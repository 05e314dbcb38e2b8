"""principals bound to their issuer and key; revoked keys

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('revoked_key',
    sa.Column('public_key', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('revoked_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('public_key')
    )
    with op.batch_alter_table('principal') as batch:
        batch.add_column(sa.Column('issuer_fingerprint', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True))
        batch.add_column(sa.Column('public_key', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('principal') as batch:
        batch.drop_column('public_key')
        batch.drop_column('issuer_fingerprint')
    op.drop_table('revoked_key')
