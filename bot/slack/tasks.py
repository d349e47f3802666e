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
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.errors import IrbotError
from bot.engine import client as engine
from bot.service import Service
from bot.slack import modals, replies, values
from bot.slack.answer import Reply, settle, tell
from bot.slack.blocks import TASK_DONE_ACTION, TASK_FAILED_ACTION
from bot.slack.interactions import clicked, open_form, submitted


def register(app: AsyncApp, service: Service) -> None:
    _register_done(app, service)
    _register_failed(app, service)
    _register_handover(app, service)


def _register_done(app: AsyncApp, service: Service) -> None:
    @app.action(TASK_DONE_ACTION)
    async def done(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        got = await clicked(ack, body, client, respond, values.task_ref)
        if got is None:
            return
        user, where, ref = got
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
            await open_form(client, body, view, user=user, where=where, respond=respond)
            return
        reply = await settle(_answer(service, ref, user, "done"), what="task_done")
        await tell(client, user, where, reply.text, respond)


def _register_failed(app: AsyncApp, service: Service) -> None:
    @app.action(TASK_FAILED_ACTION)
    async def failed(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        got = await clicked(ack, body, client, respond, values.task_ref)
        if got is None:
            return
        user, where, ref = got
        view = modals.failed_modal(ref, where)
        await open_form(client, body, view, user=user, where=where, respond=respond)

    @app.view(modals.FAILED_VIEW)
    async def failed_submitted(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        got = await submitted(ack, body, view, values.load_task)
        if got is None:
            return
        reason, user, ref, where = got
        reply = await settle(_answer(service, ref, user, "failed", note=reason), what="task_failed")
        await tell(client, user, where, reply.text)


def _register_handover(app: AsyncApp, service: Service) -> None:
    @app.view(modals.HANDOVER_VIEW)
    async def secret_submitted(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        got = await submitted(
            ack,
            body,
            view,
            values.load_task,
            block=modals.HANDOVER_BLOCK,
            field=modals.HANDOVER_INPUT,
            missing="Paste the secret.",
        )
        if got is None:
            return
        secret, user, ref, where = got
        work = _answer(service, ref, user, "done", secret=secret)
        del secret, got  # only the service holds it from here on
        reply = await settle(work, what="task_secret", holds_secret=True)
        await tell(client, user, where, reply.text)


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
