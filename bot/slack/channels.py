"""Slack channel names to channel IDs.

irbot.yaml may name the notification channel (``#incidents``) instead of giving its ID.
Posting works either way, but Slack's read APIs take IDs only, and reading a channel is
how irbot finds its own message again when a post's answer was lost (a crash between
posting and recording it, a timeout): with a bare name that search was impossible and the
message was posted twice. So a name is turned into its ID once per process, through
``conversations.list`` (scopes ``channels:read`` and ``groups:read``).

Shared by the notifier and the ``slack.post`` action. A name that cannot be resolved (not
found, the scopes missing, Slack refusing) is used as given, as before, and said once in
the log; a network error is left to the caller, whose post would meet it too.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = structlog.get_logger(__name__)

CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
"""Public (C), private (G, older ones) and direct (D) conversation IDs."""

PAGE_SIZE = 1000
"""Channels per ``conversations.list`` page (Slack's maximum)."""

MAX_PAGES = 20
"""Pages read before giving up on a name (20,000 channels)."""

RETRY_MISS_SECONDS = 300.0
"""How long a name that was not found is used as given before looking again
(``conversations.list`` is rate limited to ~20 calls a minute)."""


def is_id(channel: str) -> bool:
    return bool(CHANNEL_ID.match(channel))


@dataclass
class ChannelIds:
    """Names resolved so far, per Web API base URL (tests run several fake Slacks)."""

    found: dict[tuple[str, str], str] = field(default_factory=dict)
    missed: dict[tuple[str, str], float] = field(default_factory=dict)

    def forget(self) -> None:
        """Drop what was learnt (tests start a new fake workspace on a reused port)."""
        self.found.clear()
        self.missed.clear()

    async def resolve(self, client: AsyncWebClient, channel: str) -> str:
        """``channel``'s ID if it is a name Slack knows, else ``channel`` unchanged."""
        if is_id(channel):
            return channel
        name = channel.removeprefix("#")
        key = (client.base_url, name)
        if key in self.found:
            return self.found[key]
        if time.monotonic() < self.missed.get(key, float("-inf")):
            return channel
        try:
            listed = await find(client, name)
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            log.warning("slack.channel_lookup_failed", channel=channel, error=error)
            listed = None
        if listed is None:
            self.missed[key] = time.monotonic() + RETRY_MISS_SECONDS
            log.warning(
                "slack.channel_name_unresolved",
                channel=channel,
                hint="give the channel's ID in irbot.yaml, or grant channels:read and "
                "groups:read, so a lost post is found again instead of posted twice",
            )
            return channel
        self.found[key] = found = str(listed["id"])
        return found


async def find(client: AsyncWebClient, name: str) -> dict[str, Any] | None:
    """The unarchived channel called ``name`` as ``conversations.list`` shows it (id,
    creator, created ...), or None."""
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await client.conversations_list(
            types="public_channel,private_channel",
            exclude_archived=True,
            limit=PAGE_SIZE,
            cursor=cursor,
        )
        for channel in page.get("channels") or []:
            if channel.get("name") == name:
                return dict(channel)
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
        if cursor is None:
            return None
    return None


channel_ids = ChannelIds()
"""This process's names and IDs (a channel keeps its ID when renamed)."""
