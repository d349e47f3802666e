"""Who may complete a manual task, and with what: pure rules, re-checked in the workflow.

The identity rules are the approval gates' (:func:`bot.core.approvals.is_allowed`):
the person must be named by the task's assignee (``user:ID`` or ``group:NAME``, with
membership read when the answer arrives). A task marked failed needs a reason; a task
that asks for a secret is done only with a reference to where the secret was stored,
never with the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.core.approvals import Groups, is_allowed
from bot.core.errors import UsageError
from bot.core.refs import SecretRef

TaskStatus = Literal["done", "failed"]
TaskRefusal = Literal["malformed", "not_assignee", "reason_required", "secret_required"]


@dataclass(frozen=True)
class TaskAnswer:
    user: str
    status: TaskStatus
    note: str | None = None
    secret_ref: str | None = None


@dataclass(frozen=True)
class TaskDecision:
    accepted: bool
    reason: str
    code: TaskRefusal | None = None


def assignee_principals(assignee: str | None, requester: str) -> tuple[str, ...]:
    """``group:sre`` / ``user:U1`` as written; a bare id means a user; default: the requester."""
    if not assignee:
        return (f"user:{requester}",)
    parts = [p.strip() for p in assignee.split(",") if p.strip()]
    return tuple(p if ":" in p else f"user:{p}" for p in parts)


def parse_answer(message: object) -> TaskAnswer:
    """A task answer from an engine message; UsageError says what is malformed."""
    if not isinstance(message, dict):
        raise UsageError("malformed task answer")
    user, status = message.get("user"), message.get("status")
    if not isinstance(user, str) or not user:
        raise UsageError("a task answer needs the user who gives it")
    if status not in ("done", "failed"):
        raise UsageError(f"a task is marked done or failed, not {status!r}")
    note, ref = message.get("note"), message.get("secret_ref")
    return TaskAnswer(
        user=user,
        status=status,
        note=note if isinstance(note, str) and note.strip() else None,
        secret_ref=ref if isinstance(ref, str) and ref else None,
    )


def decide_task(
    answer: TaskAnswer, principals: tuple[str, ...], groups: Groups, *, needs_secret: bool
) -> TaskDecision:
    """Accept or refuse one answer to a manual task."""
    if not is_allowed(answer.user, principals, groups):
        who = ", ".join(principals)
        return TaskDecision(
            False, f"{answer.user} is not an assignee of this task ({who})", "not_assignee"
        )
    if answer.status == "failed":
        if answer.note is None:
            return TaskDecision(False, "marking a task failed needs a reason", "reason_required")
        return TaskDecision(True, f"marked failed by {answer.user}: {answer.note}")
    if needs_secret:
        if answer.secret_ref is None:
            return TaskDecision(
                False, "this task needs the new secret handed over", "secret_required"
            )
        try:
            SecretRef.parse(answer.secret_ref)
        except UsageError as exc:
            return TaskDecision(False, exc.message, "secret_required")
    return TaskDecision(True, f"done by {answer.user}")
