"""Incidents: numbered ``INC-1``, ``INC-2`` … in the order they were opened, and opened
at most once per idempotency key (a webhook delivered twice opens one incident)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bot.core.errors import NotFoundError
from bot.store.models import CounterRow, IncidentRow
from bot.store.records import INCIDENT_STATUSES, Incident, require_utc

COUNTER = "incident"


def open_incident(
    session: Session,
    *,
    key: str,
    title: str,
    severity: str,
    playbook: str | None,
    pagerduty_incident: str | None,
    at: datetime,
) -> Incident:
    """The incident opened under ``key``, creating it with the next number if new.
    Needs a write transaction: the counter row lock serialises numbering."""
    for name, value in (("key", key), ("title", title), ("severity", severity)):
        if not value:
            raise ValueError(f"incident {name} must not be empty")
    opened_at = require_utc("opened_at", at)
    counter = session.scalars(
        select(CounterRow).where(CounterRow.name == COUNTER).with_for_update()
    ).one()
    existing = session.scalars(select(IncidentRow).where(IncidentRow.key == key)).one_or_none()
    if existing is not None:
        return to_incident(existing)
    counter.value += 1
    row = IncidentRow(
        id=f"INC-{counter.value}",
        number=counter.value,
        key=key,
        title=title,
        severity=severity,
        status="open",
        playbook=playbook,
        opened_at=opened_at,
        pagerduty_incident=pagerduty_incident,
    )
    session.add(row)
    session.flush()
    return to_incident(row)


def load(session: Session, incident_id: str, *, lock: bool = False) -> IncidentRow:
    query = select(IncidentRow).where(IncidentRow.id == incident_id)
    row = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if row is None:
        raise NotFoundError(f"no incident {incident_id!r}", incident=incident_id)
    return row


def list_incidents(
    session: Session, *, status: str | None, text: str | None, limit: int, offset: int
) -> list[Incident]:
    """Newest first; ``text`` matches id, title, playbook or PagerDuty id, any case."""
    if limit < 1 or offset < 0:
        raise ValueError("limit must be at least 1 and offset not negative")
    query = select(IncidentRow).order_by(IncidentRow.number.desc()).limit(limit).offset(offset)
    if status is not None:
        _check_status(status)
        query = query.where(IncidentRow.status == status)
    if text:
        columns = (
            IncidentRow.id,
            IncidentRow.title,
            IncidentRow.playbook,
            IncidentRow.pagerduty_incident,
        )
        query = query.where(or_(*(c.icontains(text, autoescape=True) for c in columns)))
    return [to_incident(row) for row in session.scalars(query)]


def set_status(session: Session, incident_id: str, status: str, at: datetime) -> Incident:
    """``closed_at`` is when it stopped being open; reopening clears it."""
    _check_status(status)
    when = require_utc("at", at)
    row = load(session, incident_id, lock=True)
    if status == "open":
        row.closed_at = None
    elif row.status == "open" or row.closed_at is None:
        row.closed_at = when
    row.status = status
    session.flush()
    return to_incident(row)


def set_slack(session: Session, incident_id: str, channel: str, thread_ts: str) -> Incident:
    row = load(session, incident_id, lock=True)
    row.slack_channel, row.slack_thread_ts = channel, thread_ts
    session.flush()
    return to_incident(row)


def _check_status(status: str) -> None:
    if status not in INCIDENT_STATUSES:
        raise ValueError(f"incident status {status!r} is not one of {', '.join(INCIDENT_STATUSES)}")


def to_incident(row: IncidentRow) -> Incident:
    return Incident(
        id=row.id,
        number=row.number,
        key=row.key,
        title=row.title,
        severity=row.severity,
        status=row.status,
        playbook=row.playbook,
        opened_at=row.opened_at,
        closed_at=row.closed_at,
        slack_channel=row.slack_channel,
        slack_thread_ts=row.slack_thread_ts,
        pagerduty_incident=row.pagerduty_incident,
    )
