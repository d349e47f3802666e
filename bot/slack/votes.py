"""Approve and Reject: a click (or the Reject form) becomes one vote; the engine decides.

The voter is the signed payload's user; the button names only the run, the gate and
the plan digest the voter saw. Every answer — counted, granted, or refused with the
engine's reason (self-approval, not in an allowed group, already counted, expired,
plan changed) — goes to the voter alone; the approval message itself is updated by
the notifier from the timeline.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.errors import IrbotError
from bot.service import Service
from bot.slack import modals, replies, values
from bot.slack.answer import Reply, log, settle, tell
from bot.slack.blocks import APPROVE_ACTION, REJECT_ACTION


def register(app: AsyncApp, service: Service) -> None:
    @app.action(APPROVE_ACTION)
    async def approve(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        await ack()
        where = values.where_of(body)
        user = values.clicker(body)
        try:
            ref = values.gate_ref(values.action_value(body))
        except IrbotError as exc:
            await tell(client, user, where, replies.error(exc), respond)
            return
        reply = await settle(_vote(service, ref, user, "approve"), what="approve")
        await tell(client, user, where, reply.text, respond)

    @app.action(REJECT_ACTION)
    async def reject(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        # The trigger_id lives 3 s: open the form before anything slow.
        await ack()
        where = values.where_of(body)
        user = values.clicker(body)
        try:
            ref = values.gate_ref(values.action_value(body))
        except IrbotError as exc:
            await tell(client, user, where, replies.error(exc), respond)
            return
        try:
            await client.views_open(
                trigger_id=str(body.get("trigger_id") or ""),
                view=modals.reject_modal(ref, where),
            )
        except SlackClientError as exc:
            log.warning("slack.modal_failed", form=modals.REJECT_VIEW, error=type(exc).__name__)
            await tell(client, user, where, replies.form_failed(), respond)

    @app.view(modals.REJECT_VIEW)
    async def reject_submitted(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        reason = modals.submitted(view, modals.REASON_BLOCK, modals.REASON_INPUT).strip()
        if not reason:
            await ack(response_action="errors", errors={modals.REASON_BLOCK: "Give a reason."})
            return
        try:
            user = values.clicker(body)
            ref, where = values.load_gate(view.get("private_metadata"))
        except IrbotError as exc:
            await ack(response_action="errors", errors={modals.REASON_BLOCK: exc.show()})
            return
        await ack()
        vote = _vote(service, ref, user, "reject", reason=reason)
        reply = await settle(vote, what="reject")
        await tell(client, user, where, reply.text)


async def _vote(
    service: Service, ref: values.GateRef, user: str, decision: str, reason: str | None = None
) -> Reply:
    result = await service.avote(
        ref.run_id, user=user, decision=decision, reason=reason, digest=ref.digest
    )
    return Reply(replies.vote(result.answer, result.run_id, decision))
