"""Webhook deliveries seen (dedupe) and alert groups open (one run per firing group).

Revision ID: 0003_webhook_deliveries
Revises: 0002_slack_notifier
Create Date: 2025-01-03

Kept apart from the timeline: a group's state moves (firing -> resolved -> firing),
which the append-only events table must never do.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0003_webhook_deliveries"
down_revision = "0002_slack_notifier"
branch_labels = None
depends_on = None


def _utc() -> sa.types.TypeEngine[datetime]:
    """timestamptz on PostgreSQL; fixed-width ISO text ending in Z on SQLite."""
    return sa.DateTime(timezone=True).with_variant(sa.String(32), "sqlite")


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("delivery_id", sa.String(255), primary_key=True),
        sa.Column("received_at", _utc(), nullable=False),
    )
    op.create_table(
        "alert_groups",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("group_hash", sa.String(64), primary_key=True),
        sa.Column("group_key", sa.Text, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.CheckConstraint(
            "state IN ('firing', 'resolved', 'failed')", name="ck_alert_groups_state"
        ),
    )


def downgrade() -> None:
    op.drop_table("alert_groups")
    op.drop_table("webhook_deliveries")
