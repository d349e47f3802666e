"""The notifier following real runs: the engine (DBOS, tests/engine_support.Harness)
appends the timeline, the notifier runs as the server's background task, and the fake
Slack Web API records what reached Slack.

Groups (tests/engine_support.GROUPS): sre = U01 U02 U03, security = U04; U01 requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.config import load_config
from bot.core.timeline import StoredEvent
from bot.engine import runtime
from bot.slack.notifier import Notifier
from bot.store import TimelineStore
from tests.engine_support import Harness, config_text
from tests.fake_slack import (  # noqa: F401 - fixtures
    Call,
    FakeSlack,
    Message,
    fake_slack_fixture,
    slack_env_fixture,
)

T = TypeVar("T")
CHANNEL = "C0INCIDENTS"

DRILL = """
name: drill
version: 1
inputs:
  target: {type: string, default: db-1}
steps:
  - id: gate
    approval: {min: 2, from: [group:sre], ttl: 10m, message: "Rotate {{ inputs.target }}"}
  - id: rotate
    action: test.destructive
    with: {target: "{{ inputs.target }}"}
  - id: check
    manual: {instructions: "Check the dashboards & logs", assignee: group:sre, ttl: 10m}
"""

ANNOUNCED = """
name: announced
version: 1
steps:
  - id: announce
    action: slack.post
    with: {text: "Leak response started by <@{{ run.requester }}>"}
  - id: gate
    approval: {min: 2, from: [group:sre], ttl: 10m}
  - id: rotate
    action: test.destructive
    with: {target: x}
