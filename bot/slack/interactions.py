"""What every button click and every form submission starts with, written once.

A click is acked at once, then its value parsed into a reference (a malformed value is
answered to the clicker); a form's typed text is required, and the reference travels in
its ``private_metadata``. The clicker is always the signed payload's user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.errors import IrbotError
from bot.slack import modals, replies, values
from bot.slack.answer import log, tell

Ref = TypeVar("Ref")


async def clicked(
    ack: AsyncAck,
    body: dict[str, Any],
    client: AsyncWebClient,
    respond: AsyncRespond,
    parse: Callable[[object], Ref],
) -> tuple[str, values.Where, Ref] | None:
    """Ack, then (clicker, where, parsed button value); None when already answered."""
    await ack()
    where = values.where_of(body)
    user = values.clicker(body)
    try:
        return user, where, parse(values.action_value(body))
    except IrbotError as exc:
        await tell(client, user, where, replies.error(exc), respond)
        return None


async def submitted(
    ack: AsyncAck,
    body: dict[str, Any],
    view: dict[str, Any],
    load: Callable[[object], tuple[Ref, values.Where]],
    *,
    block: str = modals.REASON_BLOCK,
    field: str = modals.REASON_INPUT,
    missing: str = "Give a reason.",
) -> tuple[str, str, Ref, values.Where] | None:
    """(typed text, submitter, reference, where) of a form, acked; or None after the
    form was answered with the error to show next to ``block``."""
    text = modals.submitted(view, block, field).strip()
    if not text:
        await ack(response_action="errors", errors={block: missing})
        return None
    try:
        user = values.clicker(body)
        ref, where = load(view.get("private_metadata"))
    except IrbotError as exc:
        await ack(response_action="errors", errors={block: exc.show()})
        return None
    await ack()
    return text, user, ref, where


async def open_form(
    client: AsyncWebClient,
    body: dict[str, Any],
    view: dict[str, Any],
    *,
    user: str,
    where: values.Where,
    respond: AsyncRespond,
) -> None:
    """Open ``view`` on the click's trigger (valid 3 s); a failure is told to the user."""
    try:
        await client.views_open(trigger_id=str(body.get("trigger_id") or ""), view=view)
    except SlackClientError as exc:
        log.warning("slack.modal_failed", form=view.get("callback_id"), error=type(exc).__name__)
        await tell(client, user, where, replies.form_failed(), respond)
