"""Incidents, runs, the hash-chained event log, and its append-only triggers.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

The triggers are the database's own refusal to change history: even a bug or a stray
``psql`` session cannot UPDATE or DELETE an event without first dropping them, and the
hash chain then shows what changed.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS = "0" * 64
REFUSAL = "irbot: timeline events are append-only"


def _utc() -> sa.types.TypeEngine[datetime]:
    """timestamptz on PostgreSQL; fixed-width ISO text ending in Z on SQLite."""
    return sa.DateTime(timezone=True).with_variant(sa.String(32), "sqlite")


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("number", sa.Integer, nullable=False, unique=True),
        sa.Column("key", sa.String(255), nullable=False, unique=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("severity", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("playbook", sa.String(255)),
        sa.Column("opened_at", _utc(), nullable=False),
        sa.Column("closed_at", _utc()),
        sa.Column("slack_channel", sa.String(64)),
        sa.Column("slack_thread_ts", sa.String(64)),
        sa.Column("pagerduty_incident", sa.String(255)),
        sa.CheckConstraint("status IN ('open', 'resolved', 'closed')", name="ck_incidents_status"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("incident_id", sa.String(32), sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("playbook", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("requester", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc()),
        sa.Column("detail", sa.Text),
        sa.Column("breakglass", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_runs_incident_id", "runs", ["incident_id"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("incident_id", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(255)),
        sa.Column("step_id", sa.String(255)),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_events_incident_id", "events", ["incident_id"])
    op.create_index("ix_events_run_id", "events", ["run_id"])
    chain_head = op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_chain_head_single_row"),
    )
    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    )
    op.bulk_insert(chain_head, [{"id": 1, "seq": 0, "hash": GENESIS}])
    op.bulk_insert(counters, [{"name": "incident", "value": 0}])
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_triggers()
    else:
        _sqlite_triggers()


def _postgresql_triggers() -> None:
    op.execute(
        f"""
        CREATE FUNCTION irbot_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{REFUSAL} (% on %)', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER events_no_update_or_delete BEFORE UPDATE OR DELETE ON events "
        "FOR EACH ROW EXECUTE FUNCTION irbot_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events "
        "FOR EACH STATEMENT EXECUTE FUNCTION irbot_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER chain_head_no_delete BEFORE DELETE OR TRUNCATE ON chain_head "
        "FOR EACH STATEMENT EXECUTE FUNCTION irbot_refuse_change()"
    )


def _sqlite_triggers() -> None:
    for name, when in (
        ("events_no_update", "BEFORE UPDATE ON events"),
        ("events_no_delete", "BEFORE DELETE ON events"),
        ("chain_head_no_delete", "BEFORE DELETE ON chain_head"),
    ):
        op.execute(f"CREATE TRIGGER {name} {when} BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END")


def downgrade() -> None:
    raise NotImplementedError("the timeline is append-only: irbot never drops its first schema")
