"""Run records: the human-facing summary of a run (the engine's own checkpoints live
in DBOS). Created once per run id, then only their status moves."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.core.errors import NotFoundError
from bot.store import incidents
from bot.store.models import RunRow
from bot.store.records import RUN_FINISHED, RUN_STATUSES, RunRecord, require_utc


def record_run(session: Session, run: RunRecord) -> RunRecord:
    """Insert ``run`` unless its id is stored; return what is stored either way."""
    incidents.load(session, run.incident_id)
    values = {
        "id": run.id,
        "incident_id": run.incident_id,
        "playbook": run.playbook,
        "version": run.version,
        "sha256": run.sha256,
        "inputs": dict(run.inputs),
        "requester": run.requester,
        "status": run.status,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "finished_at": run.finished_at,
        "detail": run.detail,
        "breakglass": run.breakglass,
    }
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(insert(RunRow).values(values).on_conflict_do_nothing(index_elements=["id"]))
    return to_record(load(session, run.id))


def set_status(
    session: Session,
    run_id: str,
    status: str,
    at: datetime,
    *,
    detail: str | None,
    breakglass: bool | None,
) -> RunRecord:
    """Move a run to ``status``; the engine owns which moves are legal. ``finished_at``
    is when it first reached a finished status; ``breakglass`` once set stays set."""
    if status not in RUN_STATUSES:
        raise ValueError(f"run status {status!r} is not one of {', '.join(RUN_STATUSES)}")
    when = require_utc("at", at)
    row = load(session, run_id, lock=True)
    row.status = status
    row.updated_at = when
    if status not in RUN_FINISHED:
        row.finished_at = None
    elif row.finished_at is None:
        row.finished_at = when
    if detail is not None:
        row.detail = detail
    if breakglass is not None:
        row.breakglass = row.breakglass or breakglass
    session.flush()
    return to_record(row)


def load(session: Session, run_id: str, *, lock: bool = False) -> RunRow:
    query = select(RunRow).where(RunRow.id == run_id).execution_options(populate_existing=True)
    row = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if row is None:
        raise NotFoundError(f"no run {run_id!r}", run=run_id)
    return row


def list_runs(
    session: Session, *, status: str | None, incident_id: str | None, limit: int
) -> list[RunRecord]:
    """Newest first."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    query = select(RunRow).order_by(RunRow.created_at.desc(), RunRow.id).limit(limit)
    if status is not None:
        query = query.where(RunRow.status == status)
    if incident_id is not None:
        query = query.where(RunRow.incident_id == incident_id)
    return [to_record(row) for row in session.scalars(query)]


def to_record(row: RunRow) -> RunRecord:
    return RunRecord(
        id=row.id,
        incident_id=row.incident_id,
        playbook=row.playbook,
        version=row.version,
        sha256=row.sha256,
        inputs=row.inputs,
        requester=row.requester,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        detail=row.detail,
        breakglass=row.breakglass,
    )


def count_by_status(session: Session) -> dict[str, int]:
    """How many runs are in each status (one GROUP BY; for /metrics and /readyz)."""
    rows = session.execute(select(RunRow.status, func.count()).group_by(RunRow.status)).all()
    return {str(status): int(count) for status, count in rows}
