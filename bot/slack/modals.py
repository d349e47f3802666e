"""The forms a click opens: a reason to reject, a reason a task failed, a secret to hand over.

Pure view builders and readers. ``private_metadata`` holds only ids and where to answer
(:func:`bot.slack.values.dump`); what a person types comes back in the submission's
state and nowhere else, so a handed-over secret never rides in metadata.
"""

from __future__ import annotations

from typing import Any

from bot.slack.blocks import escape, short_digest
from bot.slack.values import GateRef, TaskRef, Where, dump

REJECT_VIEW = "irbot_reject_modal"
FAILED_VIEW = "irbot_task_failed_modal"
HANDOVER_VIEW = "irbot_task_handover_modal"

REASON_BLOCK = "reason"
REASON_INPUT = "reason"
HANDOVER_BLOCK = "handover"
HANDOVER_INPUT = "value"

REASON_MAX = 2000
HANDOVER_MAX = 3000
"""plain_text_input takes at most 3000 characters."""

View = dict[str, Any]


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def _modal(callback_id: str, title: str, submit: str, metadata: str, blocks: list[Any]) -> View:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": _plain(title),
        "submit": _plain(submit),
        "close": _plain("Cancel"),
        "private_metadata": metadata,
        "blocks": blocks,
    }


def _reason_input(label: str, placeholder: str) -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": REASON_BLOCK,
        "label": _plain(label),
        "element": {
            "type": "plain_text_input",
            "action_id": REASON_INPUT,
            "multiline": True,
            "min_length": 1,
            "max_length": REASON_MAX,
            "placeholder": _plain(placeholder),
        },
    }


def reject_modal(ref: GateRef, where: Where) -> View:
    """Reject needs a reason: it stops the run and is recorded on the timeline."""
    intro = (
        f"Reject gate `{escape(ref.gate)}` of run `{escape(ref.run_id)}` "
        f"(plan `{short_digest(ref.digest)}`)? The run stops."
    )
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": intro}},
        _reason_input("Why do you reject it?", "Recorded on the incident timeline"),
    ]
    return _modal(REJECT_VIEW, "Reject", "Reject", dump(ref, where), blocks)


def failed_modal(ref: TaskRef, where: Where) -> View:
    intro = (
        f"Mark task `{escape(ref.step)}` of run `{escape(ref.run_id)}` as failed? The run stops."
    )
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": intro}},
        _reason_input("What went wrong?", "Recorded on the incident timeline"),
    ]
    return _modal(FAILED_VIEW, "Task failed", "Mark failed", dump(ref, where), blocks)


def secret_modal(ref: TaskRef, where: Where, label: str | None) -> View:
    """A form for the secret a task asks for; it says where the value goes."""
    what = (label or "The secret").strip()[:100]
    blocks = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": (
                    f"Task `{escape(ref.step)}` of run `{escape(ref.run_id)}` asks for "
                    f"*{escape(what)}*. Done hands it over and completes the task."
                ),
            },
        },
        {
            "type": "input",
            "block_id": HANDOVER_BLOCK,
            "label": _plain(f"{what} (stored in AWS Secrets Manager, never shown)"),
            "hint": _plain(
                "irbot puts the value straight into AWS Secrets Manager; the run, the "
                "timeline and Slack messages only ever see a reference to it."
            ),
            "element": {
                "type": "plain_text_input",
                "action_id": HANDOVER_INPUT,
                "multiline": True,
                "min_length": 1,
                "max_length": HANDOVER_MAX,
            },
        },
    ]
    return _modal(HANDOVER_VIEW, "Hand over a secret", "Done", dump(ref, where), blocks)


def submitted(view: dict[str, Any], block_id: str, action_id: str) -> str:
    """The text typed into one input of a submitted view ("" if absent)."""
    values = (view.get("state") or {}).get("values") or {}
    value = ((values.get(block_id) or {}).get(action_id) or {}).get("value")
    return value if isinstance(value, str) else ""
