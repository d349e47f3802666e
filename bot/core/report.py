"""An incident's timeline as people review it: one view model, three renderings.

The web page (``GET /incidents/{id}``), ``timeline.md`` / ``timeline.json`` and
``irbot timeline --format md|json|html`` all show the same :class:`Report`, built here
from plain records so the outputs cannot drift apart. Pure: no database, no template
engine (HTML lives in :mod:`bot.web.render`).

Everything shown here was redacted before it was stored (the timeline never holds a
secret); rendering only has to escape, never to redact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from bot.core import timeline as tl

_DETAIL_KEYS = ("error", "reason", "summary", "note", "detail", "instructions", "text", "message")

_OUTCOMES = {
    tl.STEP_SUCCEEDED: "ok",
    tl.STEP_FAILED: "failed",
    tl.STEP_RETRYING: "retrying",
    tl.STEP_SKIPPED: "skipped",
    tl.RUN_FINISHED: "ok",
    tl.RUN_FAILED: "failed",
    tl.RUN_CANCELLED: "cancelled",
    tl.RUN_EXPIRED: "expired",
    tl.APPROVAL_COUNTED: "counted",
    tl.APPROVAL_GRANTED: "granted",
    tl.APPROVAL_REFUSED: "refused",
    tl.APPROVAL_REJECTED: "rejected",
    tl.APPROVAL_EXPIRED: "expired",
    tl.APPROVAL_BREAKGLASS: "break-glass",
    tl.MANUAL_COMPLETED: "ok",
    tl.MANUAL_REFUSED: "refused",
}

_VOTES = frozenset(
    {
        tl.APPROVAL_COUNTED,
        tl.APPROVAL_GRANTED,
        tl.APPROVAL_REFUSED,
        tl.APPROVAL_REJECTED,
        tl.APPROVAL_BREAKGLASS,
    }
)


class IncidentLike(Protocol):
    """What a report needs of an incident (``bot.store.records.Incident`` fits)."""

    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def playbook(self) -> str | None: ...
    @property
    def opened_at(self) -> datetime: ...
    @property
    def closed_at(self) -> datetime | None: ...
    @property
    def slack_channel(self) -> str | None: ...
    @property
    def slack_thread_ts(self) -> str | None: ...
    @property
    def pagerduty_incident(self) -> str | None: ...


class RunLike(Protocol):
    """What a report needs of a run (``bot.store.records.RunRecord`` fits)."""

    @property
    def id(self) -> str: ...
    @property
    def playbook(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def inputs(self) -> Mapping[str, Any]: ...
    @property
    def requester(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def detail(self) -> str | None: ...
    @property
    def breakglass(self) -> bool: ...


@dataclass(frozen=True)
class ChainState:
    """The audit chain as last verified: shown on every page, never hidden."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    first_bad_id: str | None = None
    reason: str | None = None

    @classmethod
    def of(cls, result: tl.VerifyResult) -> ChainState:
        return cls(
            result.ok, result.checked, result.first_bad_seq, result.first_bad_id, result.reason
        )

    @property
    def label(self) -> str:
        if self.ok:
            return f"verified ({self.checked} events)"
        return f"BROKEN at event {self.first_bad_seq}: {self.reason}"


@dataclass(frozen=True)
class Entry:
    """One event as a row: who did what to which step, with what result."""

    seq: int
    id: str
    at: datetime
    kind: str
    actor: str
    run_id: str | None
    step: str
    """The step id with ``[item]`` for fan-out and ``attempt n/m`` for retries."""
    outcome: str | None
    detail: str
    duration_ms: float | None
    breakglass: bool
    hash: str
    payload: Mapping[str, Any] = field(hash=False)


@dataclass(frozen=True)
class Approval:
    """One vote at a gate, counted or refused (refusals carry the reason)."""

    gate: str
    run_id: str | None
    user: str
    at: datetime
    decision: str
    outcome: str
    digest: str
    reason: str
    breakglass: bool


@dataclass(frozen=True)
class Run:
    id: str
    playbook: str
    version: int
    sha256: str
    status: str
    requester: str
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    detail: str | None
    breakglass: bool
    inputs: Mapping[str, Any] = field(hash=False)


@dataclass(frozen=True)
class Report:
    id: str
    title: str
    severity: str
    status: str
    playbook: str | None
    opened_at: datetime
    closed_at: datetime | None
    runs: tuple[Run, ...]
    entries: tuple[Entry, ...]
    approvals: tuple[Approval, ...]
    chain: ChainState
    slack_url: str | None
    pagerduty_url: str | None
    breakglass: bool
    """True if any run passed a gate by break-glass: flagged wherever the run is shown."""


def describe(payload: Mapping[str, Any]) -> str:
    """The one human line an event's payload boils down to ('' if nothing to say)."""
    for key in _DETAIL_KEYS:
        value = payload.get(key)
        if value:
            return str(value)
    return ""


