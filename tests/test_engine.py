"""The engine's features through its public face: a worker in-process, runs submitted,
voted on and cancelled as `irbot` does, and what they leave in the timeline store.

Each test runs once on SQLite and once on PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dbos import DBOS

from bot.actions import testing as test_actions
from bot.actions.testing import read_records
from bot.core.catalog import default_catalog
from bot.core.errors import UsageError
from bot.core.playbook import Retry
from bot.core.retry import delay
from bot.core.timeline import StoredEvent
from bot.engine import client, fanout, runtime
from bot.engine.actions import ActionContext, ActionError, FunctionAction, Registry
from tests.engine_support import Harness

CANARY = "xoxb-123456789012-abcdefghij"

Scenario = Callable[[], Awaitable[None]]


@pytest.fixture
def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Harness:
    return Harness(tmp_path, database_url, monkeypatch)


def drive(h: Harness, scenario: Scenario, *, registry: Registry | None = None) -> None:
    """Start a worker in a fresh event loop, play ``scenario``, always stop the worker."""

    async def main() -> None:
        if registry is None:
            await h.start()
        else:
            await runtime.launch(h.settings, registry=registry)
        try:
            await scenario()
        finally:
            h.stop()

    asyncio.run(main())


def events(h: Harness, run_id: str, kind: str | None = None) -> list[StoredEvent]:
    found: list[StoredEvent] = h.store.events(run_id=run_id)
    return [e for e in found if kind is None or e.kind == kind]


def step_events(h: Harness, run_id: str, step_id: str) -> list[StoredEvent]:
    return [e for e in events(h, run_id) if e.step_id == step_id]


def only(items: list[StoredEvent]) -> StoredEvent:
    assert len(items) == 1, [(e.kind, e.step_id, dict(e.payload)) for e in items]
    return items[0]


# --------------------------------------------------------------------------- when

WHEN = """
name: conditional
version: 1
inputs:
  flag: {type: bool, default: false}
steps:
  - id: maybe
    action: test.noop
    when: "{{ inputs.flag }}"
    with: {msg: ran}
  - id: always
    action: test.noop
    with: {msg: "maybe was {{ steps.maybe.status }}"}
"""


def test_when_false_skips_the_step_and_true_runs_it(h: Harness) -> None:
    """A false `when` records step.skipped and the action is not called; true runs it."""
    h.add_playbook(WHEN)

    async def scenario() -> None:
        off = h.submit("conditional", flag="false")
        on = h.submit("conditional", flag="true")
        assert (await h.wait_for(off)).status == "succeeded"
        assert (await h.wait_for(on)).status == "succeeded"

        skipped = only(step_events(h, off, "maybe"))
        assert skipped.kind == "step.skipped"
        assert skipped.payload["reason"] == "when is false"
        after = only(events(h, off, "step.succeeded"))
        assert after.payload["outputs"] == {"msg": "maybe was skipped"}

        ran = only(step_events(h, on, "maybe"))
        assert ran.kind == "step.succeeded"
        assert ran.payload["outputs"] == {"msg": "ran"}
        assert "step.skipped" not in h.kinds(on)

    drive(h, scenario)


# --------------------------------------------------------------------------- retries

RETRY = """
name: flaky
version: 1
inputs:
  times: {type: int, default: 2}
  retryable: {type: bool, default: true}
  attempts: {type: int, default: 3}
steps:
  - id: call
    action: test.fail_times
    with:
      times: "{{ inputs.times }}"
      retryable: "{{ inputs.retryable }}"
      message: flaky backend
    retry: {attempts: 3, backoff: fixed, delay: 1s, max_delay: 1s}
  - id: after
    action: test.noop
    with: {attempts: "{{ steps.call.outputs.attempts }}"}
