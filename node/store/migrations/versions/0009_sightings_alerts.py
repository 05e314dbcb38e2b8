"""sightings (opt-in, relay queue, replay guard) and alerts (webhooks, events, outbox)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "sighting_optin",
        sa.Column("principal", _S(length=63), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("principal"),
    )
    op.create_table(
        "sighting",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", _S(length=64), nullable=False),
        sa.Column("owner", _S(length=63), nullable=False),
        sa.Column("name", _S(length=100), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("reporter", _S(length=63), nullable=False),
        sa.Column("disposition", _S(length=16), nullable=False),
        sa.Column("reason", _S(length=32), nullable=True),
        sa.Column("seen_s", sa.BigInteger(), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.Column("via", _S(length=63), nullable=False),
        sa.Column("note", _S(length=4096), nullable=False),
        sa.Column("status", _S(length=16), nullable=False),
        sa.Column("next_hop", _S(length=63), nullable=True),
        sa.Column("attempts", sa.BigInteger(), nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_error", _S(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest"),
    )
    op.create_index("ix_sighting_list_seq", "sighting", ["owner", "name", "seq"])
    op.create_index("ix_sighting_status_next", "sighting", ["status", "next_attempt_ms"])
    op.create_table(
        "webhook",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", _S(length=2000), nullable=False),
        sa.Column("events", _S(length=500), nullable=False),
        sa.Column("include_hashes", sa.Boolean(), nullable=False),
        sa.Column("secret", _S(length=128), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "alert_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_type", _S(length=32), nullable=False),
        sa.Column("payload", _S(length=65536), nullable=False),
        sa.Column("dedupe_key", _S(length=300), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("status", _S(length=16), nullable=False),
        sa.Column("attempts", sa.BigInteger(), nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=False),
        sa.Column("lease_until_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", _S(length=500), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("delivered_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["event_id"], ["alert_event.id"]),
        sa.ForeignKeyConstraint(["webhook_id"], ["webhook.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhook_delivery_due", "webhook_delivery", ["status", "next_attempt_ms"])


def downgrade() -> None:
    op.drop_index("ix_webhook_delivery_due", table_name="webhook_delivery")
    op.drop_table("webhook_delivery")
    op.drop_table("alert_event")
    op.drop_table("webhook")
    op.drop_index("ix_sighting_status_next", table_name="sighting")
    op.drop_index("ix_sighting_list_seq", table_name="sighting")
    op.drop_table("sighting")
    op.drop_table("sighting_optin")
