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
from slack_sdk.web.async_client import AsyncWebClient

from bot.service import Service
from bot.slack import modals, replies, values
from bot.slack.answer import Reply, settle, tell
from bot.slack.blocks import APPROVE_ACTION, REJECT_ACTION
from bot.slack.interactions import clicked, open_form, submitted


def register(app: AsyncApp, service: Service) -> None:
    @app.action(APPROVE_ACTION)
    async def approve(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        got = await clicked(ack, body, client, respond, values.gate_ref)
        if got is None:
            return
        user, where, ref = got
        reply = await settle(_vote(service, ref, user, "approve"), what="approve")
        await tell(client, user, where, reply.text, respond)

    @app.action(REJECT_ACTION)
    async def reject(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        # The trigger_id lives 3 s: open the form before anything slow.
        got = await clicked(ack, body, client, respond, values.gate_ref)
        if got is None:
            return
        user, where, ref = got
        view = modals.reject_modal(ref, where)
        await open_form(client, body, view, user=user, where=where, respond=respond)

    @app.view(modals.REJECT_VIEW)
    async def reject_submitted(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        got = await submitted(ack, body, view, values.load_gate)
        if got is None:
            return
        reason, user, ref, where = got
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