"""

RETRY_POLICY = Retry(
    attempts=3, backoff="fixed", delay=timedelta(seconds=1), max_delay=timedelta(seconds=1)
)


def attempt_records(run_id: str, step_id: str) -> list[dict[str, Any]]:
    return [r for r in read_records("attempts") if r["key"] == f"{run_id}:{step_id}"]


def test_retryable_failure_retries_with_backoff_then_succeeds(h: Harness) -> None:
    """Two retryable failures, attempts 3: step.retrying twice, spaced by the backoff
    delay, then step.succeeded on the third and last attempt."""
    h.add_playbook(RETRY)

    async def scenario() -> None:
        run_id = h.submit("flaky", times="2")
        run = await h.wait_for(run_id)
        assert run.status == "succeeded", run.detail

        call = step_events(h, run_id, "call")
        assert [e.kind for e in call] == ["step.retrying", "step.retrying", "step.succeeded"]
        assert [e.payload["attempt"] for e in call] == [1, 2, 3]
        assert all(e.payload["attempts"] == 3 for e in call)
        assert "flaky backend (1 of 2)" in call[0].payload["error"]
        assert call[-1].payload["outputs"] == {"attempts": 3}
        assert len(attempt_records(run_id, "call")) == 3

        key = f"{run_id}:call:None"
        for number, (before, after) in enumerate(itertools.pairwise(call), start=1):
            waited = (after.at - before.at).total_seconds()
            assert waited >= delay(RETRY_POLICY, number, key) - 0.05, (number, waited)

        final = only(step_events(h, run_id, "after"))
        assert final.payload["outputs"] == {"attempts": 3}

    drive(h, scenario)


def test_non_retryable_failure_fails_at_once_without_retries(h: Harness) -> None:
    """``retryable: false`` from the action: one attempt, step.failed, run failed."""
    h.add_playbook(RETRY)

    async def scenario() -> None:
        started = time.monotonic()
        run_id = h.submit("flaky", times="2", retryable="false")
        run = await h.wait_for(run_id)
        assert run.status == "failed"
        assert [e.kind for e in step_events(h, run_id, "call")] == ["step.failed"]
        assert "step.retrying" not in h.kinds(run_id)
        assert len(attempt_records(run_id, "call")) == 1
        assert "flaky backend (1 of 2)" in (run.detail or "")
        assert step_events(h, run_id, "after") == []
        assert time.monotonic() - started < 5

    drive(h, scenario)


def test_exhausted_attempts_fail_the_run(h: Harness) -> None:
    """A failure that outlasts every attempt: 2 retries, then step.failed and run failed."""
    h.add_playbook(RETRY)

    async def scenario() -> None:
        run_id = h.submit("flaky", times="5")
        run = await h.wait_for(run_id)
        assert run.status == "failed"
        call = step_events(h, run_id, "call")
        assert [e.kind for e in call] == ["step.retrying", "step.retrying", "step.failed"]
        assert call[-1].payload["attempt"] == 3
        assert len(attempt_records(run_id, "call")) == 3
        assert "step 'call' failed: flaky backend (3 of 5)" in (run.detail or "")
        assert "run.failed" in h.kinds(run_id)
        assert step_events(h, run_id, "after") == []

    drive(h, scenario)


# --------------------------------------------------------------------------- timeout

TIMEOUT = """
name: slow
version: 1
steps:
  - id: nap
    action: test.sleep
    with: {seconds: 5}
    timeout: 1s
  - id: after
    action: test.noop
    with: {x: 1}
"""


def test_step_timeout_fails_the_step_with_a_timeout_message(h: Harness) -> None:
    """A 5 s action under a 1 s `timeout` is cut off after about 1 s and the run fails."""
    h.add_playbook(TIMEOUT)

    async def scenario() -> None:
        run_id = h.submit("slow")
        run = await h.wait_for(run_id)
        assert run.status == "failed"
        failed = only(step_events(h, run_id, "nap"))
        assert failed.kind == "step.failed"
        assert failed.payload["code"] == "timeout"
        assert "timed out after 1s" in failed.payload["error"]
        assert 900 <= failed.payload["duration_ms"] < 3000
        assert "timed out" in (run.detail or "")
        assert step_events(h, run_id, "after") == []

    drive(h, scenario)


# --------------------------------------------------------------------------- compensation

COMPENSATE = """
name: compensate
version: 1
steps:
  - id: risky
    action: test.fail_times
    with: {times: 1, retryable: false, message: broken}
    on_failure:
      - action: test.noop
        with: {undo: "{{ run.id }}"}
  - id: after
    action: test.noop
    with: {x: 1}
