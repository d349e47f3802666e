"""The short texts irbot answers a person with (ephemeral replies), as pure functions.

Messages irbot posts by itself live in :mod:`bot.slack.blocks`; these are the answers
to one person's command or click: what happened to their vote, their task answer,
their command. Text from people and playbooks is escaped for mrkdwn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.core.errors import IrbotError
from bot.slack.blocks import escape

_VOTE_ICONS = {
    "counted": ":ballot_box_with_check:",
    "granted": ":white_check_mark:",
    "breakglass": ":rotating_light:",
    "rejected": ":no_entry:",
    "expired": ":hourglass:",
    "refused": ":no_entry_sign:",
}


def error(exc: IrbotError) -> str:
    """An error as its owner words it (``IrbotError.show``), made inert for mrkdwn."""
    return f":warning: {escape(exc.show())}"


def failure() -> str:
    """For the unexpected: no details (they are in the server log, without secrets)."""
    return ":warning: irbot could not do that because of an internal error; it is logged."


def form_failed() -> str:
    return ":warning: Slack did not open the form; click the button again."


def task_closed(run_id: str, step: str) -> str:
    return f":information_source: Task `{escape(step)}` of `{escape(run_id)}` is no longer open."


def starting(playbook: str, run_id: str) -> str:
    return f":hourglass_flowing_sand: Starting *{escape(playbook)}* as `{escape(run_id)}`…"


def started(playbook: str, run_id: str, incident_id: str) -> str:
    return (
        f":rocket: Started *{escape(playbook)}* as `{escape(run_id)}` for "
        f"*{escape(incident_id)}*. Progress and approvals follow in the incident thread."
    )


def not_started(run_id: str, exc: IrbotError) -> str:
    return f":warning: `{escape(run_id)}` was not started: {escape(exc.show())}"


def working() -> str:
    return ":hourglass_flowing_sand: Working on it…"


def noted(incident_id: str) -> str:
    return f":memo: Noted on *{escape(incident_id)}*."


def cancelled(run_id: str, status: str) -> str:
    return f":octagonal_sign: `{escape(run_id)}` is {escape(status)}."


def vote(answer: Mapping[str, Any] | None, run_id: str, decision: str) -> str:
    """The engine's answer to one vote, for the voter alone."""
    if answer is None:
        return (
            f":hourglass: Your {decision} reached `{escape(run_id)}`, but no worker has "
            "decided on it yet; it counts when the run is picked up."
        )
    outcome = str(answer.get("outcome") or "")
    reason = escape(answer.get("reason") or "")
    summary = escape(answer.get("summary") or "")
    icon = _VOTE_ICONS.get(outcome, "•")
    if outcome == "refused":
        return f"{icon} Your {decision} was not counted: {reason}"
    if outcome == "counted":
        return f"{icon} Approval counted ({summary})."
    if outcome == "granted":
        return f"{icon} Approved ({summary}); the run continues."
    if outcome == "rejected":
        return f"{icon} Rejected; the run stops. ({reason})"
    detail = reason or summary
    return f"{icon} {escape(outcome) or 'Answered'}: {detail}"


def task(answer: Mapping[str, Any] | None, run_id: str, step: str, status: str) -> str:
    """The engine's answer to marking a task done or failed."""
    where = f"task `{escape(step)}` of `{escape(run_id)}`"
    if answer is None:
        return (
            f":hourglass: Your answer reached {where}, but no worker has decided on it yet; "
            "it counts when the run is picked up."
        )
    reason = escape(answer.get("reason") or "")
    if answer.get("outcome") == "accepted":
        icon = ":white_check_mark:" if status == "done" else ":x:"
        return f"{icon} {where.capitalize()}: {reason}."
    return f":no_entry_sign: Your answer to {where} was not accepted: {reason}"
