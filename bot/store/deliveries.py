"""What the webhook endpoints must remember: deliveries seen, and alert groups open.

- ``webhook_deliveries``: one row per (source, delivery id). Inserting is the dedupe:
  the primary key makes "seen before?" and "remember it" one atomic step, so two
  copies of a delivery racing in two processes still start one run.
- ``alert_groups``: per (source, group) — an Alertmanager ``groupKey``, a PagerDuty
  incident — whether it is ``firing`` (a run was started for it), ``resolved`` or
  ``failed`` (its run could not start), and its ``generation``: the n-th time it
  started firing, which names that firing's run. Claiming takes the row lock (SQLite:
  the write lock of ``BEGIN IMMEDIATE``), so a storm of deliveries for one group
  claims it once.

Every function runs inside the caller's write transaction (see :class:`TimelineStore`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Executable,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from bot.store.records import require_utc
from bot.store.utctime import UTCDateTime

FIRING = "firing"
RESOLVED = "resolved"
FAILED = "failed"

metadata = MetaData()
"""Apart from ``models.Base``: these rows are written and read as plain rows."""

deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("delivery_id", String(255), primary_key=True),
    Column("received_at", UTCDateTime(), nullable=False),
)

alert_groups = Table(
    "alert_groups",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("group_hash", String(64), primary_key=True),
    Column("group_key", Text, nullable=False),
    Column("generation", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)


Db = Session | Connection
"""The caller's write transaction: an ORM session, or (cheaper, on the hot path of a
webhook delivery) a plain connection."""

_INSERTS: dict[tuple[str, str, tuple[str, ...]], Executable] = {}


def dialect(db: Db) -> str:
    return db.dialect.name if isinstance(db, Connection) else db.get_bind().dialect.name


def _insert_new(db: Db, table: Table, keys: Sequence[str], **values: Any) -> bool:
    """INSERT … ON CONFLICT DO NOTHING RETURNING (both databases have it; rowcount is
    not reliable for inserts through every driver); True if it inserted. The statement
    is built once per table: a burst of deliveries spent more time building it than the
    database spent running it."""
    dialect_name = dialect(db)
    cache_key = (dialect_name, table.name, tuple(keys))
    statement = _INSERTS.get(cache_key)
    if statement is None:
        column = table.c[keys[0]]
        if dialect_name == "postgresql":
            pg = pg_insert(table).on_conflict_do_nothing(index_elements=keys)
            statement = pg.returning(column)
        else:
            lite = sqlite_insert(table).on_conflict_do_nothing(index_elements=keys)
            statement = lite.returning(column)
        _INSERTS[cache_key] = statement
    return db.execute(statement, values).first() is not None


def record(session: Db, source: str, delivery_ids: Iterable[str], at: datetime) -> bool:
    """Remember every id; True only if none of them was seen before."""
    ids = list(dict.fromkeys(delivery_ids))
    if not source or not ids or not all(ids):
        raise ValueError("a delivery needs a source and at least one non-empty id")
    when = require_utc("received_at", at)
    keys = ("source", "delivery_id")
    inserted = [
        _insert_new(session, deliveries, keys, source=source, delivery_id=i, received_at=when)
        for i in ids
    ]
    return all(inserted)


def prune(session: Session, before: datetime) -> int:
    """Forget deliveries received before ``before``; how many were dropped. Senders
    retry for hours, not weeks, so old ids only grow the table. Alert groups are never
    pruned: their generation numbers name runs and must not restart at 1."""
    when = require_utc("before", before)
    result = session.execute(delete(deliveries).where(deliveries.c.received_at < when))
    return int(getattr(result, "rowcount", 0) or 0)


def group_hash(group_key: str) -> str:
    """Group keys can be long label sets: the primary key holds their digest."""
    return hashlib.sha256(group_key.encode()).hexdigest()


def claim(session: Db, source: str, group_key: str, at: datetime) -> int | None:
    """Mark the group firing and return its new generation, or None if it already was.

    The insert either creates the row (first firing ever) or waits for a concurrent
    creator and does nothing; the locked read then decides on what is committed.
    """
    when = require_utc("at", at)
    digest = group_hash(group_key)
    if _insert_new(
        session,
        alert_groups,
        ("source", "group_hash"),
        source=source,
        group_hash=digest,
        group_key=group_key,
        generation=1,
        state=FIRING,
        updated_at=when,
    ):
        return 1
    row = _locked(session, source, digest)
    if row is None or row[0] == FIRING:
        return None
    generation = row[1] + 1
    _set(session, source, digest, state=FIRING, generation=generation, updated_at=when)
    return generation


def resolve(session: Session, source: str, group_key: str, at: datetime) -> int | None:
    """Mark a firing group resolved; the generation that was firing, or None if the
    group was not firing (never seen, already resolved, or its run failed to start)."""
    when = require_utc("at", at)
    digest = group_hash(group_key)
    row = _locked(session, source, digest)
    if row is None or row[0] != FIRING:
        return None
    _set(session, source, digest, state=RESOLVED, updated_at=when)
    return row[1]


def release(session: Session, source: str, group_key: str, generation: int, at: datetime) -> None:
    """The run of ``generation`` could not start: the next firing may try again."""
    when = require_utc("at", at)
    digest = group_hash(group_key)
    if _locked(session, source, digest) == (FIRING, generation):
        _set(session, source, digest, state=FAILED, updated_at=when)


def state(session: Session, source: str, group_key: str) -> tuple[str, int] | None:
    """(state, generation) of a group, or None if it never fired."""
    row = session.execute(
        select(alert_groups.c.state, alert_groups.c.generation).where(
            alert_groups.c.source == source, alert_groups.c.group_hash == group_hash(group_key)
        )
    ).one_or_none()
    return None if row is None else (str(row.state), int(row.generation))


def _locked(session: Db, source: str, digest: str) -> tuple[str, int] | None:
    """(state, generation), with the row locked until the transaction ends."""
    query = (
        select(alert_groups.c.state, alert_groups.c.generation)
        .where(alert_groups.c.source == source, alert_groups.c.group_hash == digest)
        .with_for_update()
    )
    row = session.execute(query).one_or_none()
    return None if row is None else (str(row.state), int(row.generation))


def _set(session: Db, source: str, digest: str, **values: object) -> None:
    session.execute(
        update(alert_groups)
        .where(alert_groups.c.source == source, alert_groups.c.group_hash == digest)
        .values(**values)
    )
