"""The notifier's delivery rules, on a real store (SQLite and PostgreSQL) with events
appended as the engine appends them, against the fake Slack Web API.

Covered here: where a new notifier starts, coalescing and pacing, retries and giving up,
pausing on a bad token, finding a message posted just before a crash, redaction, and
sharing the root with the ``slack.post`` action. Full runs are in test_slack_notifier.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from structlog.testing import capture_logs

from bot.core.config import Config, parse_config
from bot.core.timeline import NewEvent, StoredEvent, event_id
from bot.slack.notifier import DeliveryError, Notifier, channel_name
from bot.store import Incident, TimelineStore
from tests.fake_slack import (  # noqa: F401 - fixtures
    BOT_USER_ID,
    Answer,
    Call,
    FakeSlack,
    Message,
    fake_slack_fixture,
    slack_env_fixture,
)

CHANNEL = "C0INCIDENTS"
TOKEN = "xoxb-4444-5555-notifiercanary"
CONFIG = parse_config(
    "slack: {channel: C0INCIDENTS}\ngroups: {sre: [U01, U02, U03]}\n", "irbot.yaml"
)
DIGEST = "f" * 64


@pytest.fixture
def store(database_url: str) -> Iterator[TimelineStore]:
    with TimelineStore(database_url) as opened:
        opened.migrate()
        yield opened


def notifier(
    store: TimelineStore,
    fake: FakeSlack,
    config: Config = CONFIG,
    *,
    token: str = TOKEN,
    **kw: Any,
) -> Notifier:
    """A notifier on the fake, with test-sized windows (no pacing unless asked)."""
    options: dict[str, Any] = {
        "poll_seconds": 0.05,
        "coalesce_seconds": 0.0,
        "post_interval": 0.0,
        "backoff_seconds": 0.01,
        **kw,
    }
    client = AsyncWebClient(token=token, base_url=fake.url)
    return Notifier(store, client, lambda: config, **options)


class Timeline:
    """Appends events to the store the way the engine does (one incident, one run)."""

    def __init__(self, store: TimelineStore, number: int = 1) -> None:
        self.store = store
        self.run_id = f"run-{number:04d}"
        self.at = datetime.now(UTC)
        self.incident: Incident = store.open_incident(
            key=self.run_id, title=f"drill: n={number}", playbook="drill", at=self.at
        )
        self.count = 0

    def add(
        self,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        step: str | None = None,
        actor: str = "irbot",
        run_id: str | None = None,
    ) -> StoredEvent:
        self.count += 1
        return self.store.append(
            NewEvent(
                id=event_id(self.run_id, kind, self.count),
                incident_id=self.incident.id,
                kind=kind,
                actor=actor,
                at=self.at + timedelta(seconds=self.count),
                run_id=run_id or self.run_id,
                step_id=step,
                payload=payload or {},
            )
        )

    def opened(self) -> StoredEvent:
        return self.add("incident.opened", {"title": self.incident.title}, actor="user:U01")

    def gate(self) -> StoredEvent:
        payload = {"gate": "gate", "digest": DIGEST, "min": 2, "from": ["group:sre"]}
        return self.add("approval.requested", {**payload, "covers": ["rotate"]}, step="gate")

    def vote(self, kind: str, approvers: list[str]) -> StoredEvent:
        payload = {"gate": "gate", "user": approvers[-1], "approvers": approvers}
        return self.add(kind, {**payload, "summary": f"{len(approvers)} of 2"}, step="gate")

    def note(self, text: str) -> StoredEvent:
        return self.add("note", {"text": text}, actor="user:U02", run_id="-")


def roots(fake: FakeSlack) -> list[Message]:
    return fake.messages(CHANNEL)


def thread(fake: FakeSlack) -> list[Message]:
    [root] = roots(fake)
    return fake.replies(CHANNEL, root.ts)


def marker(message: Message) -> str | None:
    metadata = message.metadata or {}
    assert metadata.get("event_type") == "irbot_notice"
    event = (metadata.get("event_payload") or {}).get("event")
    return str(event) if event else None


def text_of(message: Message) -> str:
    return json.dumps(message.blocks, ensure_ascii=False) + message.text


async def started(n: Notifier) -> Notifier:
    """A notifier that has taken its starting point (the end of the timeline)."""
    await n.tick()
    return n


# --------------------------------------------------------------------------- starting point


def test_first_start_begins_at_the_end_of_the_timeline(
    store: TimelineStore, fake_slack: FakeSlack
) -> None:
    """History from before the notifier's first start is not replayed into Slack; what
    comes after is, and the cursor is remembered in the store."""
    old = Timeline(store, 1)
    old.opened()
    old.note("old news")

    async def scenario() -> None:
        n = notifier(store, fake_slack)
        assert await n.tick() == 0
        assert fake_slack.calls() == []
        assert store.notifier_cursor("slack") == store.head_seq()
        new = Timeline(store, 2)
        new.opened()
        assert await n.tick() == 1

    asyncio.run(scenario())
    [root] = roots(fake_slack)
    assert "INC-2" in root.text
    assert store.notifier_cursor("slack") == store.head_seq()


# --------------------------------------------------------------------------- coalescing, pacing


def test_edits_within_the_window_become_one_update(
    store: TimelineStore, fake_slack: FakeSlack
) -> None:
    """A vote and the grant right after it are sent as one chat.update of the approval
    message (and one of the root), once the window has passed."""

    async def scenario() -> None:
        n = await started(notifier(store, fake_slack, coalesce_seconds=0.4))
        t = Timeline(store)
        t.opened()
        t.gate()
        await n.tick()
        t.vote("approval.counted", ["U02"])
        t.vote("approval.granted", ["U02", "U03"])
        await n.tick()
        assert fake_slack.calls("chat.update") == []
        assert store.notifier_cursor("slack") < store.head_seq()  # held back by the edits
        await asyncio.sleep(0.45)
        await n.tick()

    asyncio.run(scenario())
    updates = fake_slack.calls("chat.update")
    [root] = roots(fake_slack)
    [approval] = thread(fake_slack)
    assert sorted(c.params["ts"] for c in updates) == sorted([root.ts, approval.ts])
    assert "Approved" in text_of(approval)
    assert "irbot_approve" not in text_of(approval)
    assert store.notifier_cursor("slack") == store.head_seq()


def test_posts_are_paced_per_channel(store: TimelineStore, fake_slack: FakeSlack) -> None:
    """Posts to one channel keep post_interval apart (Slack allows about one a second)."""

    async def scenario() -> float:
        n = await started(notifier(store, fake_slack, post_interval=0.25))
        t = Timeline(store)
        t.opened()
        for number in range(3):
            t.note(f"note {number}")
        began = time.monotonic()
        await n.tick()
        return time.monotonic() - began

    elapsed = asyncio.run(scenario())
    assert len(fake_slack.calls("chat.postMessage")) == 4
    assert elapsed >= 0.7


# --------------------------------------------------------------------------- failures


def test_permanent_error_skips_one_message_not_the_rest(
    store: TimelineStore, fake_slack: FakeSlack
) -> None:
    """A message Slack refuses for good is logged (without the token) and skipped; the
    next one is posted and the cursor moves on."""

    async def scenario() -> None:
        n = await started(notifier(store, fake_slack))
        t = Timeline(store)
        t.opened()
        await n.tick()
        fake_slack.fail("chat.postMessage", "invalid_blocks")
        t.note("first")
        t.note("second")
        with capture_logs() as logs:
            await n.tick()
        skipped = [e for e in logs if e["event"] == "slack.notice_skipped"]
        assert len(skipped) == 1
        assert "invalid_blocks" in skipped[0]["error"]
        assert TOKEN not in repr(logs)

    asyncio.run(scenario())
    [line] = thread(fake_slack)
    assert "second" in line.text
    assert store.notifier_cursor("slack") == store.head_seq()


def test_transient_errors_are_retried_then_given_up(
    store: TimelineStore, fake_slack: FakeSlack
) -> None:
    """internal_error is retried a few times (looking for the message before each retry,
    since it may have gone through), then the message is skipped, not retried forever."""

    async def scenario() -> None:
        n = await started(notifier(store, fake_slack, attempts=3))
        t = Timeline(store)
        t.opened()
        await n.tick()
        fake_slack.fail("chat.postMessage", "internal_error", times=3)
        t.note("lost")
        t.note("kept")
        await n.tick()

    asyncio.run(scenario())
    posts = fake_slack.calls("chat.postMessage")
    assert len(posts) == 1 + 3 + 1
    assert len(fake_slack.calls("conversations.replies")) == 2  # before retries 2 and 3
    assert [m.text for m in thread(fake_slack)] == [":memo: Note from <@U02>: kept"]


def test_rate_limit_burst_is_ridden_out(store: TimelineStore, fake_slack: FakeSlack) -> None:
    """A burst of 429s beyond the client's own retries is waited out (Retry-After) and
    the message is posted once."""

    async def scenario() -> None:
        n = await started(notifier(store, fake_slack))
        t = Timeline(store)
        fake_slack.rate_limit("chat.postMessage", times=3, retry_after=1)
        t.opened()
        await n.tick()

    asyncio.run(scenario())
    assert len(roots(fake_slack)) == 1
    assert len(fake_slack.calls("chat.postMessage")) == 4


def test_bad_token_pauses_without_losing_events(
    store: TimelineStore, fake_slack: FakeSlack
) -> None:
    """invalid_auth stops the tick without moving the cursor (skipping would lose every
    message); once the token is fixed, the same events are delivered."""
    fake_slack.tokens = {TOKEN}

    async def scenario() -> None:
        n = await started(notifier(store, fake_slack, token="xoxb-0000-wrong-token1"))
        t = Timeline(store)
        t.opened()
        before = store.notifier_cursor("slack")
        with pytest.raises(DeliveryError) as caught:
            await n.tick()
        assert caught.value.fatal
        assert "xoxb-0000" not in caught.value.message
        assert store.notifier_cursor("slack") == before
        n.client.token = TOKEN
        assert await n.tick() == 1

    asyncio.run(scenario())
    assert len(roots(fake_slack)) == 1


def test_run_forever_survives_errors_and_keeps_going(
    store: TimelineStore, fake_slack: FakeSlack
) -> None:
    """The background loop logs a paused tick and carries on when Slack recovers."""
    fake_slack.tokens = {TOKEN}

    async def scenario() -> None:
        n = await started(notifier(store, fake_slack, token="xoxb-0000-wrong-token1"))
        Timeline(store).opened()
        with capture_logs() as logs:
            task = asyncio.create_task(n.run_forever())
            await asyncio.sleep(0.3)
            n.client.token = TOKEN
            for _ in range(100):
                if roots(fake_slack):
                    break
                await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert any(e["event"] == "slack.notifier_paused" for e in logs)

    asyncio.run(scenario())
    assert len(roots(fake_slack)) == 1


def test_root_that_failed_is_posted_with_the_next_event(
    store: TimelineStore, fake_slack: FakeSlack
) -> None:
    """If the root could not be posted at incident.opened, the incident's next event posts
    it first, so the approval request still lands in a thread."""

    async def scenario() -> None:
        n = await started(notifier(store, fake_slack))
        t = Timeline(store)
        fake_slack.fail("chat.postMessage", "msg_too_long")
        t.opened()
        await n.tick()
        assert roots(fake_slack) == []
        t.gate()
        await n.tick()

    asyncio.run(scenario())
    [approval] = thread(fake_slack)
    assert "Approve" in text_of(approval)


def test_breakglass_flags_the_root_and_the_request(
    store: TimelineStore, fake_slack: FakeSlack
) -> None:
    """A break-glass pass turns the approval message loud and marks the root."""

    async def scenario() -> None:
        n = await started(notifier(store, fake_slack))
        t = Timeline(store)
        t.opened()
        t.gate()
        await n.tick()
        t.vote("approval.breakglass", ["U09"])
        await n.tick()

    asyncio.run(scenario())
    [root] = roots(fake_slack)
    [approval] = thread(fake_slack)
    assert "BREAK-GLASS" in text_of(approval)
    assert "irbot_approve" not in text_of(approval)
    assert "BREAK-GLASS was used" in text_of(root)
    assert "running: BREAK-GLASS at gate by U09" in text_of(root)


# --------------------------------------------------------------------------- exactly once


def test_message_posted_just_before_a_crash_is_found_not_reposted(
    store: TimelineStore, fake_slack: FakeSlack
) -> None:
    """If the process died after chat.postMessage but before the ts was stored, the next
    notifier finds the message by its metadata and does not post it again."""
    t = Timeline(store)

    async def first() -> StoredEvent:
        n = await started(notifier(store, fake_slack))
        t.opened()
        gate = t.gate()
        await n.tick()
        return gate

    gate = asyncio.run(first())
    [approval] = thread(fake_slack)
    assert marker(approval) == gate.id
    key = f"approval:{gate.id}"
    # The crash: the ts never reached the store, the cursor is before the event.
    store.set_slack_message(t.incident.id, key, CHANNEL, None)
    store.set_notifier_cursor("slack", gate.seq - 1)
    posts = len(fake_slack.calls("chat.postMessage"))

    async def second() -> None:
        assert await notifier(store, fake_slack).tick() == 1

    asyncio.run(second())
    assert len(fake_slack.calls("chat.postMessage")) == posts
    lookup = fake_slack.calls("conversations.replies")[-1]
    assert lookup.flag("include_all_metadata")
    ref = store.slack_message(t.incident.id, key)
    assert ref is not None
    assert ref.ts == approval.ts


def test_a_root_in_a_channel_given_by_name_is_found_again_after_a_lost_answer(
    store: TimelineStore, fake_slack: FakeSlack
) -> None:
    """irbot.yaml names the channel (#incidents). The name is looked up once, so when
    the root's chat.postMessage went through but its answer was lost (a 500 after the
    post), the retry finds the root by its metadata instead of posting a second one."""
    fake_slack.add_channel("incidents")
    named = parse_config("slack: {channel: '#incidents'}\ngroups: {sre: [U01]}\n", "irbot.yaml")
    answers: list[Answer] = []

    def post_then_lose_the_answer(call: Call) -> Answer:
        answers.append(post(call))
        if len(answers) == 1:
            return {"ok": False, "error": "internal_error"}
        return answers[-1]

    post = fake_slack.handle("chat.postMessage", post_then_lose_the_answer)
    t = Timeline(store)

    async def scenario() -> None:
        n = await started(notifier(store, fake_slack, named))
        t.opened()
        await n.tick()

    asyncio.run(scenario())
    [root] = fake_slack.messages("#incidents")
    assert len(answers) == 1, "posted again"
    channel = FakeSlack.channel_id("#incidents")
    assert store.get_incident(t.incident.id).slack_thread_ts == root.ts
    assert store.get_incident(t.incident.id).slack_channel == channel
    assert [c.params["channel"] for c in fake_slack.calls("conversations.history")] == [channel]
    assert len(fake_slack.calls("conversations.list")) == 1


@pytest.mark.parametrize(
    ("creator", "age", "members", "expected"),
    [
        (BOT_USER_ID, 0, 1, "inc-1-drill"),  # irbot's, made just now: the one the crash lost
        (BOT_USER_ID, 86400, 1, "inc-1-drill-2"),  # from before the numbers restarted
        (BOT_USER_ID, 0, 2, "inc-1-drill-2"),  # in use (another deployment's, say)
        ("U0SOMEONE", 0, 1, "inc-1-drill-2"),  # a person's
    ],
)
def test_incident_channel_made_just_before_a_crash_is_taken_up(
    store: TimelineStore,
    fake_slack: FakeSlack,
    creator: str,
    age: int,
    members: int,
    expected: str,
) -> None:
    """The channel was created but the process died before recording it: the next
    notifier meets name_taken, sees the channel is irbot's and younger than the incident,
    and moves in instead of making inc-1-drill-2. Anyone else's channel, an older one of
    irbot's, or one with people in it, is left alone."""
    config = parse_config(
        "slack: {channel: C0INCIDENTS, incident_channels: true}\ngroups: {sre: [U01]}\n",
        "irbot.yaml",
    )
    t = Timeline(store)
    fake_slack.add_channel(
        "inc-1-drill", creator=creator, created=t.at.timestamp() - age, members=members
    )

    async def scenario() -> None:
        n = await started(notifier(store, fake_slack, config))
        t.opened()
        await n.tick()

    asyncio.run(scenario())
    made = [str(c.params["name"]) for c in fake_slack.calls("conversations.create")]
    assert made == ["inc-1-drill", *([expected] if expected != "inc-1-drill" else [])]
    channel = FakeSlack.channel_id(expected)
    assert store.get_incident(t.incident.id).slack_channel == channel
    [root] = fake_slack.messages(channel)
    assert "INC-" in root.text


