"""The Slack app end to end: signed requests in, the real engine deciding, the fake Slack
Web API recording what irbot says back.

Groups (tests/engine_support.GROUPS): sre = U01 U02 U03, security = U04; U05 is in no
group. Buttons are clicked with the values the blocks module renders on the messages
the notifier posts (``blocks.approval_request`` / ``blocks.task_request``).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from pathlib import Path
from typing import Any

import boto3
import pytest

from bot.core.refs import SecretRef
from bot.core.timeline import StoredEvent
from bot.service import Service
from bot.slack import blocks, modals
from tests.engine_support import Harness
from tests.fake_slack import FakeSlack, fake_slack_fixture  # noqa: F401
from tests.test_slack_app_support import (
    CHANNEL,
    SlackDoor,
    ack_text,
    buttons,
    everything_sent,
    harness,
    next_call,
    open_door,
    run_with_engine,
    teach,
    until,
)

RUN_ID = re.compile(r"`(run-[0-9a-f]{12})`")


@pytest.fixture
def fake(fake_slack: FakeSlack) -> FakeSlack:
    return teach(fake_slack)


@pytest.fixture
def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Harness:
    return harness(tmp_path, database_url, monkeypatch)


@pytest.fixture
def h_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    return harness(tmp_path, f"sqlite:///{tmp_path / 'irbot.sqlite'}", monkeypatch)


async def opened(h: Harness, run_id: str, kind: str) -> StoredEvent:
    """The run's first event of ``kind`` once it is on the timeline."""
    found = await until(
        lambda: [e for e in h.store.events(run_id=run_id) if e.kind == kind], what=kind
    )
    return found[0]  # type: ignore[no-any-return]


async def click_and_hear(door: SlackDoor, action: str, value: str, user: str) -> Any:
    """Click, check the ack is immediate and empty, return the ephemeral answer."""
    seen = len(door.fake.calls("chat.postEphemeral"))
    assert ack_text(await door.click(action, value, user)) == ""
    return await next_call(door.fake, "chat.postEphemeral", seen)


def test_run_then_approvals_by_two_others_finish_the_run(h: Harness, fake: FakeSlack) -> None:
    """`/incident run` acks with the run id; the requester, an outsider, a repeat voter and
    a stale plan are each refused to the clicker alone with the engine's reason; two other
    sre members approve and the run carries out its destructive step and succeeds."""

    async def scenario(service: Service) -> None:
        async with open_door(service, fake, ack_budget=2.5) as door:
            text = ack_text(await door.command("run gated target=db-9", "U01"))
            assert text.startswith(":rocket: Started *gated*"), text
            match = RUN_ID.search(text)
            assert match is not None
            run_id = match.group(1)
            assert h.store.get_run(run_id).requester == "U01"

            requested = await opened(h, run_id, "approval.requested")
            value = buttons(blocks.approval_request(requested))[blocks.APPROVE_ACTION]
            forged = json.dumps({**json.loads(value), "user": "U02"})
            stale = json.dumps({**json.loads(value), "digest": "0" * 64})

            answers = []
            for user, clicked, says in [
                ("U01", value, "U01 requested this run and cannot approve it"),
                ("U01", forged, "U01 requested this run"),  # a value cannot lend identity
                ("U05", value, "U05 is not allowed to vote here"),
                ("U02", value, "Approval counted (1 of 2: U02)"),
                ("U02", value, "U02 has already approved; one person counts once"),
                ("U03", stale, "the plan changed since you saw it"),
            ]:
                call = await click_and_hear(door, blocks.APPROVE_ACTION, clicked, user)
                assert says in call.params["text"], call.params
                answers.append(call)
            assert [c.params["user"] for c in answers] == ["U01", "U01", "U05", "U02", "U02", "U03"]
            assert {c.params["channel"] for c in answers} == {CHANNEL}
            assert all(c.params.get("thread_ts") for c in answers)
            assert h.store.get_run(run_id).status == "waiting"

            call = await click_and_hear(door, blocks.APPROVE_ACTION, value, "U03")
            assert "Approved (2 of 2: U02, U03" in call.params["text"]
            run = await h.wait_for(run_id)
            assert run.status == "succeeded", run.detail

        kinds = h.kinds(run_id)
        assert kinds.index("approval.granted") < kinds.index("run.finished")
        refused = [
            e.payload["code"] for e in h.store.events(run_id=run_id) if e.kind == "approval.refused"
        ]
        assert refused == [
            "self_approval",
            "self_approval",
            "not_allowed",
            "already_counted",
            "digest_mismatch",
        ]
        rotate = [e for e in h.store.events(run_id=run_id) if e.step_id == "rotate"]
        assert rotate[-1].kind == "step.succeeded"
        assert fake.calls("auth.test") == []  # authorized locally, no Web API round trip

    run_with_engine(h, scenario)


