"""Two-person gates through the engine: votes delivered as `irbot approve` does, decided
inside the run's workflow, recorded on the timeline; destructive calls checked in the
test actions' record (``destructive.jsonl``).

Groups (tests/engine_support.GROUPS): sre = U01 U02 U03, security = U04, breakglass = U09;
U05 is in no group. The requester is U01 unless a test says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bot.actions.testing import read_records
from bot.core.errors import UsageError
from bot.core.timeline import StoredEvent
from bot.engine import client
from tests.engine_support import GROUPS, Harness

Scenario = Callable[[], Awaitable[None]]

GATED = """
name: gated
version: 1
inputs:
  target: {type: string, default: db-1}
steps:
  - id: gate
    approval: {min: 2, from: [group:sre], ttl: 10m}
  - id: rotate
    action: test.destructive
    with: {target: "{{ inputs.target }}"}
"""

SINGLE = GATED.replace("name: gated", "name: single").replace("min: 2", "min: 1")
SHORT_TTL = GATED.replace("name: gated", "name: short").replace("ttl: 10m", "ttl: 2s")


@pytest.fixture
def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Harness:
    harness = Harness(tmp_path, database_url, monkeypatch)
    for text in (GATED, SINGLE, SHORT_TTL):
        harness.add_playbook(text)
    return harness


def drive(h: Harness, scenario: Scenario) -> None:
    """Start a worker in a fresh event loop, play ``scenario``, always stop the worker."""

    async def main() -> None:
        await h.start()
        try:
            await scenario()
        finally:
            h.stop()

    asyncio.run(main())


def events(h: Harness, run_id: str, kind: str) -> list[StoredEvent]:
    return [e for e in h.store.events(run_id=run_id) if e.kind == kind]


def refusals(h: Harness, run_id: str) -> list[tuple[str | None, str | None]]:
    return [
        (e.payload.get("user"), e.payload["code"]) for e in events(h, run_id, "approval.refused")
    ]


async def waiting(h: Harness, name: str = "gated", user: str = "U01") -> str:
    run_id = h.submit(name, user)
    await h.wait_for(run_id, {"waiting"})
    return run_id


def requested_digest(h: Harness, run_id: str) -> str:
    return str(events(h, run_id, "approval.requested")[-1].payload["digest"])


def outcome(answer: dict[str, Any] | None) -> tuple[str, str | None]:
    assert answer is not None, "no decision from the engine"
    return answer["outcome"], answer["code"]


async def granted_and_done(h: Harness, run_id: str) -> None:
    run = await h.wait_for(run_id)
    assert run.status == "succeeded", run.detail
    assert [r["key"] for r in read_records("destructive")] == [f"{run_id}:rotate"]


# --------------------------------------------------------------------------- who counts


def test_destructive_step_refuses_to_run_if_its_gate_was_bypassed(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail closed: even if the gate's code were skipped (simulated by replacing it with a
    no-op), the destructive step checks that its gate succeeded and refuses to run."""
    from bot.engine import workflow

    async def bypass(state: Any, step: Any) -> None:
        return None

    monkeypatch.setattr(workflow, "run_gate", bypass)

    async def scenario() -> None:
        run_id = h.submit("gated")
        run = await h.wait_for(run_id)
        assert run.status == "failed"
        assert "approval gate is not satisfied" in (run.detail or "")
        assert read_records("destructive") == []

    drive(h, scenario)


def test_self_approval_is_refused(h: Harness) -> None:
    """The requester (U01, an sre member) cannot approve their own run."""

    async def scenario() -> None:
        run_id = await waiting(h)
        assert outcome(await h.vote(run_id, "U01")) == ("refused", "self_approval")
        assert refusals(h, run_id) == [("U01", "self_approval")]
        assert h.store.get_run(run_id).status == "waiting"
        assert outcome(await h.vote(run_id, "U02")) == ("counted", None)
        assert outcome(await h.vote(run_id, "U03")) == ("granted", None)
        await granted_and_done(h, run_id)

    drive(h, scenario)


