"""The fake Slack Web API (:mod:`bot.sandbox.slack`) as pytest fixtures.

The server itself ships with irbot (``irbot demo`` prints the thread it holds); this
module re-exports it, defines the test canary token and the fixtures ``fake_slack`` (a
started server) and ``slack_env`` (also sets SLACK_BOT_TOKEN and SLACK_API_URL); import
them into a test module or a conftest::

    from tests.fake_slack import FakeSlack, fake_slack_fixture, slack_env_fixture  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.sandbox.slack import (
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    Answer,
    Call,
    FakeSlack,
    Handler,
    Message,
)
from bot.slack.channels import channel_ids

__all__ = [
    "BOT_ID",
    "BOT_TOKEN",
    "BOT_USER_ID",
    "TEAM_ID",
    "Answer",
    "Call",
    "FakeSlack",
    "Handler",
    "Message",
    "fake_slack_fixture",
    "slack_env_fixture",
]

BOT_TOKEN = "xoxb-1111-2222-fakeslackcanary"
"""The token ``slack_env`` sets; also a canary: it must never show up in any output."""


@pytest.fixture(name="fake_slack")
def fake_slack_fixture() -> Iterator[FakeSlack]:
    """A started fake Slack Web API server; ``.url`` is its base URL."""
    channel_ids.forget()  # names learnt from an earlier fake on the same port
    with FakeSlack() as server:
        yield server


@pytest.fixture(name="slack_env")
def slack_env_fixture(fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> FakeSlack:
    """``fake_slack`` with SLACK_BOT_TOKEN (:data:`BOT_TOKEN`) and SLACK_API_URL set."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_API_URL", fake_slack.url)
    return fake_slack