def test_reject_asks_a_reason_in_a_form_and_stops_the_run(
    h_sqlite: Harness, fake: FakeSlack
) -> None:
    """Reject opens a modal (ids in private_metadata); a blank reason keeps the form open
    with an error and votes nothing; the reason given rejects the gate and the run."""
    h = h_sqlite

    async def scenario(service: Service) -> None:
        run_id = h.submit("gated", "U01")
        requested = await opened(h, run_id, "approval.requested")
        value = buttons(blocks.approval_request(requested))[blocks.REJECT_ACTION]
        async with open_door(service, fake) as door:
            payload = door.click_payload(blocks.REJECT_ACTION, value, "U02")
            assert ack_text(await door.interact(payload)) == ""
            opened_view = await next_call(fake, "views.open", 0)
            assert opened_view.params["trigger_id"] == payload["trigger_id"]
            view = opened_view.params["view"]
            assert view["callback_id"] == modals.REJECT_VIEW
            assert json.loads(view["private_metadata"])["run_id"] == run_id

            blank = await door.submit(
                view, "U02", {(modals.REASON_BLOCK, modals.REASON_INPUT): "  "}
            )
            assert blank.json() == {
                "response_action": "errors",
                "errors": {modals.REASON_BLOCK: "Give a reason."},
            }
            assert "approval.rejected" not in h.kinds(run_id)

            reason = "wrong target: db-1 is the replica"
            typed = {(modals.REASON_BLOCK, modals.REASON_INPUT): reason}
            assert ack_text(await door.submit(view, "U02", typed)) == ""
            run = await h.wait_for(run_id)
            assert run.status == "rejected"
            assert reason in (run.detail or "")
            told = await next_call(fake, "chat.postEphemeral", 0)
            assert told.params["user"] == "U02"
            assert "Rejected; the run stops" in told.params["text"]
        rejected = [e for e in h.store.events(run_id=run_id) if e.kind == "approval.rejected"]
        assert rejected[0].payload["user"] == "U02"
        assert reason in rejected[0].payload["reason"]

    run_with_engine(h, scenario)


