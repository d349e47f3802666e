"""Block Kit for everything irbot shows in Slack: pure functions of timeline events and
records to blocks plus a fallback text (what notifications and screen readers use).

Every piece of text that came from a person, a playbook or a payload is escaped for
mrkdwn (``&``, ``<``, ``>``), so an input cannot become ``<!channel>`` or a fake link;
only the mentions and dates built here are live. Button values carry ids, never
identity: the app takes the clicker from the signed request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.core.timeline import (
    APPROVAL_BREAKGLASS,
    APPROVAL_COUNTED,
    APPROVAL_EXPIRED,
    APPROVAL_GRANTED,
    APPROVAL_REJECTED,
    APPROVAL_REQUESTED,
    INCIDENT_OPENED,
    MANUAL_COMPLETED,
    MANUAL_REQUESTED,
    NOTE,
    RUN_CANCELLED,
    RUN_EXPIRED,
    RUN_FAILED,
    RUN_FINISHED,
    RUN_STARTED,
    STEP_FAILED,
    StoredEvent,
)

if TYPE_CHECKING:
    from bot.service import IncidentStatus
    from bot.store import Incident, RunRecord

Block = dict[str, Any]

APPROVE_ACTION = "irbot_approve"
REJECT_ACTION = "irbot_reject"
TASK_DONE_ACTION = "irbot_task_done"
TASK_FAILED_ACTION = "irbot_task_failed"
APPROVAL_BLOCK = "irbot_approval"
TASK_BLOCK = "irbot_task"

SHORT_DIGEST = 12
SECTION_MAX = 3000
"""Slack's limit for a section's text."""
TOPIC_MAX = 250
LIST_MAX = 20
"""Items per list: a message holds at most 50 blocks, a Home tab 100."""

_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_FINAL_APPROVAL = frozenset(
    {APPROVAL_GRANTED, APPROVAL_REJECTED, APPROVAL_EXPIRED, APPROVAL_BREAKGLASS}
)
_RUN_ICONS = {
    "succeeded": ":white_check_mark:",
    "failed": ":x:",
    "rejected": ":no_entry:",
    "cancelled": ":octagonal_sign:",
    "expired": ":hourglass:",
    "running": ":arrow_forward:",
    "waiting": ":double_vertical_bar:",
    "pending": ":clock1:",
}


@dataclass(frozen=True)
class Rendered:
    """A message: the fallback ``text`` (notifications, screen readers) and its ``blocks``."""

    text: str
    blocks: list[Block]


def _rendered(plain: str, blocks: list[Block]) -> Rendered:
    """Slack parses the fallback text too: escape it like the blocks."""
    return Rendered(escape(clip(plain, SECTION_MAX)), blocks)


# --------------------------------------------------------------------------- text helpers


def escape(text: object) -> str:
    """``text`` made inert for mrkdwn: no mentions, links or channel pings."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_digest(digest: str) -> str:
    """The form people compare: the first 12 hex characters."""
    return digest[:SHORT_DIGEST]


def mention(principal: object) -> str:
    """``U02`` / ``user:U02`` -> a live mention; ``group:sre`` -> *sre*; anything else
    (``webhook:pagerduty``, a local name) -> escaped text."""
    text = str(principal or "")
    kind, _, name = text.partition(":")
    if kind == "user" and name:
        text = name
    elif kind == "group" and name:
        return f"group *{escape(name)}*"
    if _SLACK_USER.match(text):
        return f"<@{text}>"
    return escape(text) if text else "someone"


def actor_mention(actor: str) -> str:
    """An event's ``actor`` (``user:U01``, ``irbot``, ``webhook:pagerduty``)."""
    return "irbot" if actor == "irbot" else mention(actor)


def slack_date(iso: object, fallback_format: str = "{date_short_pretty} {time}") -> str:
    """A date each reader sees in their own time zone (text fallback: UTC ISO)."""
    try:
        when = datetime.fromisoformat(str(iso))
    except ValueError:
        return escape(iso)
    if when.tzinfo is None:
        return escape(iso)
    return f"<!date^{int(when.timestamp())}^{fallback_format}|{escape(when.isoformat())}>"