def step_label(step_id: str | None, payload: Mapping[str, Any]) -> str:
    label = step_id or ""
    if payload.get("item") is not None:
        label += f"[{payload['item']}]"
    attempts = payload.get("attempts", 1)
    if isinstance(attempts, int) and attempts > 1:
        label += f" attempt {payload.get('attempt')}/{attempts}"
    return label


def slack_thread_url(base: str, channel: str, thread_ts: str) -> str:
    """A permalink in Slack's documented ``/archives/<channel>/p<ts without dot>`` form."""
    return f"{base.rstrip('/')}/archives/{channel}/p{thread_ts.replace('.', '')}"


def build(
    incident: IncidentLike,
    runs: Iterable[RunLike],
    events: Iterable[tl.StoredEvent],
    chain: ChainState,
    *,
    slack_base_url: str = "https://slack.com",
) -> Report:
    """The report of one incident; ``events`` in chain order."""
    entries: list[Entry] = []
    votes: list[Approval] = []
    pagerduty_url: str | None = None
    for event in events:
        payload = event.payload
        # The webhook's trigger is recorded on incident.opened (client.submit).
        if event.kind in (tl.INCIDENT_OPENED, tl.RUN_STARTED) and pagerduty_url is None:
            trigger = payload.get("trigger") or {}
            if isinstance(trigger, Mapping) and trigger.get("source") == "pagerduty":
                url = trigger.get("html_url")
                pagerduty_url = str(url) if isinstance(url, str) and url else None
        entries.append(entry(event))
        if event.kind in _VOTES:
            votes.append(_approval(event))
    run_views = tuple(_run(r) for r in runs)
    slack_url = None
    if incident.slack_channel and incident.slack_thread_ts:
        slack_url = slack_thread_url(
            slack_base_url, incident.slack_channel, incident.slack_thread_ts
        )
    return Report(
        id=incident.id,
        title=incident.title,
        severity=incident.severity,
        status=incident.status,
        playbook=incident.playbook,
        opened_at=incident.opened_at,
        closed_at=incident.closed_at,
        runs=run_views,
        entries=tuple(entries),
        approvals=tuple(votes),
        chain=chain,
        slack_url=slack_url,
        pagerduty_url=pagerduty_url,
        breakglass=any(r.breakglass for r in run_views)
        or any(e.kind == tl.APPROVAL_BREAKGLASS for e in entries),
    )


def entry(event: tl.StoredEvent) -> Entry:
    """One event as a row."""
    payload = event.payload
    duration = payload.get("duration_ms")
    return Entry(
        seq=event.seq,
        id=event.id,
        at=event.at,
        kind=event.kind,
        actor=event.actor,
        run_id=event.run_id,
        step=step_label(event.step_id, payload),
        outcome=_OUTCOMES.get(event.kind),
        detail=describe(payload),
        duration_ms=float(duration) if isinstance(duration, int | float) else None,
        breakglass=event.kind == tl.APPROVAL_BREAKGLASS,
        hash=event.hash,
        payload=payload,
    )


def _approval(event: tl.StoredEvent) -> Approval:
    p = event.payload
    reason = p.get("reason") if event.kind != tl.APPROVAL_COUNTED else None
    return Approval(
        gate=str(p.get("gate") or event.step_id or ""),
        run_id=event.run_id,
        user=str(p.get("user") or event.actor),
        at=event.at,
        decision=str(p.get("decision") or ""),
        outcome=_OUTCOMES.get(event.kind, event.kind),
        digest=str(p.get("plan_digest") or ""),
        reason=str(reason or ""),
        breakglass=event.kind == tl.APPROVAL_BREAKGLASS,
    )


def _run(r: RunLike) -> Run:
    duration = None
    if r.finished_at is not None:
        duration = round((r.finished_at - r.created_at).total_seconds(), 3)
    return Run(
        id=r.id,
        playbook=r.playbook,
        version=r.version,
        sha256=r.sha256,
        status=r.status,
        requester=r.requester,
        started_at=r.created_at,
        finished_at=r.finished_at,
        duration_s=duration,
        detail=r.detail,
        breakglass=r.breakglass,
        inputs=dict(r.inputs),
    )


# --------------------------------------------------------------------------- exports


def _iso(at: datetime | None) -> str | None:
    return None if at is None else tl.iso_utc(at)


