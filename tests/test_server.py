"""`irbot serve`'s app as a real server: uvicorn on a free port, its lifespan running the
engine worker, the Slack notifier and the metrics; Slack requests signed as Slack signs
them; outgoing calls answered by the fake Slack Web API.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from bot.core.errors import ConfigError
from bot.settings import load_settings
from bot.slack import blocks
from bot.store import TimelineStore
from bot.web.app import create_app
from bot.web.settings import load_server_settings
from tests.engine_support import Harness
from tests.fake_slack import BOT_TOKEN, FakeSlack, fake_slack_fixture  # noqa: F401
from tests.serving import free_port, serve_app
from tests.test_slack_app_support import GATED, SIGNING_SECRET, SlackDoor, teach

ALERTMANAGER_TOKEN = "am-token-for-tests"


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_slack: FakeSlack) -> Harness:
    """A gated playbook, irbot.yaml, and the server's variables pointing at the fakes."""
    h = Harness(tmp_path / "irbot", None, monkeypatch)
    h.add_playbook(GATED)
    teach(fake_slack)
    for name, value in {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.url,
        "ALERTMANAGER_TOKEN": ALERTMANAGER_TOKEN,
    }.items():
        monkeypatch.setenv(name, value)
    return h


@pytest.fixture
def server(installation: Harness) -> Iterator[str]:
    """The app under uvicorn in a thread of its own (its own event loop, as in
    production); yields the base URL once /readyz says ready."""
    app = create_app(load_settings(), load_server_settings())
    with serve_app(app) as url:
        yield url


@pytest.fixture
def old_delivery(installation: Harness) -> str:
    """A PagerDuty delivery id recorded 40 days ago, before the server starts."""
    store = TimelineStore(load_settings().store_url())
    try:
        store.migrate()
        when = datetime.now(UTC) - timedelta(days=40)
        assert store.record_delivery("pagerduty", ["event:OLD"], when)
        assert store.record_delivery("pagerduty", ["event:RECENT"], datetime.now(UTC))
    finally:
        store.close()
    return "event:OLD"


@pytest.fixture
def lost_start(installation: Harness) -> str:
    """A webhook start answered two minutes ago whose process died before starting it."""
    store = TimelineStore(load_settings().store_url())
    try:
        store.migrate()
        request = {
            "source": "generic/scanner",
            "playbook": "gated",
            "inputs": {"target": "db-lost"},
            "route": "test",
            "requester": "webhook:generic/scanner",
            "trigger": {"source": "generic"},
            "claim": None,
        }
        store.add_pending_start("gen-lost-1", request, datetime.now(UTC) - timedelta(minutes=2))
    finally:
        store.close()
    return "run-gen-lost-1"


def test_the_server_starts_what_a_crash_left_in_the_outbox(
    installation: Harness, lost_start: str, server: str
) -> None:
    """At start the server makes the starts left in the webhook outbox."""
    store = TimelineStore(load_settings().store_url())
    try:

        def started() -> bool:
            runs = {r.id: r for r in store.list_runs()}
            return lost_start in runs and not store.pending_starts(datetime.now(UTC))

        wait_until_sync(started)
        run = store.get_run(lost_start)
        assert (run.playbook, run.inputs["target"]) == ("gated", "db-lost")
    finally:
        store.close()


def test_the_server_forgets_deliveries_older_than_30_days(
    installation: Harness, old_delivery: str, server: str
) -> None:
    """At start the server prunes delivery ids past the retention; recent ones stay."""
    store = TimelineStore(load_settings().store_url())
    try:
        wait_until_sync(
            lambda: store.record_delivery("pagerduty", [old_delivery], datetime.now(UTC))
        )
        assert store.record_delivery("pagerduty", ["event:RECENT"], datetime.now(UTC)) is False
    finally:
        store.close()


