"""Executor leases: which process holds which DBOS executor id, and when it last beat.

Revision ID: 0004_executors
Revises: 0003_webhook_deliveries
Create Date: 2026-11-28
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0004_executors"
down_revision = "0003_webhook_deliveries"
branch_labels = None
depends_on = None


def _utc() -> sa.types.TypeEngine[datetime]:
    """timestamptz on PostgreSQL; fixed-width ISO text ending in Z on SQLite."""
    return sa.DateTime(timezone=True).with_variant(sa.String(32), "sqlite")


def upgrade() -> None:
    op.create_table(
        "executors",
        sa.Column("executor_id", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("beat_at", _utc(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("executors")
