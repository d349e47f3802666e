"""``TimelineStore``: the one object the rest of irbot uses to keep incidents, runs
and the timeline. Each call is its own short transaction; nothing is held open."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType

from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from bot.core.timeline import NewEvent, StoredEvent, VerifyResult
from bot.store import chain, incidents, runs
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
        postgres = self._engine.dialect.name == "postgresql"
        # Verification reads the head and all events: they must come from one snapshot.
        self._snapshot = (
            self._engine.execution_options(isolation_level="REPEATABLE READ")
            if postgres
            else self._engine
        )

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    def migrate(self) -> None:
        """Create or upgrade the schema (idempotent, safe to run concurrently)."""
        with _mapped_errors():
            migrate(self._engine)

    def close(self) -> None:
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

    def append(self, event: NewEvent) -> StoredEvent:
        """Add ``event`` to the chain; appending a stored id again returns the stored
        event and writes nothing."""
        with self._write() as session:
            return chain.append(session, event)

    def events(
        self, incident_id: str | None = None, run_id: str | None = None
    ) -> list[StoredEvent]:
        """Stored events in chain (seq) order."""
        with self._read() as session:
            return chain.events(session, incident_id=incident_id, run_id=run_id)

    def verify(self) -> VerifyResult:
        """Recompute the whole chain; on failure, name the first bad event."""
        with _mapped_errors(), Session(self._snapshot) as session, session.begin():
            return chain.verify(session)

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with _mapped_errors(), Session(self._writer) as session, session.begin():
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
