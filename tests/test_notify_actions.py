"""slack.post / slack.update against the local fake Slack Web API, and notify.email against
a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from bot.actions import email as email_actions
from bot.actions import slack as slack_actions
from bot.core.catalog.notify import Email, SlackPost, SlackUpdate
from bot.core.redaction import MASK, Redactor
from bot.engine.actions import ActionContext, ActionError, NotConfigured
from tests.fake_slack import (  # noqa: F401 - fixtures
    BOT_TOKEN,
    FakeSlack,
    fake_slack_fixture,
    slack_env_fixture,
)
from tests.serving import free_port

INCIDENTS = "#incidents"


@dataclass
class MemoryIncident:
    """An in-memory :class:`bot.engine.actions.IncidentLink`."""

    channel: str | None = INCIDENTS
    thread: tuple[str, str] | None = None

    def slack_thread(self) -> tuple[str, str] | None:
        return self.thread

    def set_slack_thread(self, channel: str, ts: str) -> tuple[str, str]:
        if self.thread is None:
            self.thread = (channel, ts)
        return self.thread

    def notification_channel(self) -> str | None:
        return self.channel


def context(
    step: str = "announce", incident: MemoryIncident | None = None, secrets: set[str] | None = None
) -> ActionContext:
    return ActionContext(
        run_id="run-1",
        step_id=step,
        item_index=None,
        attempt=1,
        incident_id="INC-7",
        redactor=Redactor(),
        incident=incident,
        secrets=set(secrets or ()),
    )


def run(coro: Any) -> dict[str, Any]:
    return dict(asyncio.run(coro))


def failure(coro: Any) -> ActionError:
    with pytest.raises(ActionError) as info:
        asyncio.run(coro)
    return info.value


def post(text: str, **more: Any) -> SlackPost:
    return SlackPost.model_validate({"text": text, **more})


# --------------------------------------------------------------------------- slack.post


def test_first_post_becomes_the_root_then_steps_reply_in_its_thread(slack_env: FakeSlack) -> None:
    """No thread yet: the post opens one in irbot.yaml's channel and the incident remembers
    it; the next step replies in that thread. Both carry the step's key as metadata."""
    incident = MemoryIncident()
    root = run(slack_actions.post(post("Leak response started"), context("announce", incident)))
    channel = FakeSlack.channel_id(INCIDENTS)

    assert root["channel"] == channel
    assert incident.thread == (channel, root["ts"])
    [message] = slack_env.messages(INCIDENTS)
    assert (message.ts, message.text) == (root["ts"], "Leak response started")
    assert message.metadata == {
        "event_type": "irbot_step",
        "event_payload": {"key": "run-1:announce"},
    }

    reply = run(slack_actions.post(post("Rotated"), context("rotated", incident)))
    assert reply["channel"] == channel
    [threaded] = slack_env.replies(channel, root["ts"])
    assert (threaded.ts, threaded.thread_ts, threaded.text) == (reply["ts"], root["ts"], "Rotated")
    assert slack_env.calls("auth.test") == []
    [first, second] = slack_env.calls("chat.postMessage")
    assert "thread_ts" not in first.params
    assert second.params["thread_ts"] == root["ts"]
    assert first.token == BOT_TOKEN


def test_repeated_step_reuses_its_message(slack_env: FakeSlack) -> None:
    """A step run again (crash mid-call) finds its reply by metadata and posts nothing new,
    for a thread reply and for the root message itself."""
    incident = MemoryIncident()
    root = run(slack_actions.post(post("root"), context("announce", incident)))
    reply = run(slack_actions.post(post("reply"), context("step2", incident)))

    assert run(slack_actions.post(post("reply"), context("step2", incident))) == reply
    assert run(slack_actions.post(post("root"), context("announce", incident))) == root
    assert len(slack_env.calls("chat.postMessage")) == 2
    assert len(slack_env.replies(INCIDENTS, root["ts"])) == 1
    lookups = slack_env.calls("conversations.replies")
    assert lookups
    assert all(call.flag("include_all_metadata") for call in lookups)