def approval_value(run_id: str, gate: str, digest: str) -> str:
    """The Approve/Reject button value: which gate and which plan, never who."""
    return json.dumps({"run_id": run_id, "gate": gate, "digest": digest}, separators=(",", ":"))


def task_value(run_id: str, step: str) -> str:
    return json.dumps({"run_id": run_id, "step": step}, separators=(",", ":"))


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_MAX)}}


def _context(*parts: str) -> Block:
    elements = [{"type": "mrkdwn", "text": clip(p, SECTION_MAX)} for p in parts if p]
    return {"type": "context", "elements": elements}


def _button(label: str, action_id: str, value: str, style: str) -> Block:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label, "emoji": False},
        "action_id": action_id,
        "value": value,
        "style": style,
    }


def _code(text: object) -> str:
    inner = escape(str(text).replace("`", "'"))
    return f"`{inner}`"


def _colon(head: str, detail: object) -> str:
    """``head: detail`` (detail escaped), or just ``head`` when there is no detail."""
    return f"{head}: {escape(detail)}" if detail else head


def _principals(values: object) -> str:
    items = values if isinstance(values, list) else [values] if values else []
    return ", ".join(mention(v) for v in items) or "anyone allowed"


# --------------------------------------------------------------------------- root and status


def status_text(event: StoredEvent, *, top_level: bool = True) -> str | None:
    """The incident's state after ``event``, in plain words (root message, channel
    topic), or None when the event does not change it. ``top_level``: whether the event
    belongs to the incident's own run rather than a sub-playbook's."""
    p = event.payload
    kind = event.kind
    if kind == INCIDENT_OPENED:
        return "opened, starting"
    if kind == RUN_STARTED and top_level:
        return "running"
    if kind == APPROVAL_REQUESTED:
        return f"waiting for approval at {p.get('gate')} (0 of {p.get('min', '?')})"
    if kind == APPROVAL_COUNTED:
        return f"waiting for approval at {p.get('gate')} ({p.get('summary') or 'counting'})"
    if kind == APPROVAL_GRANTED:
        return f"running (approved at {p.get('gate')})"
    if kind == APPROVAL_BREAKGLASS:
        return f"running: BREAK-GLASS at {p.get('gate')} by {p.get('user')}"
    if kind == MANUAL_REQUESTED:
        return f"waiting for task {event.step_id} ({p.get('assignee') or 'requester'})"
    if kind == MANUAL_COMPLETED:
        return "running"
    if not top_level:
        return None
    if kind == RUN_FINISHED:
        return "succeeded"
    if kind in (RUN_FAILED, RUN_EXPIRED):
        status = str(p.get("status") or ("expired" if kind == RUN_EXPIRED else "failed"))
        return f"{status}: {p['detail']}" if p.get("detail") else status
    if kind == RUN_CANCELLED:
        return f"cancelled by {p.get('by') or event.actor}"
    return None


def root_message(
    incident: Incident,
    *,
    status: str,
    run_id: str | None = None,
    requester: str | None = None,
    breakglass: bool = False,
) -> Rendered:
    """The incident's root message: what it is, who started it, where it stands.
    ``requester`` is an actor (``user:U01``, ``webhook:pagerduty``)."""
    head = f":rotating_light: *{escape(incident.id)}* · {escape(incident.title)}"
    who = [f"severity {escape(incident.severity)}"]
    if requester:
        who.append(f"started by {actor_mention(requester)}")
    if run_id:
        who.append(f"run {_code(run_id)}")
    blocks = [_section(head), _context(" · ".join(who)), _section(f"*Status:* {escape(status)}")]
    if breakglass:
        blocks.append(_section(":rotating_light: *BREAK-GLASS was used in this incident*"))
    blocks.append(_context("Updates follow in this thread."))
    text = f"{incident.id}: {incident.title} ({status})"
    return _rendered(text, blocks)


def channel_topic(incident: Incident, status: str) -> str:
    """Plain text for an incident channel's topic (at most 250 characters)."""
    return clip(f"{incident.id} · {status} · {incident.title}", TOPIC_MAX)


