"""What a timeline follower must remember across restarts: how far it has read, and the
Slack messages it posted (so it edits them in place instead of posting again).

- ``notifier_cursors``: one row per follower (``slack``): the seq of the last event whose
  effects are done.
- ``slack_messages``: per (incident, key) — ``root``, ``approval:<run>:<gate>``,
  ``event:<id>`` … — the channel and ``ts`` of the message. A row with no ``ts`` is an
  intent written *before* posting: finding one after a crash means "maybe posted; search
  Slack for it before posting again".

Every function runs inside the caller's transaction (see :class:`TimelineStore`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.core.timeline import StoredEvent
from bot.store import incidents
from bot.store.chain import to_stored
from bot.store.models import ChainHeadRow, EventRow
from bot.store.records import Incident
from bot.store.utctime import UTCDateTime

metadata = MetaData()
"""Apart from ``models.Base``: these tables are only ever read and written as rows."""

cursors = Table(
    "notifier_cursors",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

slack_messages = Table(
    "slack_messages",
    metadata,
    Column("incident_id", String(32), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("channel", String(64), nullable=False),
    Column("ts", String(64)),
    Column("updated_at", UTCDateTime(), nullable=False),
)

MAX_BATCH = 1000


@dataclass(frozen=True)
class SlackMessageRef:
    """A message irbot posted (``ts``), or meant to post (``ts`` is None)."""

    incident_id: str
    key: str
    channel: str
    ts: str | None


def head_seq(session: Session) -> int:
    """The seq of the newest event (0 for an empty timeline)."""
    head = session.scalars(select(ChainHeadRow.seq)).one_or_none()
    return int(head or 0)


def events_after(session: Session, seq: int, limit: int) -> list[StoredEvent]:
    """Up to ``limit`` events with a seq above ``seq``, oldest first."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    query = (
        select(EventRow)
        .where(EventRow.seq > seq)
        .order_by(EventRow.seq)
        .limit(min(limit, MAX_BATCH))
    )
    return [to_stored(row) for row in session.scalars(query)]


def get_cursor(session: Session, name: str) -> int | None:
    value = session.execute(select(cursors.c.seq).where(cursors.c.name == name)).scalar()
    return None if value is None else int(value)


def set_cursor(session: Session, name: str, seq: int) -> None:
    if seq < 0:
        raise ValueError("a cursor is a seq, never negative")
    values = {"name": name, "seq": seq, "updated_at": datetime.now(UTC)}
    _upsert(session, cursors, values, keys=("name",))


def get_message(session: Session, incident_id: str, key: str) -> SlackMessageRef | None:
    row = session.execute(
        select(slack_messages).where(
            slack_messages.c.incident_id == incident_id, slack_messages.c.key == key
        )
    ).one_or_none()
    if row is None:
        return None
    return SlackMessageRef(row.incident_id, row.key, row.channel, row.ts)


def put_message(
    session: Session, incident_id: str, key: str, channel: str, ts: str | None
) -> SlackMessageRef:
    """Record (or overwrite) the message for ``(incident_id, key)``."""
    for name, value in (("incident_id", incident_id), ("key", key), ("channel", channel)):
        if not value:
            raise ValueError(f"a Slack message record needs a {name}")
    values = {
        "incident_id": incident_id,
        "key": key,
        "channel": channel,
        "ts": ts,
        "updated_at": datetime.now(UTC),
    }
    _upsert(session, slack_messages, values, keys=("incident_id", "key"))
    return SlackMessageRef(incident_id, key, channel, ts)


def claim_slack(session: Session, incident_id: str, channel: str, thread_ts: str) -> Incident:
    """Make (channel, thread_ts) the incident's thread unless it already has one; the
    incident as it is afterwards tells the caller whether its message won."""
    row = incidents.load(session, incident_id, lock=True)
    if not (row.slack_channel and row.slack_thread_ts):
        row.slack_channel, row.slack_thread_ts = channel, thread_ts
        session.flush()
    return incidents.to_incident(row)


def _upsert(
    session: Session, table: Table, values: dict[str, Any], *, keys: tuple[str, ...]
) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE the other columns (both databases have it)."""
    others = [name for name in values if name not in keys]
    if session.get_bind().dialect.name == "postgresql":
        pg = pg_insert(table).values(values)
        session.execute(
            pg.on_conflict_do_update(
                index_elements=list(keys), set_={n: pg.excluded[n] for n in others}
            )
        )
        return
    lite = sqlite_insert(table).values(values)
    session.execute(
        lite.on_conflict_do_update(
            index_elements=list(keys), set_={n: lite.excluded[n] for n in others}
        )
    )