def test_same_user_twice_counts_once(h: Harness) -> None:
    """U02 approving twice is one approval; the gate still needs a second person."""

    async def scenario() -> None:
        run_id = await waiting(h)
        assert outcome(await h.vote(run_id, "U02")) == ("counted", None)
        assert outcome(await h.vote(run_id, "U02")) == ("refused", "already_counted")
        assert h.store.get_run(run_id).status == "waiting"
        assert read_records("destructive") == []
        answer = await h.vote(run_id, "U03")
        assert outcome(answer) == ("granted", None)
        assert answer is not None
        assert answer["approvers"] == ["U02", "U03"]
        await granted_and_done(h, run_id)

    drive(h, scenario)


def test_non_member_is_refused(h: Harness) -> None:
    """U05 is in no group and U04 only in security: neither counts at an sre gate."""

    async def scenario() -> None:
        run_id = await waiting(h)
        assert outcome(await h.vote(run_id, "U05")) == ("refused", "not_allowed")
        assert outcome(await h.vote(run_id, "U04")) == ("refused", "not_allowed")
        assert refusals(h, run_id) == [("U05", "not_allowed"), ("U04", "not_allowed")]
        assert events(h, run_id, "approval.counted") == []
        assert h.store.get_run(run_id).status == "waiting"
        assert read_records("destructive") == []

    drive(h, scenario)


def test_membership_is_read_when_each_vote_is_decided(h: Harness) -> None:
    """irbot.yaml rewritten between votes: a member removed after the gate opened is
    refused, a member added after it opened counts."""

    async def scenario() -> None:
        run_id = await waiting(h)
        assert outcome(await h.vote(run_id, "U02")) == ("counted", None)
        h.write_config(groups={**GROUPS, "sre": ["U01", "U02"]})
        assert outcome(await h.vote(run_id, "U03")) == ("refused", "not_allowed")
        h.write_config(groups={**GROUPS, "sre": ["U01", "U02", "U05"]})
        assert outcome(await h.vote(run_id, "U05")) == ("granted", None)
        await granted_and_done(h, run_id)

    drive(h, scenario)


# --------------------------------------------------------------------------- reject, expire


def test_reject_needs_a_reason_then_stops_the_run(h: Harness) -> None:
    """A reject without a reason is refused and changes nothing; with one it stops the
    run as rejected, even after an approval, and nothing destructive happens."""

    async def scenario() -> None:
        run_id = await waiting(h)
        assert outcome(await h.vote(run_id, "U02")) == ("counted", None)
        assert outcome(await h.vote(run_id, "U03", decision="reject")) == (
            "refused",
            "reason_required",
        )
        assert outcome(await h.vote(run_id, "U03", decision="reject", reason="  ")) == (
            "refused",
            "reason_required",
        )
        assert h.store.get_run(run_id).status == "waiting"
        answer = await h.vote(run_id, "U03", decision="reject", reason="wrong secret")
        assert outcome(answer) == ("rejected", None)
        run = await h.wait_for(run_id)
        assert run.status == "rejected"
        assert "wrong secret" in (run.detail or "")
        rejected = events(h, run_id, "approval.rejected")
        assert len(rejected) == 1
        assert rejected[0].actor == "user:U03"
        await asyncio.sleep(0.3)
        assert read_records("destructive") == []
        assert [e for e in h.store.events(run_id=run_id) if e.step_id == "rotate"] == []

    drive(h, scenario)


def test_gate_fails_closed_when_ttl_expires(h: Harness) -> None:
    """No decision within `ttl: 2s` (one approval of two is not enough): the run expires
    and nothing destructive happens."""

    async def scenario() -> None:
        run_id = await waiting(h, "short")
        assert outcome(await h.vote(run_id, "U02")) == ("counted", None)
        run = await h.wait_for(run_id, timeout=10)
        assert run.status == "expired"
        expired = events(h, run_id, "approval.expired")
        assert len(expired) == 1
        assert expired[0].payload["approvers"] == ["U02"]
        assert "run.expired" in h.kinds(run_id)
        assert read_records("destructive") == []
        with pytest.raises(UsageError):
            await h.vote(run_id, "U03")
        assert read_records("destructive") == []

    drive(h, scenario)


# --------------------------------------------------------------------------- digests


def test_vote_for_another_plan_digest_is_refused(h: Harness) -> None:
    """An approval signed for a different plan (digest 000…) does not count."""

    async def scenario() -> None:
        run_id = await waiting(h, "single")
        answer = await h.vote(run_id, "U02", digest="0" * 64)
        assert outcome(answer) == ("refused", "digest_mismatch")
        refused = events(h, run_id, "approval.refused")
        assert refused[0].payload["plan_digest"] == "0" * 64
        assert h.store.get_run(run_id).status == "waiting"
        assert read_records("destructive") == []

    drive(h, scenario)