def test_text_is_redacted_before_posting(store: TimelineStore, fake_slack: FakeSlack) -> None:
    """Payloads are redacted by the engine; a token that slipped through is masked anyway."""

    async def scenario() -> None:
        n = await started(notifier(store, fake_slack))
        t = Timeline(store)
        t.opened()
        t.note("the key was xoxb-9999-8888-leakedcanary")
        await n.tick()

    asyncio.run(scenario())
    assert "leakedcanary" not in json.dumps([c.params for c in fake_slack.calls()])
    [line] = thread(fake_slack)
    assert "[REDACTED]" in line.text


# --------------------------------------------------------------------------- the root


def test_root_made_by_the_action_is_used_not_edited(
    store: TimelineStore, fake_slack: FakeSlack
) -> None:
    """When slack.post made the root first, the notifier replies in that thread and does
    not overwrite the playbook's text with its status line."""

    async def scenario() -> None:
        n = await started(notifier(store, fake_slack))
        t = Timeline(store)
        client = AsyncWebClient(token=TOKEN, base_url=fake_slack.url)
        posted = await client.chat_postMessage(channel=CHANNEL, text="Leak response started")
        store.set_incident_slack(t.incident.id, CHANNEL, str(posted["ts"]))
        t.opened()
        t.gate()
        await n.tick()

    asyncio.run(scenario())
    [root] = roots(fake_slack)
    assert root.text == "Leak response started"
    assert not root.edited
    [approval] = fake_slack.replies(CHANNEL, root.ts)
    assert "Approve" in text_of(approval)
    assert fake_slack.calls("chat.update") == []


