"""PagerDuty actions: Events API v2 trigger/resolve, and notes via the REST API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from bot.core.catalog import ActionInput, ActionSpec


class Trigger(ActionInput):
    summary: str = Field(min_length=1, max_length=1024)
    severity: Literal["critical", "error", "warning", "info"] = "critical"
    source: str = "irbot"
    component: str | None = None
    group: str | None = None
    dedup_key: str | None = Field(default=None, max_length=255)
    """Default: derived from the incident id, so a retry never pages twice."""
    custom_details: dict[str, Any] = Field(default_factory=dict)


class Resolve(ActionInput):
    dedup_key: str | None = Field(default=None, max_length=255)


class Note(ActionInput):
    content: str = Field(min_length=1, max_length=25_000)
    incident_id: str | None = None
    """Default: the PagerDuty incident that started the run."""


SPECS = (
    ActionSpec(
        "pagerduty.trigger",
        "Page through the Events API v2.",
        Trigger,
        ("dedup_key", "status"),
        integration="pagerduty.events",
    ),
    ActionSpec(
        "pagerduty.resolve",
        "Resolve the page this incident opened.",
        Resolve,
        ("dedup_key", "status"),
        integration="pagerduty.events",
    ),
    ActionSpec(
        "pagerduty.note",
        "Add a note to the PagerDuty incident behind this run.",
        Note,
        ("incident_id", "note_id"),
        integration="pagerduty.api",
    ),
)
