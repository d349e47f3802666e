"""Appending to and reading the hash-chained event log.

Every function here runs inside the caller's transaction. ``append`` must be called in
a write transaction: it locks the chain head first, so appends from any number of
processes line up one after another and form a single chain.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session

from bot.core.timeline import NewEvent, StoredEvent, VerifyResult, seal, verify_chain
from bot.store.errors import EventIdCollision
from bot.store.models import ChainHeadRow, EventRow

HEAD_ID = 1


_EVENTS = cast(Table, EventRow.__table__)
_HEAD = cast(Table, ChainHeadRow.__table__)
# Built once: every step of every run appends, and building the statements each time
# (and the ORM's unit of work) cost more than the writes (bench/engine_overhead.py).
_LOCK_HEAD = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == HEAD_ID).with_for_update()
_FIND = select(_EVENTS).where(_EVENTS.c.id == bindparam("event_id"))
_INSERT = insert(_EVENTS)
_MOVE_HEAD = update(_HEAD).where(_HEAD.c.id == HEAD_ID)


def append(conn: Connection, event: NewEvent) -> StoredEvent:
    """Seal ``event`` after the current head; a repeat of a stored id returns the stored
    event unchanged and writes nothing (replayed steps re-append the same events). Takes
    a connection in a write transaction, not a Session: no ORM state is involved."""
    head = conn.execute(_LOCK_HEAD).one()
    # Looked up only after the lock: a concurrent append of the same id has committed.
    existing = conn.execute(_FIND, {"event_id": event.id}).first()
    if existing is not None:
        stored = to_stored(existing)
        _same_event(stored, event)
        return stored
    sealed = seal(event, head.seq + 1, head.hash)
    conn.execute(
        _INSERT,
        {
            "seq": sealed.seq,
            "id": sealed.id,
            "incident_id": sealed.incident_id,
            "run_id": sealed.run_id,
            "step_id": sealed.step_id,
            "kind": sealed.kind,
            "actor": sealed.actor,
            "at": sealed.at,
            "payload": dict(sealed.payload),
            "prev_hash": sealed.prev_hash,
            "hash": sealed.hash,
        },
    )
    conn.execute(_MOVE_HEAD, {"seq": sealed.seq, "hash": sealed.hash})
    return sealed


def _same_event(stored: StoredEvent, event: NewEvent) -> None:
    """A replay may differ in time or payload detail, never in what the event is about."""
    for name in ("incident_id", "run_id", "step_id", "kind"):
        if getattr(stored, name) != getattr(event, name):
            raise EventIdCollision(
                f"event id {event.id} is already stored (seq {stored.seq}) with a different "
                f"{name}: {getattr(stored, name)!r}, not {getattr(event, name)!r}",
                event_id=event.id,
                seq=stored.seq,
            )


def to_stored(row: EventRow | Row[Any]) -> StoredEvent:
    return StoredEvent(
        seq=row.seq,
        id=row.id,
        incident_id=row.incident_id,
        run_id=row.run_id,
        step_id=row.step_id,
        kind=row.kind,
        actor=row.actor,
        at=row.at,
        payload=row.payload,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def events(
    session: Session, *, incident_id: str | None = None, run_id: str | None = None
) -> list[StoredEvent]:
    """Stored events in chain order, optionally those of one incident or run."""
    query = select(EventRow).order_by(EventRow.seq)
    if incident_id is not None:
        query = query.where(EventRow.incident_id == incident_id)
    if run_id is not None:
        query = query.where(EventRow.run_id == run_id)
    return [to_stored(row) for row in session.scalars(query)]


def _stream(session: Session) -> Generator[StoredEvent, None, None]:
    """All events, a batch at a time (a server-side cursor on PostgreSQL)."""
    query = select(EventRow).order_by(EventRow.seq).execution_options(yield_per=500)
    result = session.scalars(query)
    try:
        for row in result:
            yield to_stored(row)
            session.expunge(row)
    finally:
        result.close()  # verification may stop at the first bad row


def verify(session: Session, seen: Callable[[StoredEvent], None] | None = None) -> VerifyResult:
    """Check the whole chain against the head. Needs one snapshot for both reads
    (the caller's transaction), or a concurrent append looks like tampering.

    ``seen`` is called with each event as it is checked (up to the first bad one), so a
    caller that also needs some of the rows does not read them a second time."""
    head = session.scalars(select(ChainHeadRow).where(ChainHeadRow.id == HEAD_ID)).one_or_none()
    if head is None:
        return VerifyResult(False, 0, None, None, "chain head row is missing")
    with closing(_stream(session)) as stream:
        events: Iterator[StoredEvent] = stream
        if seen is not None:
            events = _tee(stream, seen)
        return verify_chain(events, (head.seq, head.hash))


def _tee(
    events: Iterator[StoredEvent], seen: Callable[[StoredEvent], None]
) -> Iterator[StoredEvent]:
    for event in events:
        seen(event)
        yield event
