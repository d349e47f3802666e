"""``/incident …``: parse the text, make one call on the service, answer the person alone.

Slack wants an ack within 3 s. Each command gets :data:`ACK_BUDGET` to finish; its
answer then *is* the ack (errors included). Past the budget the ack says what is under
way — for ``run`` with the run id, which is chosen here and handed to the service as
the start's idempotency key — and the answer follows through the response_url.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond

from bot.core import slash
from bot.core.errors import UsageError
from bot.service import Service
from bot.slack import dispatch, replies
from bot.slack.answer import Reply, follow_up, settle, spawn
from bot.turns import Turns

ACK_BUDGET = 0.1
"""Seconds a command may take before the ack goes out without its answer (which then
follows through the response_url). Idle, a status takes ~20-40 ms and a start ~50-130 ms
on SQLite, so most answers are still the ack itself; under a burst the ack is not held
back for the answer (bench/server_ack.py: p99 2-2.7 s with 1.5 s)."""


COMMANDS_IN_FLIGHT = 4
"""Commands worked on at once; the rest wait their turn after their ack. Under a burst,
200 commands working at once shared one interpreter and every ack came late (bench/
server_ack.py); queued, the acks go out on time and the answers follow."""


def register(app: AsyncApp, service: Service, *, budget: float = ACK_BUDGET) -> None:
    """Listen to ``/incident`` on ``app``."""
    slots = Turns(COMMANDS_IN_FLIGHT)

    @app.command(slash.COMMAND)
    async def incident(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        slots.arrived()  # the work of earlier commands waits until a burst is over
        user = str(command.get("user_id") or "")
        try:
            parsed = slash.parse(str(command.get("text") or ""))
        except UsageError as exc:
            await _ack(ack, Reply(replies.error(exc)))
            return
        if isinstance(parsed, slash.Help):
            await _ack(ack, Reply(slash.HELP))
            return
        if isinstance(parsed, slash.Run):
            # The id exists before the run does, so even a late answer's ack can name it.
            run_id = f"run-{secrets.token_hex(6)}"
            work = settle(
                _start(service, parsed, user, run_id),
                what="run",
                on_error=lambda exc: replies.not_started(run_id, exc),
            )
            pending = replies.starting(parsed.playbook, run_id)
        else:
            work = settle(
                dispatch.answer(service, parsed, user), what=type(parsed).__name__.lower()
            )
            pending = replies.working()
        await _in_time(ack, respond, work, pending=pending, budget=budget, slots=slots)


async def _in_time(
    ack: AsyncAck,
    respond: AsyncRespond,
    work: Awaitable[Reply],
    *,
    pending: str,
    budget: float,
    slots: Turns | asyncio.Semaphore,
) -> None:
    async def queued() -> Reply:
        async with slots:
            return await work

    # Queued behind others, the answer cannot come within the budget: ack at once.
    wait = 0.0 if slots.locked() else budget
    task = asyncio.ensure_future(queued())
    if wait:
        done, _ = await asyncio.wait({task}, timeout=wait)
        if task in done:
            await _ack(ack, task.result())
            return
    await _ack(ack, Reply(pending))

    async def later() -> None:
        reply = await task
        async with slots:  # late answers queue too: the acks of a burst go first
            await follow_up(respond, reply)

    spawn(later(), "command")


async def _ack(ack: AsyncAck, reply: Reply) -> None:
    """Answer in the ack itself, to the person alone."""
    await ack(text=reply.text, blocks=reply.blocks, response_type="ephemeral")


async def _start(service: Service, command: slash.Run, user: str, run_id: str) -> Reply:
    return await dispatch.start(service, command, user, key=run_id.removeprefix("run-"))