class RacingStore(TimelineStore):
    """The slack.post action sets the incident's thread just before the notifier claims it."""

    action_ts = ""

    def claim_incident_slack(self, incident_id: str, channel: str, thread_ts: str) -> Incident:
        self.set_incident_slack(incident_id, channel, self.action_ts)
        return super().claim_incident_slack(incident_id, channel, thread_ts)


def test_losing_the_race_for_the_root_deletes_the_duplicate(
    database_url: str, fake_slack: FakeSlack
) -> None:
    """If the action's root lands between the notifier's post and its claim, the
    notifier deletes its own root and follows the action's thread."""
    deleted: list[Call] = []

    def delete(call: Call) -> dict[str, Any]:
        deleted.append(call)
        return {"ok": True, "channel": call.params["channel"], "ts": call.params["ts"]}

    fake_slack.handle("chat.delete", delete)
    with RacingStore(database_url) as racing:
        racing.migrate()

        async def scenario() -> str:
            n = await started(notifier(racing, fake_slack))
            client = AsyncWebClient(token=TOKEN, base_url=fake_slack.url)
            posted = await client.chat_postMessage(channel=CHANNEL, text="from the action")
            racing.action_ts = str(posted["ts"])
            t = Timeline(racing)
            t.opened()
            t.gate()
            await n.tick()
            return t.incident.id

        incident_id = asyncio.run(scenario())
        incident = racing.get_incident(incident_id)
    action_root, ours = roots(fake_slack)
    assert [c.params["ts"] for c in deleted] == [ours.ts]
    assert incident.slack_thread_ts == action_root.ts
    [approval] = fake_slack.replies(CHANNEL, action_root.ts)
    assert "Approve" in text_of(approval)


