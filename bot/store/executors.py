"""Executor leases: one live process per DBOS executor id.

DBOS resumes, at launch, the pending workflows recorded under the launching process's
executor id. With one id for every process, a worker started beside a live one would
resume that one's runs while they are still running, and a step in flight would run
twice at once. So each worker leases an id here and beats while it lives:

- ``lease`` takes the first free id of ``base``, ``base-2``, ``base-3`` …: one with no
  row, one released at a clean stop, one whose holder on this host is gone (its pid no
  longer exists: a kill -9 is taken over at once, so a relaunch resumes at once), or one
  whose holder has not beaten for ``dead_after`` (another host died).
- ``beat`` keeps the lease; False means another process took it over (this one looked
  dead) and must stop working.
- ``stale`` and ``reap`` let live workers take over the runs of a dead id nobody
  relaunches (a pod that moved): a worker resumes its runs, then removes the lease with
  a compare-and-delete (a lease renewed or taken meanwhile stays).

Every function runs inside the caller's write transaction (see :class:`TimelineStore`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, Integer, MetaData, Row, String, Table, delete, insert, select, update
from sqlalchemy.orm import Session

from bot.store.records import require_utc
from bot.store.utctime import UTCDateTime

RELEASED = datetime(1970, 1, 1, tzinfo=UTC)
"""``beat_at`` of a lease given back at a clean stop: free at once, runs resumable."""

metadata = MetaData()

executors = Table(
    "executors",
    metadata,
    Column("executor_id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("beat_at", UTCDateTime(), nullable=False),
)


def lease(
    session: Session,
    *,
    base: str,
    host: str,
    pid: int,
    now: datetime,
    dead_after: timedelta,
    pid_alive: Callable[[int], bool],
) -> str:
    """The executor id this process now holds (see the module docstring)."""
    when = require_utc("now", now)
    for n in range(1, 1000):
        candidate = base if n == 1 else f"{base}-{n}"
        row = session.execute(
            select(executors.c.host, executors.c.pid, executors.c.beat_at).where(
                executors.c.executor_id == candidate
            )
        ).first()
        if row is None:
            session.execute(
                insert(executors).values(executor_id=candidate, host=host, pid=pid, beat_at=when)
            )
            return candidate
        free = row.beat_at <= when - dead_after or (
            row.host == host and (row.pid == pid or not pid_alive(row.pid))
        )
        if free and _take(session, candidate, row, host=host, pid=pid, now=when):
            return candidate
    raise RuntimeError(f"no free executor id among {base}, {base}-2 … {base}-999")


def _take(
    session: Session,
    executor_id: str,
    old: Row[Any, Any, Any],
    *,
    host: str,
    pid: int,
    now: datetime,
) -> bool:
    """Compare-and-swap: only if the row is still as it was read."""
    result = session.execute(
        update(executors)
        .where(
            executors.c.executor_id == executor_id,
            executors.c.host == old.host,
            executors.c.pid == old.pid,
            executors.c.beat_at == old.beat_at,
        )
        .values(host=host, pid=pid, beat_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


def beat(session: Session, executor_id: str, *, host: str, pid: int, now: datetime) -> bool:
    """Renew the lease; False if it is no longer this process's."""
    result = session.execute(
        update(executors)
        .where(
            executors.c.executor_id == executor_id,
            executors.c.host == host,
            executors.c.pid == pid,
        )
        .values(beat_at=require_utc("now", now))
    )
    return bool(getattr(result, "rowcount", 0))


def release(session: Session, executor_id: str, *, host: str, pid: int) -> None:
    """Give the lease back at a clean stop: the next worker may take it (and its runs)
    at once, or a live peer reaps it."""
    session.execute(
        update(executors)
        .where(
            executors.c.executor_id == executor_id,
            executors.c.host == host,
            executors.c.pid == pid,
        )
        .values(beat_at=RELEASED)
    )


def stale(session: Session, *, now: datetime, dead_after: timedelta) -> list[tuple[str, datetime]]:
    """Leases not renewed for ``dead_after`` (released ones included): (id, beat_at)."""
    cutoff = require_utc("now", now) - dead_after
    rows = session.execute(
        select(executors.c.executor_id, executors.c.beat_at).where(executors.c.beat_at <= cutoff)
    )
    return [(row.executor_id, row.beat_at) for row in rows]


def reap(session: Session, executor_id: str, beat_at: datetime) -> bool:
    """Remove a stale lease if nobody renewed or took it since it was read; True if
    this call removed it."""
    result = session.execute(
        delete(executors).where(
            executors.c.executor_id == executor_id, executors.c.beat_at == beat_at
        )
    )
    return bool(getattr(result, "rowcount", 0))