def test_task_done_hands_over_a_secret_that_goes_nowhere_else(
    h_sqlite: Harness,
    fake: FakeSlack,
    aws: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Done on a task asking for a secret opens a form that says where the value goes;
    the submitted canary lands in Secrets Manager and the run continues with a reference.
    The canary is in no outgoing Slack call, no response, no log line, no timeline event
    — not even when the submission is replayed with a stale signature (refused, 401)."""
    h = h_sqlite
    canary = "canary-" + secrets.token_hex(16)
    caplog.set_level(logging.DEBUG)  # before the app is built: Bolt copies the root level
    responses: list[str] = []

    async def scenario(service: Service) -> None:
        run_id = h.submit("handover", "U01")
        requested = await opened(h, run_id, "manual.requested")
        value = buttons(blocks.task_request(requested))[blocks.TASK_DONE_ACTION]
        async with open_door(service, fake) as door:
            assert ack_text(await door.click(blocks.TASK_DONE_ACTION, value, "U01")) == ""
            view = (await next_call(fake, "views.open", 0)).params["view"]
            assert view["callback_id"] == modals.HANDOVER_VIEW
            label = view["blocks"][1]["label"]["text"]
            assert "New API key" in label
            assert "stored in AWS Secrets Manager, never shown" in label

            typed = {(modals.HANDOVER_BLOCK, modals.HANDOVER_INPUT): canary}
            submission = door.submission(view, "U01", typed)
            response = await door.interact(submission)
            responses.append(response.text)
            assert ack_text(response) == ""
            told = await next_call(fake, "chat.postEphemeral", 0)
            assert "Task `handover`" in told.params["text"], told.params
            run = await h.wait_for(run_id)
            assert run.status == "succeeded", run.detail

            replay = await door.interact(submission, timestamp=int(__import__("time").time()) - 600)
            responses.append(replay.text)
            assert replay.status_code == 401

        use = next(
            e
            for e in h.store.events(run_id=run_id)
            if e.step_id == "use" and e.kind == "step.succeeded"
        )
        ref = SecretRef.parse(use.payload["outputs"]["ref"])
        stored = boto3.client("secretsmanager").get_secret_value(
            SecretId=ref.secret_id, VersionId=ref.version_id
        )
        assert stored["SecretString"] == canary
        assert all(canary not in repr(e.payload) for e in h.store.events())
        assert canary not in view["private_metadata"]
        assert len(fake.calls("chat.postEphemeral")) == 1  # the replay did nothing

    run_with_engine(h, scenario)
    assert canary not in everything_sent(fake)
    assert all(canary not in text for text in responses)
    assert any(r.name.startswith("slack_bolt") for r in caplog.records), "Bolt's log is seen"
    leaked = {r.name for r in caplog.records if canary in r.getMessage()}
    # botocore's DEBUG lines echo AWS request and response bodies (the hand-over itself,
    # and this test's own read): the AWS layer's business, not a Slack log line.
    assert {name for name in leaked if not name.startswith("botocore.")} == set()
    out, err = capfd.readouterr()
    assert canary not in out + err


def test_tasks_answer_outsiders_and_failed_needs_a_reason(
    h_sqlite: Harness, fake: FakeSlack
) -> None:
    """Done from someone who is not an assignee is refused to them alone; Failed opens a
    form whose reason fails the task and the run."""
    h = h_sqlite

    async def scenario(service: Service) -> None:
        run_id = h.submit("tasked", "U01")
        requested = await opened(h, run_id, "manual.requested")
        found = buttons(blocks.task_request(requested))
        async with open_door(service, fake) as door:
            call = await click_and_hear(
                door, blocks.TASK_DONE_ACTION, found[blocks.TASK_DONE_ACTION], "U05"
            )
            assert call.params["user"] == "U05"
            assert "was not accepted: U05 is not an assignee" in call.params["text"]
            assert fake.calls("views.open") == []  # a plain task needs no form

            assert (
                ack_text(
                    await door.click(
                        blocks.TASK_FAILED_ACTION, found[blocks.TASK_FAILED_ACTION], "U04"
                    )
                )
                == ""
            )
            view = (await next_call(fake, "views.open", 0)).params["view"]
            assert view["callback_id"] == modals.FAILED_VIEW
            typed = {(modals.REASON_BLOCK, modals.REASON_INPUT): "dashboards are down"}
            assert ack_text(await door.submit(view, "U04", typed)) == ""
            run = await h.wait_for(run_id)
            assert run.status == "failed"
            assert "dashboards are down" in (run.detail or "")
            told = await next_call(fake, "chat.postEphemeral", 1)
            assert told.params["user"] == "U04"
            assert told.params["text"].startswith(":x: Task `check`")

    run_with_engine(h, scenario)


def test_a_click_after_the_gate_expired_is_answered_not_counted(
    h_sqlite: Harness, fake: FakeSlack
) -> None:
    """The gate's ttl passes and the run expires; a later Approve is answered to the
    clicker with why nothing was counted, and the run stays expired."""
    h = h_sqlite

    async def scenario(service: Service) -> None:
        run_id = h.submit("short", "U01")
        requested = await opened(h, run_id, "approval.requested")
        value = buttons(blocks.approval_request(requested))[blocks.APPROVE_ACTION]
        run = await h.wait_for(run_id)
        assert run.status == "expired"
        async with open_door(service, fake) as door:
            call = await click_and_hear(door, blocks.APPROVE_ACTION, value, "U02")
        assert call.params["user"] == "U02"
        assert f"run {run_id} already finished (expired); nothing to approve" in call.params["text"]
        assert h.store.get_run(run_id).status == "expired"

    run_with_engine(h, scenario)