def test_digest_prefix_of_the_current_plan_is_accepted(h: Harness) -> None:
    """The 12-hex prefix shown in Slack and plans stands for the current digest."""

    async def scenario() -> None:
        run_id = await waiting(h, "single")
        digest = requested_digest(h, run_id)
        assert len(digest) == 64
        answer = await h.vote(run_id, "U02", digest=digest[:12])
        assert outcome(answer) == ("granted", None)
        assert answer is not None
        assert answer["plan_digest"] == digest
        await granted_and_done(h, run_id)

    drive(h, scenario)


# --------------------------------------------------------------------------- break-glass


def test_breakglass_member_with_reason_passes_alone_and_is_flagged(h: Harness) -> None:
    """U09 (breakglass group, not sre) passes a min-2 gate alone with a reason; the run
    record and the timeline say so loudly."""

    async def scenario() -> None:
        run_id = await waiting(h)
        assert outcome(await h.vote(run_id, "U09", breakglass=True)) == (
            "refused",
            "reason_required",
        )
        answer = await h.vote(run_id, "U09", breakglass=True, reason="prod is down")
        assert outcome(answer) == ("breakglass", None)
        await granted_and_done(h, run_id)
        run = h.store.get_run(run_id)
        assert run.breakglass is True
        assert "break-glass" in (run.detail or "")
        loud = events(h, run_id, "approval.breakglass")
        assert len(loud) == 1
        assert loud[0].actor == "user:U09"
        assert "BREAK-GLASS" in loud[0].payload["summary"]
        assert "prod is down" in loud[0].payload["summary"]

    drive(h, scenario)


def test_breakglass_from_a_non_member_is_refused(h: Harness) -> None:
    """U02 (sre, not breakglass) cannot break glass, and the attempt does not count as
    an ordinary approval either."""

    async def scenario() -> None:
        run_id = await waiting(h, "single")
        answer = await h.vote(run_id, "U02", breakglass=True, reason="hurry")
        assert outcome(answer) == ("refused", "not_breakglass")
        assert refusals(h, run_id) == [("U02", "not_breakglass")]
        assert h.store.get_run(run_id).status == "waiting"
        assert h.store.get_run(run_id).breakglass is False
        assert read_records("destructive") == []

    drive(h, scenario)


# --------------------------------------------------------------------------- lifecycle


def test_vote_on_a_finished_run_raises_and_is_recorded(h: Harness) -> None:
    """A late click after the run finished: UsageError for the voter, approval.refused
    (run_finished) on the timeline, and nothing runs again."""

    async def scenario() -> None:
        run_id = await waiting(h, "single")
        assert outcome(await h.vote(run_id, "U02")) == ("granted", None)
        await granted_and_done(h, run_id)
        with pytest.raises(UsageError, match="already finished"):
            await h.vote(run_id, "U03")
        assert refusals(h, run_id) == [("U03", "run_finished")]
        assert h.store.get_run(run_id).status == "succeeded"
        assert len(read_records("destructive")) == 1

    drive(h, scenario)


def test_gate_state_survives_a_worker_restart(h: Harness) -> None:
    """One approval, the worker stops and a new one starts: the approval still counts
    and a second approver grants the gate."""

    async def scenario() -> None:
        run_id = await waiting(h)
        assert outcome(await h.vote(run_id, "U02")) == ("counted", None)
        h.stop()
        await h.start()
        answer = await h.vote(run_id, "U03")
        assert outcome(answer) == ("granted", None)
        assert answer is not None
        assert answer["approvers"] == ["U02", "U03"]
        await granted_and_done(h, run_id)
        assert len(events(h, run_id, "approval.requested")) == 1

    drive(h, scenario)


# --------------------------------------------------------------------------- property

USERS = ["U01", "U02", "U03", "U04", "U05", "U09"]
VOTE_KINDS = ["approve", "approve", "approve", "reject", "breakglass", "bad-digest"]


@dataclass(frozen=True)
class GateShape:
    min: int
    allowed: tuple[str, ...]
    destructive: int