def test_root_post_repeated_before_it_was_remembered(slack_env: FakeSlack) -> None:
    """Crash between posting the root and remembering it: with a channel ID configured, the
    repeat finds the root in the channel's history instead of opening a second thread."""
    channel = FakeSlack.channel_id("sec-incidents")
    first = MemoryIncident(channel=channel)
    root = run(slack_actions.post(post("root"), context("announce", first)))
    again = MemoryIncident(channel=channel)  # the thread was never stored
    assert run(slack_actions.post(post("root"), context("announce", again))) == root

    assert again.thread == (channel, root["ts"])
    assert len(slack_env.messages(channel)) == 1
    assert slack_env.calls("conversations.history")[-1].flag("include_all_metadata")


def test_root_post_repeated_before_it_was_remembered_channel_by_name(
    slack_env: FakeSlack,
) -> None:
    """The same crash with irbot.yaml naming the channel (#incidents): the name is looked
    up once (conversations.list), so the repeat can read the channel's history, finds the
    root and posts nothing new."""
    slack_env.add_channel(INCIDENTS)
    root = run(slack_actions.post(post("root"), context("announce", MemoryIncident())))
    again = MemoryIncident()  # the thread was never stored
    assert run(slack_actions.post(post("root"), context("announce", again))) == root

    assert again.thread == (FakeSlack.channel_id(INCIDENTS), root["ts"])
    assert len(slack_env.messages(INCIDENTS)) == 1
    assert [c.params["channel"] for c in slack_env.calls("chat.postMessage")] == [
        FakeSlack.channel_id(INCIDENTS)
    ]
    assert len(slack_env.calls("conversations.list")) == 1  # the second post knew the ID


def test_a_channel_name_slack_does_not_list_is_posted_to_as_given(slack_env: FakeSlack) -> None:
    """A name conversations.list does not know (or no channels:read scope): the post
    still goes out by name, and the log says how to make repeats safe."""
    slack_env.fail("conversations.list", "missing_scope", needed="channels:read")
    with structlog.testing.capture_logs() as logs:
        outputs = run(slack_actions.post(post("FYI", channel="#elsewhere"), context("fyi")))

    assert outputs["channel"] == FakeSlack.channel_id("#elsewhere")
    assert [c.params["channel"] for c in slack_env.calls("chat.postMessage")] == ["#elsewhere"]
    [warning] = [e for e in logs if e["event"] == "slack.channel_name_unresolved"]
    assert "channels:read" in warning["hint"]


def test_explicit_channel_gets_a_new_message(slack_env: FakeSlack) -> None:
    """channel given: a top-level message there; the incident's thread is untouched."""
    incident = MemoryIncident(thread=(FakeSlack.channel_id(INCIDENTS), "1.000001"))
    outputs = run(slack_actions.post(post("FYI", channel="#security"), context("fyi", incident)))

    assert outputs["channel"] == FakeSlack.channel_id("#security")
    assert [m.text for m in slack_env.messages("#security")] == ["FYI"]
    assert incident.thread == (FakeSlack.channel_id(INCIDENTS), "1.000001")


def test_thread_false_posts_top_level_in_the_incident_channel(slack_env: FakeSlack) -> None:
    """thread: false with an existing thread posts beside it, not in it."""
    incident = MemoryIncident()
    root = run(slack_actions.post(post("root"), context("announce", incident)))
    run(slack_actions.post(post("summary", thread=False), context("summary", incident)))

    assert [m.text for m in slack_env.messages(INCIDENTS)] == ["root", "summary"]
    assert slack_env.replies(INCIDENTS, root["ts"]) == []


def test_rate_limited_once_still_posts(slack_env: FakeSlack) -> None:
    """A 429 with Retry-After is waited out by the client: the fake saw two calls."""
    slack_env.rate_limit("chat.postMessage", times=1, retry_after=1)
    outputs = run(slack_actions.post(post("hi", channel="#ops"), context("hi")))

    assert len(slack_env.calls("chat.postMessage")) == 2
    assert [m.ts for m in slack_env.messages("#ops")] == [outputs["ts"]]