"""


def test_on_failure_compensation_runs_and_the_run_still_fails(h: Harness) -> None:
    """The failed step's `on_failure` action runs as ``<step>.on_failure.0``; then the
    run ends failed and later steps do not run."""
    h.add_playbook(COMPENSATE)

    async def scenario() -> None:
        run_id = h.submit("compensate")
        run = await h.wait_for(run_id)
        assert run.status == "failed"
        assert only(step_events(h, run_id, "risky")).kind == "step.failed"
        comp = only(step_events(h, run_id, "risky.on_failure.0"))
        assert comp.kind == "step.succeeded"
        assert comp.payload["action"] == "test.noop"
        assert comp.payload["outputs"] == {"undo": run_id}
        kinds = h.kinds(run_id)
        assert (
            kinds.index("step.failed") < kinds.index("step.succeeded") < kinds.index("run.failed")
        )
        assert step_events(h, run_id, "after") == []

    drive(h, scenario)


FAN_COMPENSATE = """
name: fan-compensate
version: 1
inputs:
  names: {type: list, default: [a, b, c, d]}
steps:
  - id: fan
    action: test.fail_times
    for_each: "{{ inputs.names }}"
    concurrency: 2
    with: {times: "{{ 1 if item in ['b', 'd'] else 0 }}", retryable: false, message: broken}
    on_failure:
      - action: test.noop
        with: {undo: "{{ item }}", of: "{{ inputs.names | length }}", run: "{{ run.id }}"}
"""


def test_a_fan_out_item_that_fails_runs_its_own_compensation(h: Harness) -> None:
    """Items b and d fail: each runs on_failure with its own item (and the run's inputs
    and ids, as the parent saw them), the others run none; the run fails naming both."""
    h.add_playbook(FAN_COMPENSATE)

    async def scenario() -> None:
        run_id = h.submit("fan-compensate")
        run = await h.wait_for(run_id)
        assert run.status == "failed"
        assert "b, d" in (run.detail or "")
        comps = step_events(h, run_id, "fan.on_failure.0")
        assert sorted((e.payload["item"], e.payload["outputs"]["undo"]) for e in comps) == [
            (1, "b"),
            (3, "d"),
        ]
        assert all(e.payload["outputs"]["of"] == 4 for e in comps)
        assert all(e.payload["outputs"]["run"] == run_id for e in comps)

    drive(h, scenario)


def test_an_item_enqueued_before_the_upgrade_compensates_from_its_stored_context(
    h: Harness,
) -> None:
    """Children enqueued by an older irbot carry the run's context and the on_failure
    models instead of rendered calls: such an item, run now, still renders and runs
    its compensation."""
    h.add_playbook(FAN_COMPENSATE)

    async def scenario() -> None:
        run_id = h.submit("fan-compensate", names=["a"])
        run = await h.wait_for(run_id)
        call = {
            "run_id": run_id,
            "incident_id": run.incident_id,
            "step_id": "late",
            "action": "test.fail_times",
            "args": {"times": 1, "retryable": False, "message": "old"},
            "item_index": 9,
            "optional": False,
            "timeout": None,
            "trigger": {},
        }
        old_job = {
            "call": call,
            "retry": Retry().model_dump(mode="json"),
            "on_failure": [{"action": "test.noop", "with": {"undo": "{{ item }}"}}],
            "context": {"item": "z", "inputs": {}, "steps": {}, "run": {}, "incident": {}},
        }
        handle = await DBOS.start_workflow_async(fanout.run_items, [old_job])
        [result] = (await handle.get_result())["results"]
        assert result["status"] == "failed"
        comp = only(step_events(h, run_id, "late.on_failure.0"))
        assert (comp.kind, comp.payload["item"]) == ("step.succeeded", 9)
        assert comp.payload["outputs"] == {"undo": "z"}

    drive(h, scenario)


# --------------------------------------------------------------------------- for_each

FAN = """
name: fan
version: 1
inputs:
  names: {type: list, default: [alpha, beta, gamma, delta]}