def playbook_text(shapes: list[GateShape]) -> str:
    lines = ["name: prop", "version: 1", "steps:"]
    for g, shape in enumerate(shapes):
        lines += [
            f"  - id: gate{g}",
            f"    approval: {{min: {shape.min}, from: [{', '.join(shape.allowed)}], ttl: 10m}}",
        ]
        for d in range(shape.destructive):
            lines += [
                f"  - id: wipe{g}x{d}",
                "    action: test.destructive",
                f"    with: {{target: t{g}x{d}}}",
            ]
    return "\n".join(lines) + "\n"


gate_shapes = st.builds(
    GateShape,
    min=st.integers(1, 3),
    allowed=st.sampled_from([("group:sre",), ("group:sre", "group:security"), ("user:U05",)]),
    destructive=st.integers(1, 2),
)
votes = st.lists(
    st.tuples(st.sampled_from(USERS), st.sampled_from(VOTE_KINDS)), min_size=1, max_size=4
)


async def settled(h: Harness, run_id: str) -> bool:
    """Wait until the run finished (True) or waits at an open gate (False)."""
    for _ in range(400):
        run = h.store.get_run(run_id)
        if run.status in client.FINISHED:
            return True
        if run.status == "waiting" and client.open_gate(h.store, run_id) is not None:
            return False
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} did not settle: {h.kinds(run_id)}")


async def cast(h: Harness, run_id: str, user: str, kind: str) -> None:
    if kind == "approve":
        await h.vote(run_id, user)
    elif kind == "reject":
        await h.vote(run_id, user, decision="reject", reason="not now")
    elif kind == "breakglass":
        await h.vote(run_id, user, breakglass=True, reason="on fire")
    else:
        await h.vote(run_id, user, digest="0" * 64)


def check_gates_held(h: Harness, run_id: str, shapes: list[GateShape]) -> None:
    """Every destructive call recorded belongs to a step whose gate was granted (or
    broken) earlier in the timeline, and each such call shows in the timeline after it."""
    timeline = h.store.events(run_id=run_id)
    position = {e.id: n for n, e in enumerate(timeline)}
    calls = read_records("destructive")
    assert all(r["key"].startswith(f"{run_id}:") for r in calls)
    called = [r["key"].split(":", 1)[1] for r in calls]
    assert len(called) == len(set(called)), called
    for g, shape in enumerate(shapes):
        opened = [
            e
            for e in timeline
            if e.step_id == f"gate{g}" and e.kind in ("approval.granted", "approval.breakglass")
        ]
        for d in range(shape.destructive):
            step = f"wipe{g}x{d}"
            done = [e for e in timeline if e.step_id == step and e.kind == "step.succeeded"]
            if step not in called:
                assert done == []
                continue
            assert opened, f"{step} ran but gate{g} was never granted: {[e.kind for e in timeline]}"
            assert len(done) == 1
            assert position[opened[0].id] < position[done[0].id]
            started = [e for e in timeline if e.kind.startswith("step.") and e.step_id == step]
            assert all(position[opened[0].id] < position[e.id] for e in started)


@contextlib.contextmanager
def fresh_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield Harness(tmp_path_factory.mktemp("gates"), None, monkeypatch)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(shapes=st.lists(gate_shapes, min_size=1, max_size=2), sequence=votes)
def test_destructive_step_never_starts_before_its_gate_is_satisfied(
    tmp_path_factory: pytest.TempPathFactory,
    shapes: list[GateShape],
    sequence: list[tuple[str, str]],
) -> None:
    """Random small gated playbooks and random vote sequences (approve, reject,
    break-glass, wrong digest; U01 requests): no destructive call of a step happens
    unless the timeline shows its gate granted before it (SQLite only)."""
    with fresh_harness(tmp_path_factory) as h:
        h.add_playbook(textwrap.dedent(playbook_text(shapes)))

        async def scenario() -> None:
            run_id = h.submit("prop", "U01")
            for user, kind in sequence:
                if await settled(h, run_id):
                    break
                await cast(h, run_id, user, kind)
            if not await settled(h, run_id):
                await asyncio.to_thread(client.cancel, h.settings, h.store, run_id, user="U02")
                await asyncio.sleep(0.2)
            check_gates_held(h, run_id, shapes)
            run = h.store.get_run(run_id)
            event(f"run {run.status}, {len(read_records('destructive'))} destructive call(s)")

        drive(h, scenario)
