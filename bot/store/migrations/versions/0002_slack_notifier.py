"""The Slack notifier's memory: its timeline cursor and the messages it posted.

Revision ID: 0002_slack_notifier
Revises: 0001
Create Date: 2025-01-02

Kept apart from the timeline: these rows change (a cursor moves, a message gets its ts),
which the append-only events table must never do.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0002_slack_notifier"
down_revision = "0001"
branch_labels = None
depends_on = None


def _utc() -> sa.types.TypeEngine[datetime]:
    """timestamptz on PostgreSQL; fixed-width ISO text ending in Z on SQLite."""
    return sa.DateTime(timezone=True).with_variant(sa.String(32), "sqlite")


def upgrade() -> None:
    op.create_table(
        "notifier_cursors",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
    )
    op.create_table(
        "slack_messages",
        sa.Column("incident_id", sa.String(32), sa.ForeignKey("incidents.id"), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("ts", sa.String(64)),
        sa.Column("updated_at", _utc(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("slack_messages")
    op.drop_table("notifier_cursors")
