"""Answering one person: settle a piece of work into a reply, and deliver it to them alone.

Errors raised on purpose (:class:`IrbotError`) become their ``show()`` text. Anything
else is a bug: :func:`settle` is the documented last-resort boundary of the Slack
handlers — it logs the exception type (never request bodies or typed values) and
answers with a short apology, so a person never sees a traceback and Slack never gets
a 500. Web API failures while answering are logged and swallowed: the answer is lost,
the handler and the run are not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import structlog
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.errors import IrbotError
from bot.core.redaction import Redactor
from bot.slack import replies
from bot.slack.dispatch import Reply
from bot.slack.values import Where

__all__ = ["Reply", "follow_up", "log", "settle", "spawn", "tell"]

log = structlog.get_logger("irbot.slack")

_REDACT = Redactor()

_BACKGROUND: set[asyncio.Task[Any]] = set()
"""Strong references to work that outlives its request (the loop keeps only weak ones)."""


async def settle(
    work: Awaitable[Reply],
    *,
    what: str,
    on_error: Callable[[IrbotError], str] = replies.error,
    holds_secret: bool = False,
) -> Reply:
    """The reply ``work`` produces, or the text of the error it raised.

    ``holds_secret``: the work carries a handed-over value, so an unexpected error is
    logged by type only (its message could quote an argument).
    """
    try:
        return await work
    except IrbotError as exc:
        return Reply(on_error(exc))
    except Exception as exc:  # noqa: BLE001 - last-resort boundary, see the module docstring
        detail = "" if holds_secret else _REDACT.text(str(exc))[:500]
        log.error("slack.handler_failed", handler=what, error=type(exc).__name__, detail=detail)
        return Reply(replies.failure())


def spawn(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    """Run ``coro`` after the request has been answered, keeping it alive until done."""
    task = asyncio.ensure_future(coro)
    task.set_name(f"irbot-slack-{name}")
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    return task


def _api_error(exc: SlackClientError) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return type(exc).__name__


async def tell(
    client: AsyncWebClient,
    user: str,
    where: Where,
    text: str,
    respond: AsyncRespond | None = None,
) -> None:
    """Say ``text`` to ``user`` alone: ephemerally where they clicked, else through the
    click's response_url, else in their direct messages with irbot."""
    if where.channel:
        try:
            await client.chat_postEphemeral(
                channel=where.channel, user=user, text=text, thread_ts=where.thread_ts
            )
            return
        except SlackClientError as exc:
            log.warning("slack.reply_failed", method="chat.postEphemeral", error=_api_error(exc))
    if respond is not None and respond.response_url:
        try:
            await respond(text=text, response_type="ephemeral", replace_original=False)
            return
        except (aiohttp.ClientError, TimeoutError, SlackClientError) as exc:
            log.warning("slack.reply_failed", method="response_url", error=type(exc).__name__)
    try:
        await client.chat_postMessage(channel=user, text=text)
    except SlackClientError as exc:
        log.warning("slack.reply_failed", method="chat.postMessage", error=_api_error(exc))


async def follow_up(respond: AsyncRespond, reply: Reply) -> None:
    """A later answer to a slash command, through its response_url (ephemeral)."""
    try:
        await respond(
            text=reply.text,
            blocks=reply.blocks,
            response_type="ephemeral",
            replace_original=False,
        )
    except (aiohttp.ClientError, TimeoutError, SlackClientError) as exc:
        log.warning("slack.reply_failed", method="response_url", error=type(exc).__name__)
