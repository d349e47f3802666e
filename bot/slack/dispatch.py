"""``/incident …`` commands answered in Slack's words, without Slack: one parsed command,
one call on the service, one :class:`Reply`.

Bolt-free on purpose: the Slack command handler (:mod:`bot.slack.commands`) and the
terminal (:mod:`bot.shell`) answer through this same code, so they cannot drift apart.
Errors are raised (:class:`~bot.core.errors.IrbotError`) for the caller to show.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from bot.core import slash
from bot.core.errors import IrbotError
from bot.service import Service
from bot.slack import blocks, replies


@dataclass(frozen=True)
class Reply:
    """What the person alone sees: Slack shows ``blocks`` when there are any."""

    text: str
    blocks: list[dict[str, Any]] | None = None
    refused: bool = False
    """The engine said no (a refused vote, a task answer not accepted)."""


async def start(
    service: Service, command: slash.Run, user: str, *, key: str | None = None
) -> Reply:
    """``/incident run``: queue the run (``key`` makes a repeat find the same run)."""
    started = await service.astart(command.playbook, command.inputs, requester=user, key=key)
    return Reply(replies.started(started.playbook, started.run_id, started.incident_id))


async def answer(service: Service, command: slash.Command, user: str) -> Reply:
    """Every other subcommand: help, status, list, note, cancel."""
    if isinstance(command, slash.Help):
        return Reply(slash.HELP)
    if isinstance(command, slash.Run):
        return await start(service, command, user)
    if isinstance(command, slash.Status) and command.incident_id is not None:
        rendered = blocks.incident_status_blocks(await service.astatus(command.incident_id))
        return Reply(rendered.text, rendered.blocks)
    if isinstance(command, slash.Status):
        incidents, waiting = await asyncio.gather(
            service.aopen_incidents(), service.awaiting_for(user)
        )
        view = blocks.home_view(incidents, waiting)
        text = f"{len(incidents)} open incident(s); {len(waiting)} waiting for you"
        return Reply(text, view["blocks"])
    if isinstance(command, slash.ListIncidents):
        rendered = blocks.incident_list_blocks(await service.aopen_incidents())
        return Reply(rendered.text, rendered.blocks)
    if isinstance(command, slash.Note):
        await service.anote(command.incident_id, user=user, text=command.text)
        return Reply(replies.noted(command.incident_id))
    if isinstance(command, slash.Cancel):
        run = await service.acancel(command.run_id, user=user)
        return Reply(replies.cancelled(run.id, run.status))
    raise IrbotError(f"no handler for {type(command).__name__}")