def wait_until_sync(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_missing_settings_stop_the_server_naming_the_variable(
    installation: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No signing secret in HTTP mode: a ConfigError naming SLACK_SIGNING_SECRET before
    anything listens; a malformed token is named too; `irbot serve` exits non-zero."""
    monkeypatch.delenv("SLACK_SIGNING_SECRET")
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        create_app(load_settings(), load_server_settings())
    monkeypatch.setenv("SLACK_BOT_TOKEN", "not-a-token")
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN"):
        load_server_settings()
    done = installation.irbot("serve", "--port", str(free_port()))
    assert done.returncode != 0
    assert "SLACK_BOT_TOKEN" in done.stderr
    assert "not-a-token" not in done.stderr + done.stdout


def test_slash_command_to_approved_run_through_the_server(
    server: str, fake_slack: FakeSlack, installation: Harness
) -> None:
    """`/incident run` is acked with the run id; the notifier posts the approval request
    with Approve/Reject; two others click Approve; the message shows "1 of 2" in between;
    the run succeeds; /metrics counts it all."""

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=server, timeout=30) as http:
            door = SlackDoor(http, fake_slack)
            ack = await door.command("run gated target=db-7", "U01")
            assert ack.status_code == 200
            run_id = re.search(r"run-[0-9a-f]+", ack.text)
            assert run_id is not None, ack.text
            request = await wait_for_call(fake_slack, "chat.postMessage", "irbot_approve")
            values = button_values(request.params)
            assert set(values) == {blocks.APPROVE_ACTION, blocks.REJECT_ACTION}
            approve = values[blocks.APPROVE_ACTION]
            assert json.loads(approve)["run_id"] == run_id.group()
            assert (await door.click(blocks.APPROVE_ACTION, approve, "U02")).status_code == 200
            await wait_for_call(fake_slack, "chat.update", "1 of 2")
            assert (await door.click(blocks.APPROVE_ACTION, approve, "U03")).status_code == 200
            await wait_until(lambda: installation_status(installation, run_id.group()))
            metrics = (await http.get("/metrics")).text
            assert 'irbot_runs{state="succeeded"} 1.0' in metrics
            assert 'irbot_ack_seconds_count{route="slack"}' in metrics

            async def granted_counted() -> bool:
                return 'irbot_approvals_total{outcome="granted"} 1.0' in await metrics_now(http)

            await wait_until(granted_counted)

    asyncio.run(scenario())


def test_health_readiness_webhook_refusal_and_metrics(server: str) -> None:
    """/healthz and /readyz answer; a webhook with a wrong bearer is 401 and counted."""
    assert httpx.get(f"{server}/healthz").json() == {"ok": True}
    assert httpx.get(f"{server}/readyz").json() == {"ready": True}
    refused = httpx.post(
        f"{server}/webhooks/alertmanager",
        headers={"Authorization": "Bearer wrong"},
        json={"version": "4", "status": "firing", "alerts": []},
    )
    assert refused.status_code == 401
    metrics = httpx.get(f"{server}/metrics").text
    assert 'irbot_webhook_deliveries_total{result="unauthorized",source="alertmanager"} 1.0' in (
        metrics
    )
    assert ALERTMANAGER_TOKEN not in metrics


# --------------------------------------------------------------------------- helpers


async def wait_for_call(fake: FakeSlack, method: str, needle: str, timeout: float = 30) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for call in fake.calls(method):
            if needle in json.dumps(call.params, default=str):
                return call
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {method} call with {needle!r}: {[c.method for c in fake.calls()]}")


def button_values(params: dict[str, object]) -> dict[str, str]:
    raw = params.get("blocks")
    found: dict[str, str] = {}
    for block in json.loads(raw) if isinstance(raw, str) else raw or []:  # type: ignore[union-attr]
        for element in block.get("elements", []):
            if element.get("type") == "button":
                found[element["action_id"]] = element["value"]
    return found


async def wait_until(check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("condition not reached")


def installation_status(h: Harness, run_id: str) -> bool:
    from bot.engine.runtime import open_store

    store = open_store(h.settings)
    try:
        return store.get_run(run_id).status == "succeeded"
    finally:
        store.close()


async def metrics_now(http: httpx.AsyncClient) -> str:
    return (await http.get("/metrics")).text