# --------------------------------------------------------------------------- pure helpers, store


def test_channel_names_follow_slack_rules() -> None:
    """Lowercase, only letters/digits/-/_, at most 80 characters, suffixed when taken."""
    assert channel_name(42, "leak-response") == "inc-42-leak-response"
    assert channel_name(42, "leak-response", 2) == "inc-42-leak-response-2"
    assert channel_name(3, None) == "inc-3"
    long = channel_name(7, "x" * 200, 3)
    assert len(long) == 80
    assert long.endswith("-3")
    assert channel_name(1, "Odd Name!") == "inc-1-odd-name"


def test_store_remembers_cursor_messages_and_first_thread_claim(store: TimelineStore) -> None:
    """The notifier's tables round-trip; the first thread claim wins; events_after pages."""
    t = Timeline(store)
    events = [t.opened(), t.note("a"), t.note("b")]
    assert store.notifier_cursor("slack") is None
    store.set_notifier_cursor("slack", 2)
    store.set_notifier_cursor("slack", 3)
    assert store.notifier_cursor("slack") == 3
    assert store.head_seq() == events[-1].seq
    assert [e.id for e in store.events_after(events[0].seq, 1)] == [events[1].id]
    assert [e.id for e in store.events_after(0, 10)] == [e.id for e in events]
    assert store.slack_message(t.incident.id, "root") is None
    store.set_slack_message(t.incident.id, "root", CHANNEL, None)
    ref = store.set_slack_message(t.incident.id, "root", CHANNEL, "1.000001")
    assert store.slack_message(t.incident.id, "root") == ref
    first = store.claim_incident_slack(t.incident.id, CHANNEL, "1.000001")
    second = store.claim_incident_slack(t.incident.id, "C0OTHER01", "2.000002")
    assert (first.slack_channel, first.slack_thread_ts) == (CHANNEL, "1.000001")
    assert (second.slack_channel, second.slack_thread_ts) == (CHANNEL, "1.000001")


def test_migration_is_idempotent(store: TimelineStore) -> None:
    """Migrating again (another process starting) changes nothing."""
    store.set_notifier_cursor("slack", 0)
    store.migrate()
    assert store.notifier_cursor("slack") == 0
