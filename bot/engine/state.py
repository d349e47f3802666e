"""What a run's workflow carries from step to step, and what every kind of step uses:
ending the run, calling an action with its retries, answering the person who sent a
message to the run."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from dbos import DBOS

from bot.core.playbook import Retry
from bot.core.retry import delay
from bot.core.timeline import STEP_FAILED
from bot.engine import steps
from bot.engine.spec import RunSpec


class RunEnded(Exception):
    """Stops interpretation with a final status (failed, rejected, expired)."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class RunState:
    """A run in progress: its spec, and each finished step's status and outputs."""

    spec: RunSpec
    started_at: str
    outputs: dict[str, Any] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    breakglass: bool = False
    guard: dict[str, str] = field(default_factory=dict)
    """Step id -> the gate that covers it (bot.core.coverage)."""

    async def record(
        self, step_id: str | None, kind: str, payload: dict[str, Any], **kw: Any
    ) -> None:
        """Append a timeline event for this run (a DBOS step)."""
        await steps.record(self.spec.run_id, self.spec.incident_id, step_id, kind, payload, **kw)

    def context(self, item: Any = None, with_item: bool = False) -> dict[str, Any]:
        """What expressions see (``steps`` is a live view)."""
        spec = self.spec
        ctx: dict[str, Any] = {
            "inputs": spec.inputs,
            "steps": StepsView(self),
            "run": {
                "id": spec.run_id,
                "requester": spec.requester,
                "playbook": spec.playbook,
                "started_at": self.started_at,
                "trigger": spec.trigger or {},
            },
            "incident": {"id": spec.incident_id, **spec.incident},
        }
        if with_item:
            ctx["item"] = item
        return ctx


class StepsView(Mapping[str, dict[str, Any]]):
    """``steps`` in expressions: each step's status and outputs, read when used. Built
    in full for every step, it made a run quadratic in its length (a 500-step run spent
    ~6% of its time there, bench/engine_overhead.py)."""

    def __init__(self, state: RunState) -> None:
        self._state = state

    def __getitem__(self, step_id: str) -> dict[str, Any]:
        status = self._state.statuses[step_id]
        return {"outputs": self._state.outputs.get(step_id, {}), "status": status}

    def __iter__(self) -> Iterator[str]:
        return iter(self._state.statuses)

    def __len__(self) -> int:
        return len(self._state.statuses)


async def fail(state: RunState, step_id: str, detail: str) -> NoReturn:
    """Record the step as failed and end the run with it."""
    state.statuses[step_id] = "failed"
    await state.record(step_id, STEP_FAILED, {"error": detail})
    raise RunEnded("failed", f"step {step_id!r} failed: {detail}")


def action_call(
    state: RunState,
    step_id: str,
    action: str,
    args: Any,
    *,
    item_index: int | None,
    optional: bool = False,
    timeout: float | None = None,
) -> dict[str, Any]:
    """What :func:`bot.engine.steps.call_action` needs for one call (plus the attempt)."""
    return {
        "run_id": state.spec.run_id,
        "incident_id": state.spec.incident_id,
        "step_id": step_id,
        "action": action,
        "args": args,
        "item_index": item_index,
        "optional": optional,
        "timeout": timeout,
        "trigger": state.spec.trigger or {},
    }


async def call_with_retries(call: dict[str, Any], policy: Retry) -> dict[str, Any]:
    """Attempt an action until it succeeds, fails for good, or attempts run out."""
    key = f"{call['run_id']}:{call['step_id']}:{call['item_index']}"
    result: dict[str, Any] = {}
    for attempt in range(1, policy.attempts + 1):
        result = await steps.call_action({**call, "attempt": attempt, "attempts": policy.attempts})
        if result["status"] != "failed" or not result.get("retryable"):
            return result
        if attempt < policy.attempts:
            await DBOS.sleep_async(delay(policy, attempt, key))
    return result


async def reply_to(message: Any, payload: dict[str, Any]) -> None:
    """Tell the person who answered (CLI, Slack) what became of it."""
    answer_id = message.get("vote_id") if isinstance(message, dict) else None
    if answer_id:
        await DBOS.set_event_async(f"vote:{answer_id}", payload)