def channel_announcement(incident: Incident, channel_id: str) -> Rendered:
    """The pointer left in the notification channel when an incident has its own channel."""
    text = f":rotating_light: *{escape(incident.id)}* · {escape(incident.title)} → <#{channel_id}>"
    return _rendered(f"{incident.id}: {incident.title}", [_section(text)])


# --------------------------------------------------------------------------- approvals


def _approval_body(requested: StoredEvent) -> list[Block]:
    p = requested.payload
    gate = str(p.get("gate") or requested.step_id or "?")
    lines = [f":lock: *Approval needed* at gate {_code(gate)} of run {_code(requested.run_id)}"]
    if p.get("message"):
        lines.append(escape(p["message"]))
    blocks = [_section("\n".join(lines))]
    covers = [str(c) for c in p.get("covers") or []]
    plan = ["*Plan:* " + (", ".join(_code(c) for c in covers) or "no destructive step")]
    plan += _targets(p.get("targets"))
    blocks.append(_section("\n".join(plan)))
    digest = str(p.get("digest") or "")
    needs = f"needs {p.get('min', '?')} from {_principals(p.get('from'))}"
    details = [needs, "the requester cannot approve", f"plan {_code(short_digest(digest))}"]
    if p.get("expires_at"):
        details.append("expires " + slack_date(p["expires_at"]))
    blocks.append(_context(" · ".join(details)))
    return blocks


def _targets(targets: object) -> list[str]:
    """Resolved targets, when the event carries them (list of steps or of strings)."""
    if isinstance(targets, Mapping):
        targets = [{"id": k, "with": v} for k, v in targets.items()]
    if not isinstance(targets, list):
        return []
    lines = []
    for target in targets[:LIST_MAX]:
        if isinstance(target, Mapping):
            args = target.get("with")
            shown = (
                ", ".join(f"{k}={v}" for k, v in args.items())
                if isinstance(args, Mapping)
                else str(args or "")
            )
            label = _code(target.get("id") or target.get("action") or "?")
            lines.append(f"• {label} {escape(clip(shown, 300))}".rstrip())
        else:
            lines.append(f"• {escape(clip(str(target), 300))}")
    return lines


def _progress(requested: StoredEvent, approvers: Sequence[object]) -> str:
    count = f"{len(approvers)} of {requested.payload.get('min', '?')}"
    return f"{count}: {', '.join(mention(a) for a in approvers)}" if approvers else count


def _approval_buttons(requested: StoredEvent) -> Block:
    p = requested.payload
    value = approval_value(
        str(requested.run_id), str(p.get("gate") or requested.step_id), str(p.get("digest"))
    )
    return {
        "type": "actions",
        "block_id": APPROVAL_BLOCK,
        "elements": [
            _button("Approve", APPROVE_ACTION, value, "primary"),
            _button("Reject", REJECT_ACTION, value, "danger"),
        ],
    }


def approval_request(requested: StoredEvent) -> Rendered:
    """The plan behind a gate with **Approve** / **Reject** buttons."""
    blocks = _approval_body(requested)
    blocks.append(_section(f"*Approvals:* {_progress(requested, [])}"))
    blocks.append(_approval_buttons(requested))
    gate = requested.payload.get("gate")
    return _rendered(f"Approval needed at gate {gate} of run {requested.run_id}", blocks)


