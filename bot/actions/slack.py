"""Slack actions: post in the incident's thread (or a channel) and edit irbot's messages.

Settings, read at call time: ``SLACK_BOT_TOKEN`` (required) and ``SLACK_API_URL`` (the Web
API base URL, default https://slack.com/api/; tests point it at a local fake).

Where slack.post goes:

- ``channel`` given: a new message in that channel;
- else, with ``thread`` (the default): a reply in the incident's thread; the first post
  of an incident without a thread becomes its root, in irbot.yaml's ``slack.channel``;
- else: a new message in the incident's channel (or irbot.yaml's ``slack.channel``).

Repeats are safe: every message carries metadata ``irbot_step`` with the step's
idempotency key, and before posting the thread (or the channel's recent history) is
searched for that key; a hit is reused instead of posting again. A channel given by
name (``#incidents``) is looked up first (:mod:`bot.slack.channels`), as the history API
takes IDs only; a name that cannot be looked up is posted to as given, unsearched.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.catalog.notify import SlackPost, SlackUpdate
from bot.engine.actions import ActionContext, ActionError, NotConfigured, Registry
from bot.slack.channels import channel_ids, is_id

DEFAULT_API_URL = "https://slack.com/api/"
EVENT_TYPE = "irbot_step"
TIMEOUT_SECONDS = 15
LOOKUP_PAGES = 5
"""Pages of 200 messages searched for an earlier post of the same step."""

_AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
_CHANNEL_ERRORS = frozenset({"channel_not_found", "not_in_channel"})
_TRANSIENT = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})


def not_configured() -> str | None:
    """Why the Slack actions cannot run here, or None."""
    if not os.environ.get("SLACK_BOT_TOKEN", "").strip():
        return "set SLACK_BOT_TOKEN (the Slack app's bot token, xoxb-…)"
    return None


def api_url() -> str:
    """The Web API base URL (``SLACK_API_URL``), with the trailing slash slack_sdk needs."""
    url = os.environ.get("SLACK_API_URL", "").strip() or DEFAULT_API_URL
    return url if url.endswith("/") else url + "/"


def web_client(token: str) -> AsyncWebClient:
    """A client that waits out a 429 (Retry-After) and retries a dropped connection, twice."""
    return AsyncWebClient(
        token=token,
        base_url=api_url(),
        timeout=TIMEOUT_SECONDS,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=2),
        ],
    )


def _token(ctx: ActionContext) -> str:
    token = os.environ.get("SLACK_BOT_TOKEN", "").strip()
    if not token:
        raise NotConfigured(not_configured() or "set SLACK_BOT_TOKEN")
    return ctx.mark_secret(token)


def _api_error(exc: SlackApiError, doing: str) -> ActionError:
    data = getattr(exc.response, "data", None)
    error = str(data.get("error") or "") if isinstance(data, dict) else ""
    status = int(getattr(exc.response, "status_code", 0) or 0)
    if error == "ratelimited" or status == 429:
        return ActionError(f"{doing}: Slack is rate limiting", retryable=True, code="throttled")
    if error in _CHANNEL_ERRORS:
        return ActionError(
            f"{doing}: {error}: check the channel and invite the bot into it (/invite @irbot)",
            code="channel",
        )
    if error == "is_archived":
        return ActionError(f"{doing}: the channel is archived; pick another", code="channel")
    if error in _AUTH_ERRORS:
        return ActionError(
            f"{doing}: Slack rejected the token ({error}): check SLACK_BOT_TOKEN", code="config"
        )
    if error == "message_not_found":
        return ActionError(f"{doing}: no such message; check ts and channel", code="not_found")
    if error in ("cant_update_message", "edit_window_closed"):
        return ActionError(f"{doing}: irbot can only edit messages it posted", code="input")
    if error == "missing_scope":
        needed = data.get("needed", "?") if isinstance(data, dict) else "?"
        return ActionError(
            f"{doing}: the Slack app lacks the scope {needed}: add it to the app and reinstall",
            code="config",
        )
    if error in _TRANSIENT or status >= 500:
        return ActionError(
            f"{doing}: Slack error {error or status}", retryable=True, code="slack_5xx"
        )
    return ActionError(f"{doing}: Slack answered {error or status}", code="slack")


@asynccontextmanager
async def _mapped(doing: str) -> AsyncIterator[None]:
    """Turn slack_sdk and aiohttp errors raised inside into ActionErrors naming ``doing``."""
    try:
        yield
    except SlackApiError as exc:
        raise _api_error(exc, doing) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ActionError(
            f"{doing}: cannot reach Slack at {api_url()} ({type(exc).__name__})",
            retryable=True,
            code="network",
        ) from exc
    except SlackClientError as exc:
        raise ActionError(f"{doing}: {type(exc).__name__}", code="slack") from exc


def _is_ours(message: Mapping[str, Any], key: str) -> bool:
    metadata = message.get("metadata") or {}
    payload = metadata.get("event_payload") or {}
    return bool(metadata.get("event_type") == EVENT_TYPE and payload.get("key") == key)


async def find_posted(
    client: AsyncWebClient, channel: str, key: str, thread_ts: str | None
) -> str | None:
    """The ts of the message posted earlier for ``key``, in the thread or the channel."""
    cursor: str | None = None
    for _ in range(LOOKUP_PAGES):
        if thread_ts is not None:
            page = await client.conversations_replies(
                channel=channel, ts=thread_ts, include_all_metadata=True, limit=200, cursor=cursor
            )
        else:
            page = await client.conversations_history(
                channel=channel, include_all_metadata=True, limit=200, cursor=cursor
            )
        for message in page.get("messages") or []:
            if _is_ours(message, key):
                return str(message["ts"])
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
        if cursor is None:
            break
    return None


def _target(inputs: SlackPost, ctx: ActionContext) -> tuple[str, str | None, bool]:
    """(channel, thread ts or None, whether the post becomes the incident's root)."""
    if inputs.channel:
        return inputs.channel, None, False
    thread = ctx.incident.slack_thread() if ctx.incident is not None else None
    if thread is not None:
        channel, ts = thread
        return channel, (ts if inputs.thread else None), False
    fallback = ctx.incident.notification_channel() if ctx.incident is not None else None
    if not fallback:
        raise ActionError(
            "slack.post has no channel: set slack.channel in irbot.yaml, or pass channel",
            code="config",
        )
    return fallback, None, inputs.thread


async def post(inputs: SlackPost, ctx: ActionContext) -> Mapping[str, Any]:
    """Post (or find the earlier post of this step) and return its channel and ts."""
    client = web_client(_token(ctx))
    redact = ctx.redactor.with_values(ctx.secrets)
    channel, thread_ts, becomes_root = _target(inputs, ctx)
    key = ctx.idempotency_key
    async with _mapped(f"posting to Slack channel {channel}"):
        channel = await channel_ids.resolve(client, channel)
        ts = None
        if thread_ts is not None or is_id(channel):
            ts = await find_posted(client, channel, key, thread_ts)
        reused = ts is not None
        if ts is None:
            response = await client.chat_postMessage(
                channel=channel,
                text=redact.text(inputs.text),
                blocks=redact(inputs.blocks) if inputs.blocks else None,
                thread_ts=thread_ts,
                metadata={"event_type": EVENT_TYPE, "event_payload": {"key": key}},
            )
            channel, ts = str(response["channel"]), str(response["ts"])
    if becomes_root and ctx.incident is not None:
        root = ctx.incident.set_slack_thread(channel, ts)
        if root != (channel, ts):
            # The notifier posted the incident's root while this post was in flight: move
            # this message into its thread rather than leave two roots.
            channel, ts = await _move_into_thread(
                client, channel=channel, ts=ts, root=root, inputs=inputs, ctx=ctx
            )
            thread_ts = root[1]
    ctx.logger().info("slack.posted", channel=channel, ts=ts, thread_ts=thread_ts, reused=reused)
    return {"channel": channel, "ts": ts}


async def _move_into_thread(
    client: Any,
    *,
    channel: str,
    ts: str,
    root: tuple[str, str],
    inputs: SlackPost,
    ctx: ActionContext,
) -> tuple[str, str]:
    redact = ctx.redactor.with_values(ctx.secrets)
    key = ctx.idempotency_key
    async with _mapped(f"moving a message into the incident thread in {root[0]}"):
        await client.chat_delete(channel=channel, ts=ts)
        found = await find_posted(client, root[0], key, root[1])
        if found is not None:
            return root[0], found
        response = await client.chat_postMessage(
            channel=root[0],
            text=redact.text(inputs.text),
            blocks=redact(inputs.blocks) if inputs.blocks else None,
            thread_ts=root[1],
            metadata={"event_type": EVENT_TYPE, "event_payload": {"key": key}},
        )
    return str(response["channel"]), str(response["ts"])


async def update(inputs: SlackUpdate, ctx: ActionContext) -> Mapping[str, Any]:
    """Replace the text of a message irbot posted; doing it twice leaves the same text."""
    client = web_client(_token(ctx))
    channel = inputs.channel
    if not channel and ctx.incident is not None:
        thread = ctx.incident.slack_thread()
        channel = thread[0] if thread is not None else ctx.incident.notification_channel()
    if not channel:
        raise ActionError(
            "slack.update has no channel: pass channel (the one the message is in)", code="input"
        )
    text = ctx.redactor.with_values(ctx.secrets).text(inputs.text)
    async with _mapped(f"updating Slack message {inputs.ts} in {channel}"):
        response = await client.chat_update(channel=channel, ts=inputs.ts, text=text)
    ctx.logger().info("slack.updated", channel=response["channel"], ts=response["ts"])
    return {"channel": str(response["channel"]), "ts": str(response["ts"])}


def register(registry: Registry) -> None:
    registry.function("slack.post", check=not_configured)(post)
    registry.function("slack.update", check=not_configured)(update)
