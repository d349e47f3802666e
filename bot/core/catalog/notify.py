"""Notification actions: Slack messages and e-mail."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from bot.core.catalog import ActionInput, ActionSpec


class SlackPost(ActionInput):
    text: str = Field(min_length=1, max_length=40_000)
    channel: str | None = None
    """Default: the incident's channel (or the notification channel)."""
    thread: bool = True
    """Post in the incident's thread rather than as a new message."""
    blocks: list[dict[str, Any]] | None = None


class SlackUpdate(ActionInput):
    ts: str = Field(min_length=1)
    text: str = Field(min_length=1, max_length=40_000)
    channel: str | None = None


class Email(ActionInput):
    to: list[str] = Field(min_length=1)
    subject: str = Field(min_length=1, max_length=998)
    body: str


SPECS = (
    ActionSpec(
        "slack.post",
        "Post a message in the incident's channel or thread.",
        SlackPost,
        ("channel", "ts"),
        integration="slack",
    ),
    ActionSpec(
        "slack.update",
        "Edit a message irbot posted earlier.",
        SlackUpdate,
        ("channel", "ts"),
        integration="slack",
    ),
    ActionSpec(
        "notify.email",
        "Send an e-mail over SMTP.",
        Email,
        ("message_id", "recipients"),
        integration="smtp",
    ),
)