def test_ratelimited_answer_is_retryable(slack_env: FakeSlack) -> None:
    """Slack's ``ratelimited`` error reaches the engine as retryable."""
    slack_env.fail("chat.postMessage", "ratelimited")
    error = failure(slack_actions.post(post("hi", channel="#ops"), context()))

    assert error.retryable
    assert error.code == "throttled"


def test_channel_not_found_says_invite_the_bot(slack_env: FakeSlack) -> None:
    """channel_not_found is not retried and tells the user how to fix it."""
    slack_env.fail("chat.postMessage", "channel_not_found")
    error = failure(slack_actions.post(post("hi", channel="#secret-room"), context()))

    assert not error.retryable
    assert "/invite @irbot" in error.message
    assert "#secret-room" in error.message


def test_invalid_token_names_the_variable(slack_env: FakeSlack) -> None:
    """invalid_auth is a configuration error naming SLACK_BOT_TOKEN, never showing it."""
    slack_env.tokens = {"xoxb-the-right-one"}
    error = failure(slack_actions.post(post("hi", channel="#ops"), context()))

    assert (error.code, error.retryable) == ("config", False)
    assert "SLACK_BOT_TOKEN" in error.message
    assert BOT_TOKEN not in error.message


def test_no_channel_anywhere_points_at_irbot_yaml(slack_env: FakeSlack) -> None:
    """Neither an input channel, a thread nor a configured channel: a clear error."""
    for ctx in (context(incident=MemoryIncident(channel=None)), context(incident=None)):
        error = failure(slack_actions.post(post("hi"), ctx))
        assert "slack.channel" in error.message
        assert "irbot.yaml" in error.message
    assert slack_env.calls() == []