def approval_state(requested: StoredEvent, latest: StoredEvent) -> Rendered:
    """The approval message after ``latest`` (counted: still open, with buttons; granted,
    rejected, expired, break-glass: final, without them)."""
    p = latest.payload
    gate = requested.payload.get("gate")
    approvers = list(p.get("approvers") or [])
    blocks = _approval_body(requested)
    if latest.kind not in _FINAL_APPROVAL:
        progress = _progress(requested, approvers)
        blocks.append(_section(f"*Approvals:* {progress}"))
        blocks.append(_approval_buttons(requested))
        count = f"{len(approvers)} of {requested.payload.get('min', '?')}"
        return _rendered(f"Approval at gate {gate}: {count}", blocks)
    if latest.kind == APPROVAL_GRANTED:
        line = f":white_check_mark: *Approved* · {_progress(requested, approvers)}"
        text = f"Approved at gate {gate}"
    elif latest.kind == APPROVAL_REJECTED:
        line = _colon(f":no_entry: *Rejected* by {mention(p.get('user'))}", p.get("reason"))
        text = f"Rejected at gate {gate}"
    elif latest.kind == APPROVAL_EXPIRED:
        line = f":hourglass: *Expired* · {escape(p.get('reason') or 'no decision in time')}"
        text = f"Approval at gate {gate} expired"
    else:
        line = _colon(
            f":rotating_light: *BREAK-GLASS* by {mention(p.get('user'))}", p.get("reason")
        )
        line += "\nThis gate was passed by one person alone; security is paged."
        text = f"BREAK-GLASS at gate {gate} by {p.get('user')}"
    blocks.append(_section(line))
    return _rendered(text, blocks)


# --------------------------------------------------------------------------- manual tasks


def _task_body(requested: StoredEvent) -> list[Block]:
    p = requested.payload
    assignees = [a.strip() for a in str(p.get("assignee") or "").split(",") if a.strip()]
    head = (
        f":clipboard: *Task* {_code(requested.step_id)} of run {_code(requested.run_id)} "
        f"for {_principals(assignees) if assignees else 'the requester'}"
    )
    blocks = [_section(head), _section(escape(p.get("instructions") or ""))]
    notes = []
    if p.get("secret_input"):
        label = escape(p.get("secret_label") or "a secret")
        notes.append(
            f":closed_lock_with_key: *Done* opens a secure form for {label}: it goes straight "
            "to the secret store and is never shown"
        )
    if p.get("expires_at"):
        notes.append("due " + slack_date(p["expires_at"]))
    if notes:
        blocks.append(_context(*notes))
    return blocks


def task_request(requested: StoredEvent) -> Rendered:
    """A manual task with **Done** / **Failed** buttons."""
    value = task_value(str(requested.run_id), str(requested.step_id))
    blocks = _task_body(requested)
    blocks.append(
        {
            "type": "actions",
            "block_id": TASK_BLOCK,
            "elements": [
                _button("Done", TASK_DONE_ACTION, value, "primary"),
                _button("Failed", TASK_FAILED_ACTION, value, "danger"),
            ],
        }
    )
    return _rendered(f"Task {requested.step_id} of run {requested.run_id} is waiting", blocks)


def task_state(requested: StoredEvent, completed: StoredEvent) -> Rendered:
    """The task message once someone marked it done or failed (buttons removed)."""
    p = completed.payload
    who = mention(p.get("completed_by") or completed.actor)
    if p.get("status") == "failed":
        line = _colon(f":x: *Failed* · {who}", p.get("note"))
    else:
        line = f":white_check_mark: *Done* · {who}"
        if p.get("secret_ref"):
            line += " · secret handed over (stored; the run holds only a reference)"
        if p.get("note"):
            line += f"\n{escape(p['note'])}"
    blocks = [*_task_body(requested)[:2], _section(line)]
    return _rendered(f"Task {requested.step_id}: {p.get('status') or 'done'}", blocks)


# --------------------------------------------------------------------------- thread lines


def run_line(event: StoredEvent) -> Rendered | None:
    """A short thread line for step failures, run endings and notes; None for others."""
    p = event.payload
    run = _code(event.run_id)
    if event.kind == STEP_FAILED:
        item = f" (item {p['item']})" if p.get("item") is not None else ""
        line = _colon(f":warning: Step {_code(event.step_id)}{item} failed", p.get("error"))
    elif event.kind == RUN_FINISHED:
        line = _colon(f":white_check_mark: Run {run} finished", p.get("detail"))
    elif event.kind == RUN_FAILED:
        status = str(p.get("status") or "failed")
        icon = _RUN_ICONS.get(status, ":x:")
        line = _colon(f"{icon} Run {run} {escape(status)}", p.get("detail"))
    elif event.kind == RUN_CANCELLED:
        line = f":octagonal_sign: Run {run} cancelled by {mention(p.get('by') or event.actor)}"
    elif event.kind == RUN_EXPIRED:
        line = _colon(f":hourglass: Run {run} expired", p.get("detail"))
    elif event.kind == NOTE:
        line = _colon(f":memo: Note from {actor_mention(event.actor)}", p.get("text"))
    else:
        return None
    plain = line.replace("`", "")
    return Rendered(clip(plain, SECTION_MAX), [_section(line)])