steps:
  - id: each
    action: test.noop
    for_each: "{{ inputs.names }}"
    concurrency: 4
    with: {name: "{{ item }}", upper: "{{ item | upper }}"}
  - id: collect
    action: test.noop
    with: {all: "{{ steps.each.outputs }}"}
"""


def test_for_each_runs_each_item_once_with_outputs_in_item_order(h: Harness) -> None:
    """Every item runs exactly once with `item` resolved; the step's outputs are a list in
    item order, whatever order the items finished in."""
    h.add_playbook(FAN)

    async def scenario() -> None:
        run_id = h.submit("fan")
        run = await h.wait_for(run_id)
        assert run.status == "succeeded", run.detail
        names = ["alpha", "beta", "gamma", "delta"]
        each = step_events(h, run_id, "each")
        assert all(e.kind == "step.succeeded" for e in each)
        assert sorted(e.payload["item"] for e in each) == [0, 1, 2, 3]
        for event in each:
            name = names[event.payload["item"]]
            assert event.payload["args"] == {"name": name, "upper": name.upper()}
        collected = only(step_events(h, run_id, "collect"))
        assert collected.payload["outputs"]["all"] == [
            {"name": name, "upper": name.upper()} for name in names
        ]

    drive(h, scenario)


FAN_SLEEP = """
name: fan-sleep
version: 1
steps:
  - id: naps
    action: test.sleep
    for_each: [a, b, c, d, e]
    concurrency: 2
    with: {seconds: 0.5}
"""


FAN_RATE = """
name: fan-rate
version: 1
steps:
  - id: burst
    action: test.noop
    for_each: [0, 1, 2, 3, 4, 5, 6, 7, 8]
    concurrency: 9
    with: {n: "{{ item }}"}
"""


def test_for_each_honours_the_actions_rate_limit(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An action with a rate class (Secrets Manager writes: 45/s) fans out through a
    rate-limited queue: here 3 per second, so 9 items cannot all start in one second."""

    monkeypatch.setitem(fanout.RATE_LIMITS, "test.noop", ("test-rate", 3, 1.0))
    h.add_playbook(FAN_RATE)

    async def scenario() -> None:
        run_id = h.submit("fan-rate")
        run = await h.wait_for(run_id)
        assert run.status == "succeeded", run.detail
        done = sorted(e.at.timestamp() for e in step_events(h, run_id, "burst"))
        assert len(done) == 9
        # 3 per second: 9 items cannot all start within one period (unlimited, they all
        # end within ~0.1 s). DBOS's limiter is approximate at a window's edge (a second
        # batch can slip in with the first), so only the one-period bound is asserted.
        assert done[-1] - done[0] > 0.9, done
        queue = await fanout._queue(fanout.fanout_queue_name(9, "test-rate"))
        assert queue.limiter == {"limit": 3, "period": 1.0}

    drive(h, scenario)


def test_for_each_concurrency_limits_items_in_flight(h: Harness) -> None:
    """concurrency 2 over five 0.5 s sleeps: at most two items overlap at any moment (and
    two do), judged from each item event's end time and duration."""
    h.add_playbook(FAN_SLEEP)

    async def scenario() -> None:
        run_id = h.submit("fan-sleep")
        run = await h.wait_for(run_id)
        assert run.status == "succeeded", run.detail
        naps = step_events(h, run_id, "naps")
        assert len(naps) == 5
        assert all(e.kind == "step.succeeded" for e in naps)
        spans = []
        for event in naps:
            end = event.at.timestamp()
            spans.append((end - event.payload["duration_ms"] / 1000, end))
        points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
        in_flight = peak = 0
        for _, change in points:
            in_flight += change
            peak = max(peak, in_flight)
        assert peak == 2, spans
        assert max(e for _, e in spans) - min(s for s, _ in spans) >= 3 * 0.5 - 0.05

    drive(h, scenario)


