"""``TimelineStore``: the one object the rest of irbot uses to keep incidents, runs
and the timeline. Each call is its own short transaction; nothing is held open."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from bot.core import report as reports
from bot.core.timeline import NewEvent, StoredEvent, VerifyResult
from bot.store import chain, cursors, deliveries, executors, incidents, pending, runs
from bot.store.cursors import SlackMessageRef
from bot.store.database import make_engine, writer
from bot.store.errors import StoreError
from bot.store.migrate import migrate
from bot.store.records import Incident, RunRecord


class TimelineStore:
    """Incidents, runs and the hash-chained timeline in SQLite or PostgreSQL.

    ``url`` is ``sqlite:///path/irbot.sqlite`` or ``postgresql://user@host/db``. Call
    ``migrate()`` once at start-up (any process may; it is idempotent).
    """

    def __init__(self, url: str) -> None:
        self._engine = make_engine(url)
        self._writer = writer(self._engine)
        # SQLite has one writer. Threads of this process take turns here instead of in
        # SQLite's busy handler, which sleeps with backoff (up to 100 ms a try): under a
        # burst, a writer that kept losing the race waited seconds (bench/server_ack.py).
        # Other processes still meet at the file lock; PostgreSQL needs no turn.
        self._turn: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if self._engine.dialect.name == "sqlite" else contextlib.nullcontext()
        )
        postgres = self._engine.dialect.name == "postgresql"
        # Verification reads the head and all events: they must come from one snapshot.
        self._snapshot = (
            self._engine.execution_options(isolation_level="REPEATABLE READ")
            if postgres
            else self._engine
        )
        self._listeners: list[Callable[[int], None]] = []
        self._appender: chain.SqliteAppender | None = None

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    def migrate(self) -> None:
        """Create or upgrade the schema (idempotent, safe to run concurrently)."""
        with _mapped_errors():
            migrate(self._engine)

    def close(self) -> None:
        with self._turn:
            if self._appender is not None:
                self._appender.close()
                self._appender = None
        self._engine.dispose()

    def __enter__(self) -> TimelineStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # incidents

    def open_incident(
        self,
        *,
        key: str,
        title: str,
        severity: str = "high",
        playbook: str | None = None,
        pagerduty_incident: str | None = None,
        at: datetime,
    ) -> Incident:
        """The incident for ``key``; opened with the next ``INC-<n>`` if it is new."""
        with self._write() as session:
            return incidents.open_incident(
                session,
                key=key,
                title=title,
                severity=severity,
                playbook=playbook,
                pagerduty_incident=pagerduty_incident,
                at=at,
            )

    def get_incident(self, incident_id: str) -> Incident:
        with self._read() as session:
            return incidents.to_incident(incidents.load(session, incident_id))

    def list_incidents(
        self,
        status: str | None = None,
        text: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Incident]:
        with self._read() as session:
            return incidents.list_incidents(
                session, status=status, text=text, limit=limit, offset=offset
            )

    def set_incident_status(self, incident_id: str, status: str, at: datetime) -> Incident:
        with self._write() as session:
            return incidents.set_status(session, incident_id, status, at)

    def set_incident_slack(self, incident_id: str, channel: str, thread_ts: str) -> Incident:
        with self._write() as session:
            return incidents.set_slack(session, incident_id, channel, thread_ts)

    # runs

    def record_run(self, run: RunRecord) -> RunRecord:
        """Store ``run`` unless its id exists; return the stored record either way."""
        with self._write() as session:
            return runs.record_run(session, run)

    def set_run_status(
        self,
        run_id: str,
        status: str,
        at: datetime,
        detail: str | None = None,
        breakglass: bool | None = None,
    ) -> RunRecord:
        with self._write() as session:
            return runs.set_status(
                session, run_id, status, at, detail=detail, breakglass=breakglass
            )

    def get_run(self, run_id: str) -> RunRecord:
        with self._read() as session:
            return runs.to_record(runs.load(session, run_id))

    def list_runs(
        self, status: str | None = None, limit: int = 50, *, incident_id: str | None = None
    ) -> list[RunRecord]:
        with self._read() as session:
            return runs.list_runs(session, status=status, incident_id=incident_id, limit=limit)

    # timeline

    def count_runs_by_status(self) -> dict[str, int]:
        """Runs per status, e.g. ``{"running": 2, "succeeded": 40}``."""
        with self._read() as session:
            return runs.count_by_status(session)

    def append(self, event: NewEvent) -> StoredEvent:
        """Add ``event`` to the chain; appending a stored id again returns the stored
        event and writes nothing."""
        if self._engine.dialect.name == "sqlite":
            stored = self._append_sqlite(event)
        else:
            with self._turn, _mapped_errors(), self._writer.begin() as conn:
                stored = chain.append(conn, event)
        for listener in tuple(self._listeners):
            listener(stored.seq)
        return stored

    def _append_sqlite(self, event: NewEvent) -> StoredEvent:
        with self._turn:
            try:
                if self._appender is None:
                    self._appender = chain.SqliteAppender(self._engine)
                sealed = self._appender.append(event)
            except sqlite3.Error as exc:
                raise StoreError(f"timeline database error: {exc}") from exc
        if sealed is not None:
            return sealed
        with self._read() as session:  # a replay: the stored event, if it is the same
            return chain.existing(session, event)

    def on_append(self, listener: Callable[[int], None]) -> Callable[[], None]:
        """Call ``listener(seq)`` after each committed append through *this* object (from
        the appending thread; it must not block). Followers in the same process use it to
        wake at once instead of waiting for their next poll; other processes still poll.
        Returns a function that unsubscribes."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def events(
        self, incident_id: str | None = None, run_id: str | None = None
    ) -> list[StoredEvent]:
        """Stored events in chain (seq) order."""
        with self._read() as session:
            return chain.events(session, incident_id=incident_id, run_id=run_id)

    def head_seq(self) -> int:
        """The seq of the newest event (0 when the timeline is empty)."""
        with self._read() as session:
            return cursors.head_seq(session)

    def events_after(self, seq: int, limit: int = 100) -> list[StoredEvent]:
        """Up to ``limit`` (at most 1000) events after ``seq``, in chain order: what a
        follower of the timeline (the Slack notifier, metrics) reads next."""
        with self._read() as session:
            return cursors.events_after(session, seq, limit)

    # followers of the timeline (bot.store.cursors)

    def notifier_cursor(self, name: str) -> int | None:
        """The last seq follower ``name`` finished with, or None if it never ran."""
        with self._read() as session:
            return cursors.get_cursor(session, name)

    def set_notifier_cursor(self, name: str, seq: int) -> None:
        with self._write() as session:
            cursors.set_cursor(session, name, seq)

    def slack_message(self, incident_id: str, key: str) -> SlackMessageRef | None:
        """The message irbot posted (or set out to post) for ``key`` in this incident."""
        with self._read() as session:
            return cursors.get_message(session, incident_id, key)

    def set_slack_message(
        self, incident_id: str, key: str, channel: str, ts: str | None
    ) -> SlackMessageRef:
        """Remember a message; ``ts=None`` records the intent before posting."""
        with self._write() as session:
            return cursors.put_message(session, incident_id, key, channel, ts)

    def claim_incident_slack(self, incident_id: str, channel: str, thread_ts: str) -> Incident:
        """Like :meth:`set_incident_slack`, but only if the incident has no thread yet;
        returns the incident, whose thread says who won."""
        with self._write() as session:
            return cursors.claim_slack(session, incident_id, channel, thread_ts)

    def verify(self) -> VerifyResult:
        """Recompute the whole chain; on failure, name the first bad event."""
        with _mapped_errors(), Session(self._snapshot) as session, session.begin():
            return chain.verify(session)

    def report(
        self, incident_id: str, *, slack_base_url: str = "https://slack.com"
    ) -> reports.Report:
        """One incident as people review it, with the audit chain's state read in the
        same snapshot (pages and exports show a broken chain, never hide it)."""
        with _mapped_errors(), Session(self._snapshot) as session, session.begin():
            incident = incidents.to_incident(incidents.load(session, incident_id))
            run_list = runs.list_runs(session, status=None, incident_id=incident_id, limit=10_000)
            events: list[StoredEvent] = []

            def mine(event: StoredEvent) -> None:
                if event.incident_id == incident_id:
                    events.append(event)

            # One pass: the verification reads every row anyway, so keep this incident's.
            result = chain.verify(session, mine)
            if not result.ok:  # it stopped at the break: read the rest as stored
                events = chain.events(session, incident_id=incident_id)
            state = reports.ChainState.of(result)
        return reports.build(
            incident,
            reversed(run_list),  # oldest first, as they happened
            events,
            state,
            slack_base_url=slack_base_url,
        )

    # webhook deliveries and alert groups (bot.store.deliveries)

    def record_delivery(self, source: str, delivery_ids: Iterable[str], at: datetime) -> bool:
        """Remember a webhook delivery by all its ids; True only if none was seen before
        (atomic: two copies racing in two processes get one True)."""
        with self._write() as session:
            return deliveries.record(session, source, delivery_ids, at)

    def accept_delivery(
        self,
        source: str,
        delivery_ids: Sequence[str],
        at: datetime,
        *,
        group_key: str | None = None,
        start: pending.StartFor,
    ) -> pending.Acceptance:
        """Dedupe a delivery, claim its group and put its start in the outbox, in one
        transaction (bot.store.pending.accept); a duplicate leaves only its ids."""
        with self._turn, _mapped_errors(), self._writer.begin() as conn:
            return pending.accept(
                conn, source, delivery_ids, group_key=group_key, start=start, at=at
            )

    def add_pending_start(self, key: str, request: Mapping[str, Any], at: datetime) -> None:
        """Record a webhook start before its delivery is answered (bot.store.pending)."""
        with self._write() as session:
            pending.add(session, key, request, at)

    def remove_pending_start(self, key: str) -> None:
        with self._write() as session:
            pending.remove(session, key)

    def pending_starts(
        self, before: datetime, limit: int = 100
    ) -> list[tuple[str, dict[str, Any]]]:
        """Starts recorded before ``before`` and not yet done: (key, request)."""
        with self._read() as session:
            return pending.older_than(session, before, limit)

    def prune_deliveries(self, before: datetime) -> int:
        """Forget webhook deliveries received before ``before``; how many were dropped."""
        with self._write() as session:
            return deliveries.prune(session, before)

    def claim_alert_group(self, source: str, group_key: str, at: datetime) -> int | None:
        """Mark the group firing; its new generation, or None if it was firing already."""
        with self._write() as session:
            return deliveries.claim(session, source, group_key, at)

    def resolve_alert_group(self, source: str, group_key: str, at: datetime) -> int | None:
        """Mark a firing group resolved; the generation that was firing, or None."""
        with self._write() as session:
            return deliveries.resolve(session, source, group_key, at)

    def release_alert_group(
        self, source: str, group_key: str, generation: int, at: datetime
    ) -> None:
        """The run of that firing could not start: let the next firing try again."""
        with self._write() as session:
            deliveries.release(session, source, group_key, generation, at)

    def alert_group_state(self, source: str, group_key: str) -> tuple[str, int] | None:
        """``(state, generation)`` of a group, or None if it never fired."""
        with self._read() as session:
            return deliveries.state(session, source, group_key)

    # executor leases (bot.store.executors)

    def lease_executor(
        self,
        base: str,
        *,
        host: str,
        pid: int,
        now: datetime,
        dead_after: timedelta,
        pid_alive: Callable[[int], bool],
    ) -> str:
        """The DBOS executor id this process may run under (``base`` or ``base-<n>``)."""
        with self._write() as session:
            return executors.lease(
                session,
                base=base,
                host=host,
                pid=pid,
                now=now,
                dead_after=dead_after,
                pid_alive=pid_alive,
            )

    def beat_executor(self, executor_id: str, *, host: str, pid: int, now: datetime) -> bool:
        """Renew the lease; False if another process took it over."""
        with self._write() as session:
            return executors.beat(session, executor_id, host=host, pid=pid, now=now)

    def release_executor(self, executor_id: str, *, host: str, pid: int) -> None:
        with self._write() as session:
            executors.release(session, executor_id, host=host, pid=pid)

    def stale_executors(self, now: datetime, dead_after: timedelta) -> list[tuple[str, datetime]]:
        with self._read() as session:
            return executors.stale(session, now=now, dead_after=dead_after)

    def reap_executor(self, executor_id: str, beat_at: datetime) -> bool:
        """Remove a stale lease unless it changed since it was read; True if removed."""
        with self._write() as session:
            return executors.reap(session, executor_id, beat_at)

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._turn, _mapped_errors(), Session(self._writer) as session, session.begin():
            yield session

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with _mapped_errors(), Session(self._engine) as session, session.begin():
            yield session


@contextmanager
def _mapped_errors() -> Iterator[None]:
    """SQLAlchemy stays inside the store. The driver's message is kept; the SQL and
    its parameters are not (they are noise to a user)."""
    try:
        yield
    except DBAPIError as exc:
        raise StoreError(f"timeline database error: {exc.orig}".strip()) from exc
    except SQLAlchemyError as exc:
        raise StoreError(f"timeline database error: {exc}") from exc
