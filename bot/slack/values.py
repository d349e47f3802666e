"""What a button or a modal carries from the click to the handler: ids, never identity.

Button values are written by :mod:`bot.slack.blocks` and modal ``private_metadata`` by
:mod:`bot.slack.modals`; both travel through Slack and come back inside a signed
request, but are still parsed as untrusted text. Who clicked is always the signed
payload's ``user.id``; a value naming a user would be ignored.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from bot.core.errors import UsageError
from bot.core.slash import RUN_ID

VALUE_MAX = 2000
"""Slack's limit for a button value; private_metadata allows 3000."""


@dataclass(frozen=True)
class GateRef:
    """An Approve/Reject button: the gate and the plan digest the clicker saw."""

    run_id: str
    gate: str
    digest: str


@dataclass(frozen=True)
class TaskRef:
    """A Done/Failed button: the manual step of a run."""

    run_id: str
    step: str


@dataclass(frozen=True)
class Where:
    """Where the click happened, so the answer goes back there (ephemerally)."""

    channel: str | None = None
    thread_ts: str | None = None


def _object(text: object, what: str) -> dict[str, Any]:
    if not isinstance(text, str) or not text or len(text) > 3000:
        raise UsageError(f"this {what} carries no readable value; ask irbot to post it again")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"this {what} carries a malformed value") from exc
    if not isinstance(data, dict):
        raise UsageError(f"this {what} carries a malformed value")
    return data


def _text(data: dict[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise UsageError(f"this {what} does not say which {key.replace('_', ' ')} it is for")
    return value


def _run_id(data: dict[str, Any], what: str) -> str:
    run_id = _text(data, "run_id", what)
    if not RUN_ID.match(run_id):
        raise UsageError(f"this {what} names no valid run")
    return run_id


def gate_ref(value: object) -> GateRef:
    """An approval button's value; the digest is required, since approvers sign a plan."""
    data = _object(value, "approval button")
    return GateRef(
        run_id=_run_id(data, "approval button"),
        gate=_text(data, "gate", "approval button"),
        digest=_text(data, "digest", "approval button"),
    )


def task_ref(value: object) -> TaskRef:
    data = _object(value, "task button")
    return TaskRef(run_id=_run_id(data, "task button"), step=_text(data, "step", "task button"))


def where_of(body: dict[str, Any]) -> Where:
    """The channel and thread of the message a button sits on (none on App Home)."""
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id"
    )
    message = body.get("message") or {}
    thread_ts = message.get("thread_ts") or (body.get("container") or {}).get("thread_ts")
    return Where(
        channel=channel if isinstance(channel, str) else None,
        thread_ts=thread_ts if isinstance(thread_ts, str) else None,
    )


def dump(ref: GateRef | TaskRef, where: Where) -> str:
    """``private_metadata`` of a modal: the reference and where to answer, no user input."""
    return json.dumps({**asdict(ref), **asdict(where)}, separators=(",", ":"))


def load_gate(metadata: object) -> tuple[GateRef, Where]:
    data = _object(metadata, "form")
    return gate_ref(json.dumps(data)), _where(data)


def load_task(metadata: object) -> tuple[TaskRef, Where]:
    data = _object(metadata, "form")
    return task_ref(json.dumps(data)), _where(data)


def _where(data: dict[str, Any]) -> Where:
    channel, thread_ts = data.get("channel"), data.get("thread_ts")
    return Where(
        channel=channel if isinstance(channel, str) else None,
        thread_ts=thread_ts if isinstance(thread_ts, str) else None,
    )


def clicker(body: dict[str, Any]) -> str:
    """Who clicked or submitted: the signed payload's ``user.id``, the only identity."""
    user = (body.get("user") or {}).get("id")
    if not isinstance(user, str) or not user:
        raise UsageError("this request names no Slack user")
    return user


def action_value(body: dict[str, Any]) -> object:
    """The value of the button that was clicked (the first action of a block_actions)."""
    actions = body.get("actions") or [{}]
    first = actions[0] if isinstance(actions, list) and actions else {}
    return first.get("value") if isinstance(first, dict) else None
