"""Appending to and reading the hash-chained event log.

Every function here runs inside the caller's transaction. ``append`` must be called in
a write transaction: it locks the chain head first, so appends from any number of
processes line up one after another and form a single chain.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, Row
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
# Insert unless the id is stored (a replayed step): one statement where a look-up and an
# insert were two. Only an id conflict is absorbed; a seq conflict still fails loudly.
_INSERT_NEW = {
    "sqlite": sqlite_insert(_EVENTS)
    .on_conflict_do_nothing(index_elements=["id"])
    .returning(_EVENTS.c.seq),
    "postgresql": pg_insert(_EVENTS)
    .on_conflict_do_nothing(index_elements=["id"])
    .returning(_EVENTS.c.seq),
}
_MOVE_HEAD = update(_HEAD).where(_HEAD.c.id == HEAD_ID)


def append(conn: Connection, event: NewEvent) -> StoredEvent:
    """Seal ``event`` after the current head; a repeat of a stored id returns the stored
    event unchanged and writes nothing (replayed steps re-append the same events). Takes
    a connection in a write transaction, not a Session: no ORM state is involved."""
    head = conn.execute(_LOCK_HEAD).one()
    sealed = seal(event, head.seq + 1, head.hash)
    # After the lock: a concurrent append of the same id has committed by now.
    inserted = conn.execute(
        _INSERT_NEW[conn.dialect.name],
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
    ).first()
    if inserted is None:
        return existing(conn, event)
    conn.execute(_MOVE_HEAD, {"seq": sealed.seq, "hash": sealed.hash})
    return sealed


def existing(db: Connection | Session, event: NewEvent) -> StoredEvent:
    """The stored event with ``event``'s id, checked to be about the same thing."""
    stored = to_stored(db.execute(_FIND, {"event_id": event.id}).one())
    _same_event(stored, event)
    return stored


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


class SqliteAppender:
    """:func:`append` for SQLite, on a DBAPI connection of its own.

    The same statements (compiled once by SQLAlchemy, with its column types' own bind
    processors, so rows are stored exactly as through SQLAlchemy), without SQLAlchemy's
    per-statement and per-transaction machinery, which py-spy put at two thirds of an
    append's ~270 µs; every step of every run appends (bench/engine_overhead.py). The
    caller serializes use (TimelineStore's write turn); other processes meet at
    SQLite's write lock as before (``BEGIN IMMEDIATE``, busy timeout).
    """

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect
        insert = _INSERT_NEW["sqlite"].compile(dialect=dialect)
        self._insert = str(insert)
        self._binds = [
            (name, _EVENTS.c[name].type._cached_bind_processor(dialect))
            for name in insert.positiontup or ()
        ]
        lock = _LOCK_HEAD.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        self._lock_head = str(lock)
        move = _MOVE_HEAD.values(seq=bindparam("seq"), hash=bindparam("hash")).compile(
            dialect=dialect
        )
        self._move_head = str(move)
        self._move_order = list(move.positiontup or ())
        self._move_fixed = dict(move.params)
        self._conn = engine.raw_connection()

    def append(self, event: NewEvent) -> StoredEvent | None:
        """The sealed event, or None if its id is stored already (a replayed step's: the
        caller reads it)."""
        cursor = self._conn.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE")
            try:
                seq, prev = cursor.execute(self._lock_head).fetchone()
                sealed = seal(event, seq + 1, prev)
                row = {
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
                }
                params = [row[n] if bind is None else bind(row[n]) for n, bind in self._binds]
                inserted = cursor.execute(self._insert, params).fetchone()
                if inserted is not None:
                    moved = {**self._move_fixed, "seq": sealed.seq, "hash": sealed.hash}
                    cursor.execute(self._move_head, [moved[n] for n in self._move_order])
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back
                    cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")
        finally:
            cursor.close()
        return sealed if inserted is not None else None

    def close(self) -> None:
        self._conn.close()
