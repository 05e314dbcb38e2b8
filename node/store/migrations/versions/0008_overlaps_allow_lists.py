"""list kinds (allow-lists), overlaps between lists and the detector's watermarks

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0008'
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('hash_list') as batch:
        batch.add_column(sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=8),
                                   nullable=False, server_default='block'))
        batch.add_column(sa.Column('allow_distance', sa.Integer(), nullable=False,
                                   server_default='0'))
    op.create_table('overlap',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list_a', sa.Integer(), nullable=False),
    sa.Column('seq_a', sa.BigInteger(), nullable=False),
    sa.Column('list_b', sa.Integer(), nullable=False),
    sa.Column('seq_b', sa.BigInteger(), nullable=False),
    sa.Column('hash_type', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('distance', sa.Integer(), nullable=False),
    sa.Column('found_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['list_a'], ['hash_list.id'], ),
    sa.ForeignKeyConstraint(['list_b'], ['hash_list.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('list_a', 'seq_a', 'list_b', 'seq_b', name='uq_overlap_entries')
    )
    op.create_index('ix_overlap_pair_found', 'overlap', ['list_a', 'list_b', 'found_ms'], unique=False)
    op.create_index('ix_overlap_found', 'overlap', ['found_ms'], unique=False)
    op.create_table('overlap_mark',
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['hash_list.id'], ),
    sa.PrimaryKeyConstraint('list_id')
    )


def downgrade() -> None:
    op.drop_table('overlap_mark')
    op.drop_index('ix_overlap_found', table_name='overlap')
    op.drop_index('ix_overlap_pair_found', table_name='overlap')
    op.drop_table('overlap')
    with op.batch_alter_table('hash_list') as batch:
        batch.drop_column('allow_distance')
        batch.drop_column('kind')