# --------------------------------------------------------------------------- commands, Home


def _incident_line(incident: Incident) -> str:
    where = f" · <#{incident.slack_channel}>" if incident.slack_channel else ""
    return (
        f"*{escape(incident.id)}* · {escape(incident.title)} · {escape(incident.status)} · "
        f"opened {slack_date(incident.opened_at.isoformat())}{where}"
    )


def _run_line(run: RunRecord) -> str:
    icon = _RUN_ICONS.get(run.status, "•")
    line = f"{icon} {_code(run.id)} {escape(run.playbook)} · {escape(run.status)}"
    if run.breakglass:
        line += " · :rotating_light: *break-glass*"
    if run.detail:
        line += f" · {escape(clip(run.detail, 200))}"
    return line


def _waiting_line(event: StoredEvent) -> str:
    p = event.payload
    if event.kind == APPROVAL_REQUESTED:
        return (
            f":lock: approval at gate {_code(p.get('gate'))} of run {_code(event.run_id)} · "
            f"plan {_code(short_digest(str(p.get('digest') or '')))} · "
            f"needs {p.get('min', '?')} from {_principals(p.get('from'))}"
        )
    return (
        f":clipboard: task {_code(event.step_id)} of run {_code(event.run_id)} for "
        f"{_principals([a.strip() for a in str(p.get('assignee') or '').split(',') if a])}"
    )


def incident_status_blocks(status: IncidentStatus) -> Rendered:
    """``/incident status INC-ID``: the incident, its runs, and what it waits for."""
    blocks = [_section(_incident_line(status.incident))]
    runs = [_run_line(r) for r in status.runs[:LIST_MAX]]
    blocks.append(_section("*Runs*\n" + ("\n".join(runs) or "none")))
    if status.waiting:
        lines = [_waiting_line(e) for e in status.waiting[:LIST_MAX]]
        blocks.append(_section("*Waiting for*\n" + "\n".join(lines)))
    incident = status.incident
    text = f"{incident.id}: {incident.title} ({incident.status})"
    return _rendered(text, blocks)


def incident_list_blocks(incidents: Sequence[Incident]) -> Rendered:
    """``/incident list``: open incidents, newest first."""
    if not incidents:
        return Rendered("No open incidents.", [_section(":sunny: No open incidents.")])
    shown = list(incidents)[:LIST_MAX]
    blocks = [_section(f"*Open incidents* ({len(incidents)})")]
    blocks += [_section(_incident_line(i)) for i in shown]
    if len(incidents) > len(shown):
        blocks.append(_context(f"and {len(incidents) - len(shown)} more"))
    text = "Open incidents: " + ", ".join(i.id for i in shown)
    return _rendered(text, blocks)


def home_view(
    open_incidents: Sequence[Incident], waiting: Sequence[tuple[RunRecord, StoredEvent]]
) -> dict[str, Any]:
    """The App Home tab: what waits for the viewer, then the open incidents."""
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Waiting for you"}}
    ]
    if waiting:
        for run, event in list(waiting)[:LIST_MAX]:
            line = f"{_waiting_line(event)}\n{escape(run.playbook)} · {escape(run.incident_id)}"
            blocks.append(_section(line))
    else:
        blocks.append(_section("Nothing waits for you."))
    blocks.append({"type": "divider"})
    blocks.append({"type": "header", "text": {"type": "plain_text", "text": "Open incidents"}})
    if open_incidents:
        blocks += [_section(_incident_line(i)) for i in list(open_incidents)[:LIST_MAX]]
    else:
        blocks.append(_section(":sunny: No open incidents."))
    return {"type": "home", "blocks": blocks}
