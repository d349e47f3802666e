"""Done and Failed on a manual task; a secret the task asks for goes through a form.

Done on a task that asks for a secret opens a form; its value goes from the submission
straight to :meth:`Service.atask`, which stores it in AWS Secrets Manager and hands the
run only a reference. The value is never logged, echoed, or put in ``private_metadata``.
Failed always opens a form: a failed task needs a reason.
"""

from __future__ import annotations

import asyncio
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.errors import IrbotError
from bot.engine import client as engine
from bot.service import Service
from bot.slack import modals, replies, values
from bot.slack.answer import Reply, log, settle, tell
from bot.slack.blocks import TASK_DONE_ACTION, TASK_FAILED_ACTION


def register(app: AsyncApp, service: Service) -> None:
    _register_done(app, service)
    _register_failed(app, service)
    _register_handover(app, service)


def _register_done(app: AsyncApp, service: Service) -> None:
    @app.action(TASK_DONE_ACTION)
    async def done(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        await ack()
        where = values.where_of(body)
        user = values.clicker(body)
        try:
            ref = values.task_ref(values.action_value(body))
        except IrbotError as exc:
            await tell(client, user, where, replies.error(exc), respond)
            return
        # Read-only: does the open task ask for a secret? (The engine re-checks it all.)
        try:
            task = await asyncio.to_thread(engine.open_task, service.store, ref.run_id, ref.step)
        except IrbotError as exc:
            await tell(client, user, where, replies.error(exc), respond)
            return
        if task is None:
            await tell(client, user, where, replies.task_closed(ref.run_id, ref.step), respond)
            return
        if task.payload.get("secret_input"):
            label = task.payload.get("secret_label")
            view = modals.secret_modal(ref, where, label if isinstance(label, str) else None)
            await _open(client, body, view, user=user, where=where, respond=respond)
            return
        reply = await settle(_answer(service, ref, user, "done"), what="task_done")
        await tell(client, user, where, reply.text, respond)


def _register_failed(app: AsyncApp, service: Service) -> None:
    @app.action(TASK_FAILED_ACTION)
    async def failed(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        await ack()
        where = values.where_of(body)
        user = values.clicker(body)
        try:
            ref = values.task_ref(values.action_value(body))
        except IrbotError as exc:
            await tell(client, user, where, replies.error(exc), respond)
            return
        view = modals.failed_modal(ref, where)
        await _open(client, body, view, user=user, where=where, respond=respond)

    @app.view(modals.FAILED_VIEW)
    async def failed_submitted(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        reason = modals.submitted(view, modals.REASON_BLOCK, modals.REASON_INPUT).strip()
        if not reason:
            await ack(response_action="errors", errors={modals.REASON_BLOCK: "Give a reason."})
            return
        try:
            user = values.clicker(body)
            ref, where = values.load_task(view.get("private_metadata"))
        except IrbotError as exc:
            await ack(response_action="errors", errors={modals.REASON_BLOCK: exc.show()})
            return
        await ack()
        reply = await settle(_answer(service, ref, user, "failed", note=reason), what="task_failed")
        await tell(client, user, where, reply.text)


def _register_handover(app: AsyncApp, service: Service) -> None:
    @app.view(modals.HANDOVER_VIEW)
    async def secret_submitted(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        secret = modals.submitted(view, modals.HANDOVER_BLOCK, modals.HANDOVER_INPUT).strip()
        if not secret:
            await ack(response_action="errors", errors={modals.HANDOVER_BLOCK: "Paste the secret."})
            return
        try:
            user = values.clicker(body)
            ref, where = values.load_task(view.get("private_metadata"))
        except IrbotError as exc:
            await ack(response_action="errors", errors={modals.HANDOVER_BLOCK: exc.show()})
            return
        await ack()
        work = _answer(service, ref, user, "done", secret=secret)
        del secret  # only the service holds it from here on
        reply = await settle(work, what="task_secret", holds_secret=True)
        await tell(client, user, where, reply.text)


async def _open(
    client: AsyncWebClient,
    body: dict[str, Any],
    view: dict[str, Any],
    *,
    user: str,
    where: values.Where,
    respond: AsyncRespond,
) -> None:
    try:
        await client.views_open(trigger_id=str(body.get("trigger_id") or ""), view=view)
    except SlackClientError as exc:
        log.warning("slack.modal_failed", form=view["callback_id"], error=type(exc).__name__)
        await tell(client, user, where, replies.form_failed(), respond)


async def _answer(
    service: Service,
    ref: values.TaskRef,
    user: str,
    status: str,
    *,
    note: str | None = None,
    secret: str | None = None,
) -> Reply:
    result = await service.atask(
        ref.run_id, user=user, status=status, step_id=ref.step, note=note, secret=secret
    )
    return Reply(replies.task(result.answer, result.run_id, result.step_id, status))