"""


@pytest.fixture
def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Harness:
    harness = Harness(tmp_path, database_url, monkeypatch)
    harness.add_playbook(DRILL)
    harness.add_playbook(ANNOUNCED)
    return harness


def make_notifier(h: Harness, store: TimelineStore, fake: FakeSlack, **kw: Any) -> Notifier:
    """A notifier as the server makes one, with test-sized windows."""
    options: dict[str, Any] = {
        "poll_seconds": 0.05,
        "coalesce_seconds": 0.2,
        "post_interval": 0.0,
        "backoff_seconds": 0.05,
        **kw,
    }
    client = AsyncWebClient(token="xoxb-1234-5678-notifiertest", base_url=fake.url)
    return Notifier(store, client, lambda: load_config(h.settings.config_path), **options)


def drive(h: Harness, scenario: Callable[[TimelineStore], Awaitable[None]]) -> None:
    """Start a worker in a fresh loop and play ``scenario`` with the notifier's own store
    (as the server has); always stop both."""

    async def main() -> None:
        store = runtime.open_store(h.settings)
        try:
            await h.start()
            try:
                await scenario(store)
            finally:
                h.stop()
        finally:
            store.close()

    asyncio.run(main())


@contextlib.asynccontextmanager
async def running(notifier: Notifier) -> AsyncIterator[Notifier]:
    """The notifier as the server's background task."""
    await notifier.tick()  # take the starting point before anything is submitted
    task = asyncio.create_task(notifier.run_forever())
    try:
        yield notifier
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(check: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def event_of(store: TimelineStore, run_id: str, kind: str) -> Callable[[], StoredEvent | None]:
    def check() -> StoredEvent | None:
        found = [e for e in store.events(run_id=run_id) if e.kind == kind]
        return found[-1] if found else None

    return check


def posted_for(fake: FakeSlack, channel: str, event: StoredEvent) -> Callable[[], Message | None]:
    """The message whose metadata names ``event`` (root or reply)."""

    def check() -> Message | None:
        for root in fake.messages(channel):
            for message in [root, *fake.replies(channel, root.ts)]:
                payload = (message.metadata or {}).get("event_payload") or {}
                if payload.get("event") == event.id:
                    return message
        return None

    return check


def text_of(message: Message) -> str:
    return json.dumps(message.blocks, ensure_ascii=False) + message.text


def buttons(message: Message) -> list[dict[str, Any]]:
    return [
        element
        for block in message.blocks or []
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def test_a_run_in_slack_from_root_to_finish(h: Harness, fake_slack: FakeSlack) -> None:
    """One root in the notification channel; the approval request with Approve/Reject
    (value: run, gate, full digest); "1 of 2: <@U02>" after a vote; the final state with
    no buttons after the grant; the task with Done/Failed, updated when done; the run's
    end as a thread line and in the root's status. Nothing is posted twice."""

    async def scenario(store: TimelineStore) -> None:
        async with running(make_notifier(h, store, fake_slack)):
            run_id = h.submit("drill", "U01")
            opened = await until(event_of(store, run_id, "incident.opened"), "incident")
            root = await until(posted_for(fake_slack, CHANNEL, opened), "root")
            gate = await until(event_of(store, run_id, "approval.requested"), "gate")
            request = await until(posted_for(fake_slack, CHANNEL, gate), "approval message")
            assert request.thread_ts == root.ts
            assert [b["text"]["text"] for b in buttons(request)] == ["Approve", "Reject"]
            value = {"run_id": run_id, "gate": "gate", "digest": gate.payload["digest"]}
            assert [json.loads(b["value"]) for b in buttons(request)] == [value, value]
            assert gate.payload["digest"][:12] in text_of(request)
            assert "Rotate db-1" in text_of(request)

            await h.vote(run_id, "U02")
            await until(lambda: "1 of 2: <@U02>" in text_of(request), "the tally")
            assert len(buttons(request)) == 2
            await h.vote(run_id, "U03")
            await until(lambda: not buttons(request), "the final approval state")
            assert "Approved" in text_of(request)
            assert "<@U02>, <@U03>" in text_of(request)

            task = await until(event_of(store, run_id, "manual.requested"), "task")
            message = await until(posted_for(fake_slack, CHANNEL, task), "task message")
            assert [b["text"]["text"] for b in buttons(message)] == ["Done", "Failed"]
            assert "Check the dashboards &amp; logs" in text_of(message)
            assert json.loads(buttons(message)[0]["value"]) == {"run_id": run_id, "step": "check"}
            await h.task(run_id, "U02")
            assert (await h.wait_for(run_id)).status == "succeeded"
            await until(lambda: "*Done* · <@U02>" in text_of(message), "task done")
            finished = await until(event_of(store, run_id, "run.finished"), "run end")
            line = await until(posted_for(fake_slack, CHANNEL, finished), "finished line")
            assert "finished" in line.text
            await until(lambda: "*Status:* succeeded" in text_of(root), "root status")

        [only_root] = fake_slack.messages(CHANNEL)
        replies = fake_slack.replies(CHANNEL, only_root.ts)
        assert len(replies) == 3  # approval, task, finished
        assert len(fake_slack.calls("chat.postMessage")) == 4
        incident = store.get_incident(opened.incident_id)
        assert (incident.slack_channel, incident.slack_thread_ts) == (CHANNEL, only_root.ts)

    drive(h, scenario)


def test_restart_reposts_nothing_and_finishes_pending_edits(
    h: Harness, fake_slack: FakeSlack
) -> None:
    """A notifier stopped while an edit waited in its coalescing window: the next one
    (same store, new instance) posts nothing again and makes that edit."""

    async def scenario(store: TimelineStore) -> None:
        first = make_notifier(h, store, fake_slack, coalesce_seconds=60)
        await first.tick()
        run_id = h.submit("drill", "U01")
        gate = await until(event_of(store, run_id, "approval.requested"), "gate")
        await first.tick()
        request = await until(posted_for(fake_slack, CHANNEL, gate), "approval message")
        await h.vote(run_id, "U02")
        await until(event_of(store, run_id, "approval.counted"), "vote")
        assert await first.tick() >= 1  # the edit waits in its window; then "the crash"
        assert fake_slack.calls("chat.update") == []  # still in the 60 s window
        posts = len(fake_slack.calls("chat.postMessage"))

        second = make_notifier(h, store, fake_slack, coalesce_seconds=0)
        await second.tick()
        await second.tick()
        assert len(fake_slack.calls("chat.postMessage")) == posts
        assert "1 of 2: <@U02>" in text_of(request)
        assert store.notifier_cursor("slack") == store.head_seq()

    drive(h, scenario)


def test_rate_limit_burst_during_a_run(h: Harness, fake_slack: FakeSlack) -> None:
    """429s with Retry-After on chat.postMessage delay the root and the approval request
    but lose nothing and duplicate nothing."""

    async def scenario(store: TimelineStore) -> None:
        async with running(make_notifier(h, store, fake_slack)):
            fake_slack.rate_limit("chat.postMessage", times=4, retry_after=1)
            run_id = h.submit("drill", "U01")
            gate = await until(event_of(store, run_id, "approval.requested"), "gate")
            await until(posted_for(fake_slack, CHANNEL, gate), "approval message", 60)
        [root] = fake_slack.messages(CHANNEL)
        assert len(fake_slack.replies(CHANNEL, root.ts)) == 1
        assert len(fake_slack.calls("chat.postMessage")) == 4 + 2

    drive(h, scenario)


def test_the_action_replies_in_the_notifiers_thread(h: Harness, slack_env: FakeSlack) -> None:
    """The notifier posts the root on incident.opened; the playbook's slack.post step then
    replies in that thread instead of making a second root."""

    async def main() -> None:
        store = runtime.open_store(h.settings)
        try:
            notifier = make_notifier(h, store, slack_env)
            await notifier.tick()
            run_id = h.submit("announced", "U01")
            await notifier.tick()
            [root] = slack_env.messages(CHANNEL)
            await h.start()
            try:
                await until(event_of(store, run_id, "approval.requested"), "gate")
                await notifier.tick()
                replies = slack_env.replies(CHANNEL, root.ts)
                assert replies[0].text == "Leak response started by <@U01>"
                assert "Approve" in text_of(replies[1])
                assert len(slack_env.messages(CHANNEL)) == 1
            finally:
                h.stop()
        finally:
            store.close()

    asyncio.run(main())


def test_incident_channel_mode(h: Harness, fake_slack: FakeSlack) -> None:
    """With incident_channels: a channel inc-<n>-<playbook> (suffixed when the name is
    taken), the requester invited, then each approver when they vote; the topic follows
    the state; the root lives there and the notification channel gets a pointer."""
    text = config_text(h.playbooks).replace(
        "slack: {channel: C0INCIDENTS}", "slack: {channel: C0INCIDENTS, incident_channels: true}"
    )
    (h.root / "irbot.yaml").write_text(text)
    created: list[str] = []
    invited: list[tuple[str, str]] = []
    topics: list[str] = []

    def create(call: Call) -> dict[str, Any]:
        name = str(call.params["name"])
        created.append(name)
        if len(created) == 1:
            return {"ok": False, "error": "name_taken"}
        return {"ok": True, "channel": {"id": "C0INC00042", "name": name}}

    def invite(call: Call) -> dict[str, Any]:
        invited.append((str(call.params["channel"]), str(call.params["users"])))
        return {"ok": True, "channel": {"id": call.params["channel"]}}

    def set_topic(call: Call) -> dict[str, Any]:
        topics.append(str(call.params["topic"]))
        return {"ok": True, "channel": {"id": call.params["channel"]}}

    fake_slack.handle("conversations.create", create)
    fake_slack.handle("conversations.invite", invite)
    fake_slack.handle("conversations.setTopic", set_topic)

    async def scenario(store: TimelineStore) -> None:
        async with running(make_notifier(h, store, fake_slack)):
            run_id = h.submit("drill", "U01")
            gate = await until(event_of(store, run_id, "approval.requested"), "gate")
            await until(posted_for(fake_slack, "C0INC00042", gate), "approval message")
            await until(lambda: any("waiting for approval" in t for t in topics), "topic")
            await h.vote(run_id, "U02")
            await until(lambda: ("C0INC00042", "U02") in invited, "approver invited")
            await until(lambda: any("1 of 2" in t for t in topics), "topic after the vote")
            incident = store.get_incident(gate.incident_id)
            assert incident.slack_channel == "C0INC00042"

    drive(h, scenario)
    assert created == ["inc-1-drill", "inc-1-drill-2"]
    assert invited[0] == ("C0INC00042", "U01")
    assert invited.count(("C0INC00042", "U02")) == 1
    [root] = fake_slack.messages("C0INC00042")
    assert "INC-1" in root.text
    [pointer] = fake_slack.messages(CHANNEL)
    assert "<#C0INC00042>" in text_of(pointer)
    assert all(len(t) <= 250 and t.startswith("INC-1 · ") for t in topics)


def test_an_append_in_this_process_wakes_the_notifier(h: Harness, fake_slack: FakeSlack) -> None:
    """Sharing the engine's store (as `irbot serve` does), the notifier posts as soon as
    an event is appended: with an hour between polls the root still arrives, and a
    notifier on another store object (another process's view) does not see it early."""

    async def scenario(_own: TimelineStore) -> None:
        shared = runtime.current().store
        async with running(make_notifier(h, shared, fake_slack, poll_seconds=3600)):
            await asyncio.sleep(1.0)  # let its first, empty pass go by: it now sleeps
            run_id = h.submit("drill", "U01")
            opened = await until(event_of(shared, run_id, "incident.opened"), "incident")
            await until(posted_for(fake_slack, CHANNEL, opened), "root", timeout=20)

    drive(h, scenario)


def test_a_notifier_on_another_store_waits_for_its_poll(h: Harness, fake_slack: FakeSlack) -> None:
    """The control for the test above: no wake-up crosses store objects, so with an hour
    between polls nothing is posted (the early post above is the wake-up's doing)."""

    async def scenario(own: TimelineStore) -> None:
        async with running(make_notifier(h, own, fake_slack, poll_seconds=3600)):
            await asyncio.sleep(1.0)  # let its first, empty pass go by: it now sleeps
            run_id = h.submit("drill", "U01")
            await until(event_of(own, run_id, "approval.requested"), "gate")
            await asyncio.sleep(1.0)
            assert fake_slack.calls("chat.postMessage") == []

    drive(h, scenario)