def test_not_configured_without_token(
    slack_env: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without SLACK_BOT_TOKEN the check names it and a call raises NotConfigured."""
    monkeypatch.delenv("SLACK_BOT_TOKEN")

    assert "SLACK_BOT_TOKEN" in (slack_actions.not_configured() or "")
    with pytest.raises(NotConfigured, match="SLACK_BOT_TOKEN"):
        asyncio.run(slack_actions.post(post("hi", channel="#ops"), context()))
    assert slack_env.calls() == []


def test_unreachable_slack_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connection refused (after the client's own retries) is a retryable network error."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_API_URL", f"http://127.0.0.1:{free_port()}/api/")
    error = failure(slack_actions.post(post("hi", channel="#ops"), context()))

    assert (error.code, error.retryable) == ("network", True)


def test_text_is_redacted_before_it_is_sent(slack_env: FakeSlack) -> None:
    """Known secret values and credential patterns never reach Slack."""
    ctx = context(secrets={"hunter2-db-password"})
    text = "pw hunter2-db-password and key xoxp-123456789012-abcdef"
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hunter2-db-password"}}]
    run(slack_actions.post(post(text, channel="#ops", blocks=blocks), ctx))

    [message] = slack_env.messages("#ops")
    assert message.text == f"pw {MASK} and key {MASK}"
    assert message.blocks == [{"type": "section", "text": {"type": "mrkdwn", "text": MASK}}]


# --------------------------------------------------------------------------- slack.update


def test_update_edits_the_message_in_the_incident_channel(slack_env: FakeSlack) -> None:
    """Without channel, update targets the incident's thread channel; twice is harmless."""
    incident = MemoryIncident()
    root = run(slack_actions.post(post("Rotating…"), context("announce", incident)))
    inputs = SlackUpdate.model_validate({"ts": root["ts"], "text": "Rotated ✅"})
    outputs = run(slack_actions.update(inputs, context("edit", incident)))
    assert run(slack_actions.update(inputs, context("edit", incident))) == outputs

    assert outputs == root
    [message] = slack_env.messages(INCIDENTS)
    assert (message.text, message.edited) == ("Rotated ✅", True)
    assert slack_env.calls("chat.update")[0].params["channel"] == root["channel"]


def test_update_of_unknown_message_is_not_found(slack_env: FakeSlack) -> None:
    """A ts that is not there: non-retryable, telling what to check."""
    inputs = SlackUpdate.model_validate(
        {"ts": "1.000009", "text": "x", "channel": FakeSlack.channel_id(INCIDENTS)}
    )
    error = failure(slack_actions.update(inputs, context()))

    assert (error.code, error.retryable) == ("not_found", False)
    assert "check ts and channel" in error.message


def test_slack_token_canary(slack_env: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    """SLACK_BOT_TOKEN appears in no output, error message or log line."""
    caplog.set_level(logging.DEBUG)
    incident = MemoryIncident()
    seen: list[str] = []
    with structlog.testing.capture_logs() as logs:
        seen.append(repr(run(slack_actions.post(post("a"), context("a", incident)))))
        seen.append(repr(run(slack_actions.post(post("b"), context("b", incident)))))
        slack_env.fail("chat.postMessage", "invalid_auth")
        seen.append(failure(slack_actions.post(post("c", channel="#x"), context("c"))).message)
        slack_env.fail("chat.update", "internal_error", status=500)
        inputs = SlackUpdate.model_validate({"ts": "1.1", "text": "d", "channel": "C0AAAAAAA"})
        seen.append(failure(slack_actions.update(inputs, context("d"))).message)
    assert logs
    assert BOT_TOKEN not in "\n".join([*seen, repr(logs), caplog.text])


# --------------------------------------------------------------------------- notify.email


@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage


@dataclass
class Mailbox:
    """An aiosmtpd handler: keeps what it accepts, refuses addresses in ``refuse``."""

    delivered: list[Delivered] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        self.delivered.append(Delivered(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


SMTP_PASSWORD = "smtp-password-canary-9f8e"


def _reject_login(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    return AuthResult(success=False, handled=False)


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Mailbox]:
    """A local SMTP server (no TLS) and the IRBOT_SMTP_* variables pointing at it."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_reject_login,
        auth_require_tls=False,
    )
    controller.start()
    for name in ("IRBOT_SMTP_USER", "IRBOT_SMTP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IRBOT_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("IRBOT_SMTP_PORT", str(port))
    monkeypatch.setenv("IRBOT_SMTP_FROM", "irbot@example.org")
    monkeypatch.setenv("IRBOT_SMTP_STARTTLS", "false")
    try:
        yield mailbox
    finally:
        controller.stop()


def mail(*to: str, subject: str = "Leak response: prod/db") -> Email:
    return Email.model_validate({"to": list(to), "subject": subject, "body": "Rotated.\n"})


def test_email_is_delivered_with_headers_and_deterministic_message_id(smtp: Mailbox) -> None:
    """The server gets the envelope and headers; the Message-ID comes from the step key."""
    ctx = context("notify")
    outputs = run(email_actions.email(mail("a@example.org", "b@example.org"), ctx))

    expected_id = f"<irbot.{ctx.client_token}@example.org>"
    assert outputs == {"message_id": expected_id, "recipients": ["a@example.org", "b@example.org"]}
    [delivered] = smtp.delivered
    assert delivered.mail_from == "irbot@example.org"
    assert delivered.rcpt_tos == ["a@example.org", "b@example.org"]
    message = delivered.message
    assert message["Subject"] == "Leak response: prod/db"
    assert message["From"] == "irbot@example.org"
    assert message["To"] == "a@example.org, b@example.org"
    assert message["Message-ID"] == expected_id
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"]
    assert message.get_content().splitlines() == ["Rotated."]


def test_repeat_sends_the_same_message_id(smtp: Mailbox) -> None:
    """A repeat of the step carries the same Message-ID (so receivers can spot it);
    another step gets another one."""
    run(email_actions.email(mail("a@example.org"), context("notify")))
    run(email_actions.email(mail("a@example.org"), context("notify")))
    run(email_actions.email(mail("a@example.org"), context("notify-again")))

    ids = [d.message["Message-ID"] for d in smtp.delivered]
    assert ids[0] == ids[1] != ids[2]


def test_refused_recipient_is_named_and_not_retried(smtp: Mailbox) -> None:
    """Every recipient refused: non-retryable, naming the address and the server's reply."""
    smtp.refuse.add("gone@example.org")
    error = failure(email_actions.email(mail("gone@example.org"), context()))

    assert (error.code, error.retryable) == ("recipients", False)
    assert "gone@example.org" in error.message
    assert "550" in error.message
    assert smtp.delivered == []


def test_partly_refused_recipients_fail_without_resending(smtp: Mailbox) -> None:
    """One address refused, one accepted: delivered once, and the error names both."""
    smtp.refuse.add("gone@example.org")
    error = failure(email_actions.email(mail("a@example.org", "gone@example.org"), context()))

    assert not error.retryable
    assert "sent to a@example.org" in error.message
    assert "gone@example.org" in error.message
    assert [d.rcpt_tos for d in smtp.delivered] == [["a@example.org"]]


def test_connection_refused_is_retryable(smtp: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody listening on the port: a retryable network error."""
    monkeypatch.setenv("IRBOT_SMTP_PORT", str(free_port()))
    error = failure(email_actions.email(mail("a@example.org"), context()))

    assert (error.code, error.retryable) == ("network", True)


def test_login_failure_names_the_variables_never_the_password(
    smtp: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rejected login is a config error naming the variables, without the password."""
    monkeypatch.setenv("IRBOT_SMTP_USER", "irbot")
    monkeypatch.setenv("IRBOT_SMTP_PASSWORD", SMTP_PASSWORD)
    ctx = context()
    with structlog.testing.capture_logs() as logs:
        error = failure(email_actions.email(mail("a@example.org"), ctx))

    assert (error.code, error.retryable) == ("config", False)
    assert "IRBOT_SMTP_PASSWORD" in error.message
    assert SMTP_PASSWORD not in error.message + repr(logs)
    assert SMTP_PASSWORD in ctx.secrets  # the engine masks it in anything returned
    assert smtp.delivered == []


def test_starttls_required_by_default(smtp: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """STARTTLS is on unless turned off: a server without it is a clear config error."""
    monkeypatch.delenv("IRBOT_SMTP_STARTTLS")
    error = failure(email_actions.email(mail("a@example.org"), context()))

    assert error.code == "config"
    assert "IRBOT_SMTP_STARTTLS" in error.message
    assert smtp.delivered == []


def test_bad_addresses_and_subjects_are_input_errors(smtp: Mailbox) -> None:
    """Malformed recipients or a multi-line subject fail before anything is sent."""
    assert failure(email_actions.email(mail("not-an-address"), context())).code == "input"
    bad_subject = mail("a@example.org", subject="hi\nBcc: evil@example.org")
    assert failure(email_actions.email(bad_subject, context())).code == "input"
    assert smtp.delivered == []


def test_email_not_configured_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check names what is missing; a direct call raises NotConfigured."""
    for name in ("IRBOT_SMTP_HOST", "IRBOT_SMTP_FROM", "IRBOT_SMTP_USER", "IRBOT_SMTP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert "IRBOT_SMTP_HOST" in (email_actions.not_configured() or "")
    monkeypatch.setenv("IRBOT_SMTP_HOST", "127.0.0.1")
    assert "IRBOT_SMTP_FROM" in (email_actions.not_configured() or "")
    monkeypatch.setenv("IRBOT_SMTP_FROM", "irbot@example.org")
    monkeypatch.setenv("IRBOT_SMTP_USER", "irbot")
    assert "IRBOT_SMTP_PASSWORD" in (email_actions.not_configured() or "")
    monkeypatch.setenv("IRBOT_SMTP_PORT", "smtp")
    monkeypatch.setenv("IRBOT_SMTP_PASSWORD", "p")
    assert "IRBOT_SMTP_PORT" in (email_actions.not_configured() or "")
    with pytest.raises(NotConfigured, match="IRBOT_SMTP_PORT"):
        asyncio.run(email_actions.email(mail("a@example.org"), context()))