def to_dict(report: Report) -> dict[str, Any]:
    """``timeline.json``: the report with every event's payload and hashes."""
    return {
        "incident": {
            "id": report.id,
            "title": report.title,
            "severity": report.severity,
            "status": report.status,
            "playbook": report.playbook,
            "opened_at": _iso(report.opened_at),
            "closed_at": _iso(report.closed_at),
            "breakglass": report.breakglass,
            "slack_url": report.slack_url,
            "pagerduty_url": report.pagerduty_url,
        },
        "chain": {
            "ok": report.chain.ok,
            "checked": report.chain.checked,
            "first_bad_seq": report.chain.first_bad_seq,
            "first_bad_id": report.chain.first_bad_id,
            "reason": report.chain.reason,
        },
        "runs": [
            {
                "id": r.id,
                "playbook": r.playbook,
                "version": r.version,
                "sha256": r.sha256,
                "status": r.status,
                "requester": r.requester,
                "started_at": _iso(r.started_at),
                "finished_at": _iso(r.finished_at),
                "duration_s": r.duration_s,
                "detail": r.detail,
                "breakglass": r.breakglass,
                "inputs": dict(r.inputs),
            }
            for r in report.runs
        ],
        "approvals": [
            {
                "gate": a.gate,
                "run_id": a.run_id,
                "user": a.user,
                "at": _iso(a.at),
                "decision": a.decision,
                "outcome": a.outcome,
                "plan_digest": a.digest,
                "reason": a.reason or None,
                "breakglass": a.breakglass,
            }
            for a in report.approvals
        ],
        "events": [
            {
                "seq": e.seq,
                "id": e.id,
                "at": _iso(e.at),
                "kind": e.kind,
                "actor": e.actor,
                "run_id": e.run_id,
                "step": e.step,
                "outcome": e.outcome,
                "detail": e.detail,
                "duration_ms": e.duration_ms,
                "breakglass": e.breakglass,
                "payload": dict(e.payload),
                "hash": e.hash,
            }
            for e in report.entries
        ],
    }


def md_cell(text: object) -> str:
    """Text safe inside a Markdown table cell: no row breaks, no column breaks, and no
    raw HTML (a pasted ``<script>`` stays text in any renderer)."""
    value = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    value = value.replace("|", "\\|").replace("`", "'")
    return " ".join(value.split())


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")


def to_markdown(report: Report) -> str:
    """``timeline.md``: ready to paste into a postmortem."""
    out: list[str] = [f"# {report.id}: {md_cell(report.title)}", ""]
    if report.breakglass:
        out += ["> **BREAK-GLASS USED**: a gate was passed by one person.", ""]
    closed = _when(report.closed_at) + " UTC" if report.closed_at else "—"
    out += [
        f"- **Status:** {report.status}",
        f"- **Severity:** {report.severity}",
        f"- **Playbook:** {md_cell(report.playbook or '—')}",
        f"- **Opened:** {_when(report.opened_at)} UTC",
        f"- **Closed:** {closed}",
    ]
    if report.slack_url:
        out.append(f"- **Slack thread:** <{report.slack_url}>")
    if report.pagerduty_url:
        out.append(f"- **PagerDuty incident:** <{report.pagerduty_url}>")
    out.append(f"- **Audit chain:** {md_cell(report.chain.label)}")
    out += ["", "## Runs", ""]
    if not report.runs:
        out.append("No runs.")
    for r in report.runs:
        flag = " — **BREAK-GLASS USED**" if r.breakglass else ""
        took = f" in {r.duration_s:g} s" if r.duration_s is not None else ""
        out.append(
            f"- `{r.id}` {md_cell(r.playbook)} v{r.version}, requested by {md_cell(r.requester)}:"
            f" **{r.status}**{took}{flag}"
        )
    out += ["", "## Approvals", ""]
    if report.approvals:
        out += [
            "| time (UTC) | gate | who | decision | result | plan digest | reason |",
            "|---|---|---|---|---|---|---|",
        ]
        for a in report.approvals:
            result = a.outcome.upper() if a.breakglass else a.outcome
            out.append(
                f"| {_when(a.at)} | {md_cell(a.gate)} | {md_cell(a.user)} | "
                f"{md_cell(a.decision)} | {result} | `{a.digest[:12]}` | {md_cell(a.reason)} |"
            )
    else:
        out.append("No approval votes.")
    out += [
        "",
        "## Timeline",
        "",
        "| # | time (UTC) | event | step | actor | result | took | detail |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in report.entries:
        took = f"{e.duration_ms:g} ms" if e.duration_ms is not None else ""
        out.append(
            f"| {e.seq} | {_when(e.at)} | {e.kind} | {md_cell(e.step)} | {md_cell(e.actor)} | "
            f"{e.outcome or ''} | {took} | {md_cell(e.detail)} |"
        )
    return "\n".join(out) + "\n"


def summarize(entries: Sequence[Entry]) -> dict[str, int]:
    """Counts by outcome, for a page header."""
    counts: dict[str, int] = {}
    for e in entries:
        if e.outcome:
            counts[e.outcome] = counts.get(e.outcome, 0) + 1
    return counts
