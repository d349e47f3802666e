"""Webhook starts answered but not yet done: an outbox.

A delivery is answered first and its run started afterwards (the sender's deadline
covers only verify, dedupe and record). The start request is recorded here before the
answer and removed once the start has been made (or has failed for good), so a crash in
between leaves a row that the server starts again later. Starting twice is harmless: a
start is idempotent under its key.

Every function runs inside the caller's transaction (see :class:`TimelineStore`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, MetaData, String, Table, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.store.records import require_utc
from bot.store.utctime import UTCDateTime

metadata = MetaData()

pending_starts = Table(
    "pending_starts",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("request", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)


def add(session: Session, key: str, request: Mapping[str, Any], at: datetime) -> None:
    """Remember a start (a repeat of the key keeps the first)."""
    values = {"key": key, "request": dict(request), "created_at": require_utc("at", at)}
    if session.get_bind().dialect.name == "postgresql":
        session.execute(pg_insert(pending_starts).values(values).on_conflict_do_nothing())
    else:
        session.execute(sqlite_insert(pending_starts).values(values).on_conflict_do_nothing())


def remove(session: Session, key: str) -> None:
    session.execute(delete(pending_starts).where(pending_starts.c.key == key))


def older_than(session: Session, before: datetime, limit: int) -> list[tuple[str, dict[str, Any]]]:
    """Starts recorded before ``before``, oldest first: (key, request)."""
    rows = session.execute(
        select(pending_starts.c.key, pending_starts.c.request)
        .where(pending_starts.c.created_at < require_utc("before", before))
        .order_by(pending_starts.c.created_at)
        .limit(limit)
    )
    return [(row.key, dict(row.request)) for row in rows]
