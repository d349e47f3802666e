"""Manual tasks: who may complete them, failing them, and handing over a secret.

The rules are pure (:mod:`bot.core.tasks`) and re-checked inside the run's workflow; a
secret a person hands over goes into Secrets Manager (moto here) and the run only ever
holds its reference.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import boto3
import pytest

from bot.core import tasks
from bot.core.refs import SecretRef
from bot.engine import client
from bot.engine.workflow import manual_topic
from tests.engine_support import Harness

TASKED = """
name: tasked
version: 1
steps:
  - id: check
    manual:
      instructions: Check the dashboards.
      assignee: group:security
      ttl: 10m
  - id: after
    action: test.noop
    with: {by: "{{ steps.check.outputs.completed_by }}"}
"""

HANDOVER = """
name: handover
version: 1
steps:
  - id: handover
    manual:
      instructions: Create the new key and hand it over.
      secret_input: {label: New API key}
      ttl: 10m
  - id: use
    action: test.noop
    with: {ref: "{{ steps.handover.outputs.secret_ref }}"}
"""

SHORT = TASKED.replace("name: tasked", "name: short").replace("ttl: 10m", "ttl: 2s")

GROUPS = {"security": ["U04"], "sre": ["U01", "U02"]}


# --------------------------------------------------------------------------- pure rules


def test_default_assignee_is_the_requester() -> None:
    """Without an assignee the requester owns the task; bare ids mean users."""
    assert tasks.assignee_principals(None, "U01") == ("user:U01",)
    assert tasks.assignee_principals("group:sre, U07", "U01") == ("group:sre", "user:U07")


@pytest.mark.parametrize(
    ("answer", "needs_secret", "code"),
    [
        (tasks.TaskAnswer("U05", "done"), False, "not_assignee"),
        (tasks.TaskAnswer("U04", "failed"), False, "reason_required"),
        (tasks.TaskAnswer("U04", "done"), True, "secret_required"),
        (tasks.TaskAnswer("U04", "done", secret_ref="hunter2"), True, "secret_required"),
    ],
)
def test_refusals(answer: tasks.TaskAnswer, needs_secret: bool, code: str) -> None:
    """Each refusal has its code: outsider, failed without reason, missing or bad secret."""
    decision = tasks.decide_task(answer, ("group:security",), GROUPS, needs_secret=needs_secret)
    assert not decision.accepted
    assert decision.code == code


def test_acceptances() -> None:
    """An assignee may finish, fail with a reason, or hand over a reference."""
    ref = str(SecretRef("irbot/handover/r/s", "0" * 8 + "-1111-2222-3333-" + "4" * 12))
    for answer, needs in (
        (tasks.TaskAnswer("U04", "done"), False),
        (tasks.TaskAnswer("U04", "failed", note="dashboard is down"), False),
        (tasks.TaskAnswer("U04", "done", secret_ref=ref), True),
    ):
        assert tasks.decide_task(answer, ("group:security",), GROUPS, needs_secret=needs).accepted


def test_parse_answer_rejects_garbage() -> None:
    """Malformed engine messages are refused with a reason, never crash the run."""
    for bad in (None, "done", {"user": "", "status": "done"}, {"user": "U1", "status": "ok"}):
        with pytest.raises(tasks.UsageError):
            tasks.parse_answer(bad)


# --------------------------------------------------------------------------- through the engine


@pytest.fixture
def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Harness:
    harness = Harness(tmp_path, database_url, monkeypatch)
    for text in (TASKED, HANDOVER, SHORT):
        harness.add_playbook(text)
    return harness


def drive(h: Harness, scenario: object) -> None:
    async def main() -> None:
        await h.start()
        try:
            await scenario()  # type: ignore[operator]
        finally:
            h.stop()

    asyncio.run(main())


async def wait_kind(h: Harness, run_id: str, kind: str) -> None:
    for _ in range(200):
        if kind in h.kinds(run_id):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {kind} event in {h.kinds(run_id)}")


def test_only_an_assignee_completes_a_task(h: Harness) -> None:
    """U05 (no group) and U01 (sre) are refused with reasons on the timeline; U04
    (security) completes the task and the run carries on with who did it."""

    async def scenario() -> None:
        run_id = h.submit("tasked", "U01")
        await h.wait_for(run_id, {"waiting"})
        for outsider in ("U05", "U01"):
            answer = await h.task(run_id, outsider)
            assert answer is not None
            assert (answer["outcome"], answer["code"]) == ("refused", "not_assignee")
        assert h.store.get_run(run_id).status == "waiting"
        answer = await h.task(run_id, "U04", note="all green")
        assert answer is not None
        assert answer["outcome"] == "accepted"
        run = await h.wait_for(run_id)
        assert run.status == "succeeded", run.detail
        refused = [e for e in h.store.events(run_id=run_id) if e.kind == "manual.refused"]
        assert [(e.payload["user"], e.payload["code"]) for e in refused] == [
            ("U05", "not_assignee"),
            ("U01", "not_assignee"),
        ]
        after = next(
            e
            for e in h.store.events(run_id=run_id)
            if e.step_id == "after" and e.kind == "step.succeeded"
        )
        assert after.payload["outputs"] == {"by": "U04"}

    drive(h, scenario)


def test_failing_a_task_needs_a_reason_and_stops_the_run(h: Harness) -> None:
    """`failed` without a note is refused; with one the run fails with that reason."""

    async def scenario() -> None:
        run_id = h.submit("tasked", "U01")
        await h.wait_for(run_id, {"waiting"})
        answer = await h.task(run_id, "U04", status="failed")
        assert answer is not None
        assert answer["code"] == "reason_required"
        await h.task(run_id, "U04", status="failed", note="no access to the console")
        run = await h.wait_for(run_id)
        assert run.status == "failed"
        assert "no access to the console" in (run.detail or "")
        assert "after" not in {e.step_id for e in h.store.events(run_id=run_id)}

    drive(h, scenario)


def test_a_secret_for_a_task_that_asks_none_is_not_sent(h: Harness) -> None:
    """Handing a secret to a plain task is a usage error and nothing reaches the run."""

    async def scenario() -> None:
        run_id = h.submit("tasked", "U01")
        await h.wait_for(run_id, {"waiting"})
        with pytest.raises(tasks.UsageError, match="does not ask for a secret"):
            await h.task(run_id, "U04", secret="s3cr3t-value")
        assert h.store.get_run(run_id).status == "waiting"
        assert "manual.refused" not in h.kinds(run_id)

    drive(h, scenario)


def test_unanswered_task_fails_closed_after_its_ttl(h: Harness) -> None:
    """Nobody answers within ttl: the step fails and nothing after it runs."""

    async def scenario() -> None:
        run_id = h.submit("short", "U01")
        run = await h.wait_for(run_id, timeout=30)
        assert run.status == "failed"
        assert "not completed in time" in (run.detail or "")

    drive(h, scenario)


def test_secret_handover_keeps_only_a_reference(h: Harness, aws: str) -> None:
    """The handed-over value lands in Secrets Manager; the run, its timeline and the
    database files hold only the reference (a canary proves it)."""
    canary = "canary-" + secrets.token_hex(16)

    async def scenario() -> None:
        run_id = h.submit("handover", "U01")
        await h.wait_for(run_id, {"waiting"})
        with pytest.raises(tasks.UsageError, match="--secret-file"):
            await h.task(run_id, "U01")
        # The engine re-checks what the client already refused: a bare "done" is refused.
        with client.dbos_client(h.settings) as dbos:
            await asyncio.to_thread(
                dbos.send, run_id, {"user": "U01", "status": "done"}, manual_topic("handover")
            )
        await wait_kind(h, run_id, "manual.refused")
        answer = await h.task(run_id, "U01", secret=canary)
        assert answer is not None
        assert answer["outcome"] == "accepted"
        run = await h.wait_for(run_id)
        assert run.status == "succeeded", run.detail
        use = next(
            e
            for e in h.store.events(run_id=run_id)
            if e.step_id == "use" and e.kind == "step.succeeded"
        )
        ref = SecretRef.parse(use.payload["outputs"]["ref"])
        sm = boto3.client("secretsmanager")
        stored = sm.get_secret_value(SecretId=ref.secret_id, VersionId=ref.version_id)
        assert stored["SecretString"] == canary
        for event in h.store.events(run_id=run_id):
            assert canary not in repr(event.payload)

    drive(h, scenario)
    for path in (h.root / "data").rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path


def test_cli_hands_over_a_secret_from_a_file(h: Harness, aws: str, tmp_path: Path) -> None:
    """`irbot task done RUN STEP --as U01 --secret-file F` (the real command) stores the
    file's content, says so without echoing it, and the run carries on."""
    canary = "canary-" + secrets.token_hex(16)
    secret_file = tmp_path / "new-key.txt"
    secret_file.write_text(canary + "\n")

    async def scenario() -> None:
        run_id = h.submit("handover", "U01")
        await h.wait_for(run_id, {"waiting"})
        args = ("task", "done", run_id, "handover", "--as", "U01", "--secret-file")
        done = await asyncio.to_thread(h.irbot, *args, str(secret_file))
        assert done.returncode == 0, done.stderr
        assert "accepted" in done.stdout
        assert canary not in done.stdout + done.stderr
        run = await h.wait_for(run_id)
        assert run.status == "succeeded", run.detail
        refused = await asyncio.to_thread(h.irbot, "task", "done", run_id, "--as", "U01")
        assert refused.returncode == 2
        assert "already finished" in refused.stderr

    drive(h, scenario)
