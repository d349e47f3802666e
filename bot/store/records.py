"""The incident and run records the store hands out: plain values, never ORM rows,
so callers cannot lazily load or accidentally flush changes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, overload

INCIDENT_STATUSES = ("open", "resolved", "closed")

RUN_STATUSES = (
    "pending",
    "running",
    "waiting",
    "succeeded",
    "failed",
    "rejected",
    "cancelled",
    "expired",
)
"""``waiting``: parked at an approval gate, a manual step or a wait; ``rejected``: an
approver said no; ``expired``: a gate's ttl passed without enough approvals."""

RUN_FINISHED = frozenset({"succeeded", "failed", "rejected", "cancelled", "expired"})
"""Statuses that stamp ``finished_at``. Which moves are legal is the engine's call."""


@overload
def require_utc(name: str, value: datetime) -> datetime: ...
@overload
def require_utc(name: str, value: datetime | None) -> datetime | None: ...
def require_utc(name: str, value: datetime | None) -> datetime | None:
    """Reject naive times (they are ambiguous in an audit record); normalise to UTC."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} {value.isoformat()} is naive; give a UTC time")
    return value.astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class Incident:
    """One incident: the thing a Slack thread, a PagerDuty incident and runs hang off."""

    id: str
    """``INC-<number>``."""
    number: int
    key: str
    """The caller's idempotency key (a run id, a webhook delivery id)."""
    title: str
    severity: str
    status: str
    playbook: str | None
    opened_at: datetime
    closed_at: datetime | None = None
    slack_channel: str | None = None
    slack_thread_ts: str | None = None
    pagerduty_incident: str | None = None


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One execution of one pinned playbook version. ``inputs`` must already be
    redacted: this row is shown on web pages and exported."""

    id: str
    incident_id: str
    playbook: str
    version: int
    sha256: str
    inputs: Mapping[str, Any] = field(hash=False)
    requester: str
    status: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    detail: str | None = None
    breakglass: bool = False

    def __post_init__(self) -> None:
        if self.status not in RUN_STATUSES:
            raise ValueError(f"run status {self.status!r} is not one of {', '.join(RUN_STATUSES)}")
        for name in ("created_at", "updated_at", "finished_at"):
            object.__setattr__(self, name, require_utc(name, getattr(self, name)))
