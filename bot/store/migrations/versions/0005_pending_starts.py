"""Runs a webhook delivery was answered for but that have not started yet.

Revision ID: 0005_pending_starts
Revises: 0004_executors
Create Date: 2026-11-28

A delivery is answered before its run starts (the sender's deadline); the start is
written here first, so a crash between the answer and the start loses nothing.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0005_pending_starts"
down_revision = "0004_executors"
branch_labels = None
depends_on = None


def _utc() -> sa.types.TypeEngine[datetime]:
    """timestamptz on PostgreSQL; fixed-width ISO text ending in Z on SQLite."""
    return sa.DateTime(timezone=True).with_variant(sa.String(32), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pending_starts",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pending_starts")
