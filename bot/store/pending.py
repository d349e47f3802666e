"""Webhook starts answered but not yet done: an outbox.

A delivery is answered first and its run started afterwards (the sender's deadline
covers only verify, dedupe and record). The start request is recorded here before the
answer and removed once the start has been made (or has failed for good), so a crash in
between leaves a row that the server starts again later. Starting twice is harmless: a
start is idempotent under its key.

Every function runs inside the caller's transaction (see :class:`TimelineStore`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, MetaData, String, Table, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.store import deliveries
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


_ADD = {
    "postgresql": pg_insert(pending_starts).on_conflict_do_nothing(),
    "sqlite": sqlite_insert(pending_starts).on_conflict_do_nothing(),
}


def add(session: deliveries.Db, key: str, request: Mapping[str, Any], at: datetime) -> None:
    """Remember a start (a repeat of the key keeps the first)."""
    values = {"key": key, "request": dict(request), "created_at": require_utc("at", at)}
    session.execute(_ADD[deliveries.dialect(session)], values)


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


StartFor = Callable[[int | None], tuple[str, Mapping[str, Any]]]
"""``start(generation) -> (key, request)``: the outbox row of a delivery's start, once
the group's generation (which names the run) is known; None when there is no group."""


@dataclass(frozen=True)
class Acceptance:
    """What :func:`accept` decided for one delivery."""

    seen: str | None
    """``"delivery"`` (an id was recorded before), ``"group"`` (the group's run is
    already open), or None: accepted, and its start is in the outbox."""
    generation: int | None = None
    key: str | None = None


def accept(
    session: deliveries.Db,
    source: str,
    delivery_ids: Sequence[str],
    *,
    group_key: str | None,
    start: StartFor,
    at: datetime,
) -> Acceptance:
    """Everything a delivery must leave before it is answered, in the caller's one
    transaction: its ids (the dedupe; none for Alertmanager, which has no delivery id),
    its group's claim, and its start in the outbox. One commit instead of three, and no
    crash window between them: either the whole acceptance is kept or none of it."""
    if delivery_ids and not deliveries.record(session, source, delivery_ids, at):
        return Acceptance("delivery")
    generation = None
    if group_key is not None:
        generation = deliveries.claim(session, source, group_key, at)
        if generation is None:
            return Acceptance("group")
    key, request = start(generation)
    add(session, key, request, at)
    return Acceptance(None, generation, key)