FAN_FAIL = """
name: fan-fail
version: 1
steps:
  - id: each
    action: test.fail_times
    for_each: [1, 0, 0]
    with: {times: "{{ item }}", retryable: false, message: "item {{ item }} broke"}
  - id: after
    action: test.noop
    with: {x: 1}
"""


def test_for_each_failed_item_fails_the_step_after_all_items(h: Harness) -> None:
    """The first item fails; the others still run (one at a time, after it); then the
    step and the run fail and the next step does not run."""
    h.add_playbook(FAN_FAIL)

    async def scenario() -> None:
        run_id = h.submit("fan-fail")
        run = await h.wait_for(run_id)
        assert run.status == "failed"
        each = step_events(h, run_id, "each")
        by_item = {e.payload["item"]: e.kind for e in each}
        assert by_item == {0: "step.failed", 1: "step.succeeded", 2: "step.succeeded"}
        assert len(each) == 3
        assert "step 'each' failed for 1" in (run.detail or "")
        assert step_events(h, run_id, "after") == []

    drive(h, scenario)


# --------------------------------------------------------------------------- wait

WAIT = """
name: pause
version: 1
steps:
  - id: hold
    wait: 2s
  - id: after
    action: test.noop
    with: {x: 1}
"""


def test_durable_wait_records_start_and_finish_and_really_waits(h: Harness) -> None:
    """`wait: 2s` puts the run in ``waiting``, records wait.started / wait.finished at
    least two seconds apart, then the next step runs."""
    h.add_playbook(WAIT)

    async def scenario() -> None:
        run_id = h.submit("pause")
        await h.wait_for(run_id, {"waiting"}, timeout=10)
        assert step_events(h, run_id, "after") == []
        run = await h.wait_for(run_id)
        assert run.status == "succeeded", run.detail
        started = only(events(h, run_id, "wait.started"))
        finished = only(events(h, run_id, "wait.finished"))
        assert (finished.at - started.at).total_seconds() >= 2.0
        assert started.payload["until"] == finished.payload["until"]
        assert only(step_events(h, run_id, "after")).at > finished.at

    drive(h, scenario)


# --------------------------------------------------------------------------- sub-playbooks

CHILD = """
name: child-pb
version: 1
inputs:
  who: {type: string}
steps:
  - id: greet
    action: test.noop
    with: {text: "hello {{ inputs.who }}"}
"""

PARENT = """
name: parent-pb
version: 1
steps:
  - id: first
    action: test.noop
    with: {who: world}
  - id: call
    playbook: child-pb
    with: {who: "{{ steps.first.outputs.who }}"}
  - id: after
    action: test.noop
    with: {child: "{{ steps.call.outputs.run_id }}", status: "{{ steps.call.outputs.status }}"}
"""


def test_sub_playbook_runs_as_its_own_run_in_the_same_incident(h: Harness) -> None:
    """A `playbook:` step runs the child as run ``<run>.<step>`` in the parent's incident,
    with its own timeline events; then the parent continues with the child's result."""
    h.add_playbook(CHILD)
    h.add_playbook(PARENT)

    async def scenario() -> None:
        run_id = h.submit("parent-pb")
        parent = await h.wait_for(run_id)
        assert parent.status == "succeeded", parent.detail
        child_id = f"{run_id}.call"
        child = h.store.get_run(child_id)
        assert child.status == "succeeded"
        assert child.playbook == "child-pb"
        assert child.incident_id == parent.incident_id
        assert child.requester == "U01"
        assert h.kinds(child_id)[0] == "run.started"
        assert events(h, child_id, "run.started")[0].payload["parent_run"] == run_id
        greet = only(step_events(h, child_id, "greet"))
        assert greet.payload["outputs"] == {"text": "hello world"}
        after = only(step_events(h, run_id, "after"))
        assert after.payload["outputs"] == {"child": child_id, "status": "succeeded"}
        assert after.at > greet.at
        assert "greet" not in {e.step_id for e in events(h, run_id)}

    drive(h, scenario)


# --------------------------------------------------------------------------- cancel

CANCEL = """
name: cancellable
version: 1
steps:
  - id: gate
    approval: {min: 2, from: [group:sre], ttl: 10m}
  - id: wipe
    action: test.destructive
    with: {target: prod}
  - id: after
    action: test.noop
    with: {x: 1}
"""


def test_cancel_stops_a_run_waiting_at_a_gate(h: Harness) -> None:
    """`irbot cancel` on a run waiting for approval: status cancelled, run.cancelled by
    the user, later steps never run, and the run cannot be cancelled or voted on again."""
    h.add_playbook(CANCEL)

    async def scenario() -> None:
        run_id = h.submit("cancellable")
        await h.wait_for(run_id, {"waiting"})
        record = await asyncio.to_thread(client.cancel, h.settings, h.store, run_id, user="U02")
        assert record.status == "cancelled"
        assert record.detail == "cancelled by U02"
        cancelled = only(events(h, run_id, "run.cancelled"))
        assert cancelled.actor == "user:U02"
        assert cancelled.payload == {"by": "U02"}
        with pytest.raises(UsageError):
            await h.vote(run_id, "U03")
        with pytest.raises(UsageError):
            client.cancel(h.settings, h.store, run_id, user="U02")
        await asyncio.sleep(1.0)
        assert h.store.get_run(run_id).status == "cancelled"
        assert read_records("destructive") == []
        assert step_events(h, run_id, "wipe") == []
        assert step_events(h, run_id, "after") == []

    drive(h, scenario)


CANCEL_FAN = """
name: cancel-fan
version: 1
steps:
  - id: gate
    approval: {min: 1, from: [group:sre]}
  - id: wipe
    action: test.destructive
    for_each: [a, b, c, d, e]
    concurrency: 1
    with: {target: "{{ item }}"}
  - id: after
    action: test.destructive
    with: {target: z}
"""


def test_cancel_during_a_fan_out_stops_the_remaining_items(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling while for_each items run: the item in flight may finish, no new item
    starts (items are workflows of their own and are cancelled with the run)."""
    h.add_playbook(CANCEL_FAN)
    monkeypatch.setenv("IRBOT_TEST_DESTRUCTIVE_PAUSE", "0.5")

    async def scenario() -> None:
        run_id = h.submit("cancel-fan")
        await h.wait_for(run_id, {"waiting"})
        await h.vote(run_id, "U02")
        while not read_records("destructive"):
            await asyncio.sleep(0.02)
        await asyncio.to_thread(client.cancel, h.settings, h.store, run_id, user="U02")
        at_cancel = len(read_records("destructive"))
        await asyncio.sleep(2.0)
        targets = [r["with"]["target"] for r in read_records("destructive")]
        assert len(targets) <= at_cancel + 1, targets
        assert len(targets) < 5
        assert "z" not in targets
        assert h.store.get_run(run_id).status == "cancelled"

    drive(h, scenario)


# --------------------------------------------------------------------------- optional

OPTIONAL = """
name: optional-post
version: 1
inputs:
  optional: {type: bool, default: true}
steps:
  - id: tell
    action: slack.post
    optional: true
    with: {text: "hello"}
  - id: after
    action: test.noop
    with: {told: "{{ steps.tell.status }}"}
"""

REQUIRED = OPTIONAL.replace("optional-post", "required-post").replace(
    "optional: true\n", "optional: false\n"
)


def unconfigured_slack(calls: list[Any]) -> FunctionAction:
    async def post(inputs: Any, ctx: ActionContext) -> Mapping[str, Any]:
        calls.append(inputs)
        return {"channel": "C1", "ts": "1.0"}

    return FunctionAction(
        default_catalog()["slack.post"], post, check=lambda: "no Slack bot token configured"
    )


def test_optional_step_without_its_integration_is_skipped_with_a_note(h: Harness) -> None:
    """`optional: true` on an action whose integration is not configured: step.skipped
    with a note naming the reason, the action is not called and the run goes on."""
    h.add_playbook(OPTIONAL)
    calls: list[Any] = []

    async def scenario() -> None:
        runtime.current().registry.add(unconfigured_slack(calls))
        run_id = h.submit("optional-post")
        run = await h.wait_for(run_id)
        assert run.status == "succeeded", run.detail
        skipped = only(step_events(h, run_id, "tell"))
        assert skipped.kind == "step.skipped"
        assert "no Slack bot token configured" in skipped.payload["note"]
        assert "slack.post" in skipped.payload["note"]
        assert only(step_events(h, run_id, "after")).payload["outputs"] == {"told": "skipped"}
        assert calls == []

    drive(h, scenario)


def test_required_step_without_its_integration_fails_the_run(h: Harness) -> None:
    """The same step without `optional` fails the run, saying what is not configured."""
    h.add_playbook(REQUIRED)
    calls: list[Any] = []

    async def scenario() -> None:
        runtime.current().registry.add(unconfigured_slack(calls))
        run_id = h.submit("required-post")
        run = await h.wait_for(run_id)
        assert run.status == "failed"
        failed = only(step_events(h, run_id, "tell"))
        assert failed.kind == "step.failed"
        assert failed.payload["code"] == "config"
        assert "slack.post is not configured: no Slack bot token configured" in (run.detail or "")
        assert step_events(h, run_id, "after") == []
        assert calls == []

    drive(h, scenario)


# --------------------------------------------------------------------------- outputs

OUTPUTS = """
name: chained
version: 1
steps:
  - id: count
    action: test.fail_times
    with: {times: 0}
  - id: make
    action: test.noop
    with: {ref: "arn:aws:secretsmanager:eu-west-1:123:secret:db", tags: [a, b]}
  - id: use
    action: test.noop
    with:
      ref: "{{ steps.make.outputs.ref }}"
      label: "v{{ steps.count.outputs.attempts }}-{{ steps.make.outputs.tags | join('+') }}"
      tags: "{{ steps.make.outputs.tags }}"
"""


def test_outputs_of_an_action_resolve_in_a_later_steps_with(h: Harness) -> None:
    """`steps.<id>.outputs.<name>` in a later `with` resolves to what the action returned
    (inside text, and as a native value when it is the whole expression)."""
    h.add_playbook(OUTPUTS)

    async def scenario() -> None:
        run_id = h.submit("chained")
        run = await h.wait_for(run_id)
        assert run.status == "succeeded", run.detail
        use = only(step_events(h, run_id, "use"))
        assert use.payload["args"] == {
            "ref": "arn:aws:secretsmanager:eu-west-1:123:secret:db",
            "label": "v1-a+b",
            "tags": ["a", "b"],
        }

    drive(h, scenario)


# --------------------------------------------------------------------------- no implementation

UNIMPLEMENTED = """
name: unimplemented
version: 1
steps:
  - id: tell
    action: slack.post
    with: {text: "hello"}
  - id: after
    action: test.noop
    with: {x: 1}
"""


def test_action_without_an_implementation_fails_the_run_clearly(h: Harness) -> None:
    """In a build whose registry lacks the action, the run fails and says so."""
    h.add_playbook(UNIMPLEMENTED)
    registry = Registry()
    test_actions.register(registry)
    assert "slack.post" not in registry

    async def scenario() -> None:
        run_id = h.submit("unimplemented")
        run = await h.wait_for(run_id)
        assert run.status == "failed"
        failed = only(step_events(h, run_id, "tell"))
        assert failed.kind == "step.failed"
        assert failed.payload["code"] == "not_implemented"
        assert "'slack.post' is declared but has no implementation" in (run.detail or "")
        assert step_events(h, run_id, "after") == []

    drive(h, scenario, registry=registry)


# --------------------------------------------------------------------------- pinning

PINNED = """
name: pinned
version: 1
steps:
  - id: gate
    approval: {min: 1, from: [group:sre], ttl: 10m}
  - id: wipe
    action: test.destructive
    with: {target: original}
"""


def test_editing_the_playbook_file_does_not_change_a_run_in_flight(h: Harness) -> None:
    """The run interprets the text pinned at submit: a file edited while it waits at a
    gate changes neither what the run does nor the digest approvers signed."""
    h.add_playbook(PINNED)

    async def scenario() -> None:
        run_id = h.submit("pinned")
        await h.wait_for(run_id, {"waiting"})
        h.add_playbook(
            PINNED.replace("original", "edited").replace(
                "  - id: wipe",
                "  - id: extra\n    action: test.noop\n    with: {x: 1}\n  - id: wipe",
            )
        )
        answer = await h.vote(run_id, "U02")
        assert answer is not None
        assert answer["outcome"] == "granted"
        run = await h.wait_for(run_id)
        assert run.status == "succeeded", run.detail
        assert [r["with"] for r in read_records("destructive")] == [{"target": "original"}]
        assert step_events(h, run_id, "extra") == []

    drive(h, scenario)


# --------------------------------------------------------------------------- secrets

CANARY_PB = """
name: canary
version: 1
steps:
  - id: tell
    action: slack.post
    with: {text: "hello"}
"""


def test_secret_in_an_action_error_is_redacted_everywhere_it_is_stored(h: Harness) -> None:
    """An action error quoting a Slack token: the timeline events, the run's detail and
    (on SQLite) every file irbot wrote show the mask, never the token."""
    h.add_playbook(CANARY_PB)

    async def leak(inputs: Any, ctx: ActionContext) -> Mapping[str, Any]:
        raise ActionError(f"invalid_auth for token {CANARY}", retryable=False, code="auth")

    async def scenario() -> None:
        runtime.current().registry.add(FunctionAction(default_catalog()["slack.post"], leak))
        run_id = h.submit("canary")
        run = await h.wait_for(run_id)
        assert run.status == "failed"
        failed = only(step_events(h, run_id, "tell"))
        assert "invalid_auth for token [REDACTED]" in failed.payload["error"]
        everything = [
            {"payload": dict(e.payload), "actor": e.actor, "kind": e.kind} for e in h.store.events()
        ]
        assert CANARY not in json.dumps(everything)
        assert CANARY not in (run.detail or "")
        assert "[REDACTED]" in (run.detail or "")

    drive(h, scenario)
    if not h.settings.database_url:
        for path in h.root.rglob("*"):
            if path.is_file():
                assert CANARY.encode() not in path.read_bytes(), path


def test_chunks_split_items_in_order_two_per_slot() -> None:
    """Contiguous, ordered, covering every index once; at most 2 x concurrency parts."""
    parts = fanout.chunks(200, 20)
    assert len(parts) == 40
    assert [i for part in parts for i in part] == list(range(200))
    assert {len(part) for part in parts} == {5}
    uneven = fanout.chunks(7, 2)
    assert [list(p) for p in uneven] == [[0, 1], [2, 3], [4, 5], [6]]
    assert [list(p) for p in fanout.chunks(3, 10)] == [[0], [1], [2]]
    assert fanout.chunks(0, 4) == []


def test_a_fan_out_goes_several_items_to_a_child_workflow(h: Harness) -> None:
    """Nine items at concurrency 2: four child workflows of consecutive items (not nine),
    each item still its own step with its own key and event."""
    h.add_playbook(
        FAN.replace("concurrency: 4", "concurrency: 2").replace(
            "default: [alpha, beta, gamma, delta]", "default: [a, b, c, d, e, f, g, h, i]"
        )
    )

    async def scenario() -> None:
        run_id = h.submit("fan")
        run = await h.wait_for(run_id)
        assert run.status == "succeeded", run.detail
        children = await DBOS.list_workflows_async(workflow_id_prefix=f"{run_id}:each:")
        assert sorted(w.workflow_id for w in children) == [
            f"{run_id}:each:{span}" for span in ("0-2", "3-4", "5-6", "7-8")
        ]
        assert {w.name for w in children} == {"irbot.items"}
        each = step_events(h, run_id, "each")
        assert sorted(e.payload["item"] for e in each) == list(range(9))

    drive(h, scenario)
