"""``for_each``: a step's items as child workflows on a DBOS queue.

The queue is partitioned per run and step, so ``concurrency`` holds per fan-out while
every engine process (several on PostgreSQL) can take children; an action with a rate
class (Secrets Manager writes) gets a rate-limited queue of its own. Items go several to
a child (:func:`chunks`) unless the action is rate limited; each item is still its own
DBOS step with its own idempotency key and timeline event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dbos import DBOS, SetEnqueueOptions, SetWorkflowID

from bot.core import expressions
from bot.core.errors import ExpressionError
from bot.core.playbook import ActionStep, Compensation, Retry
from bot.engine import steps
from bot.engine.state import RunEnded, RunState, action_call, call_with_retries, fail

FANOUT_POLL_SECONDS = 0.1
"""How often each fan-out queue is polled, in every engine process, busy or idle. Since
items go several to a child, a fan-out meets a poll only when a child starts (not per
item), so 20 ms bought nothing measurable and cost an idle engine ~13% of a core (27 ->
14%, bench/RESULTS.md)."""
AWAIT_POLL_SECONDS = 0.2
"""The parent checks on its items this often: a wide poll of every item slows the items."""

RATE_LIMITS: dict[str, tuple[str, int, float]] = {
    # A rotation makes three writes (PutSecretValue, then UpdateSecretVersionStage twice).
    "aws.secretsmanager.rotate": ("secretsmanager-rotations", 14, 1.0),
    "aws.secretsmanager.put_value": ("secretsmanager-writes", 42, 1.0),
}
"""Action -> (class, limit, period) for fan-out items. Secrets Manager writes share
50 TPS per region: keep under 45 write calls a second, leaving room for other users.
DBOS's limiter admits a full period's worth at the start of each period, and measured 7%
over its limit on average (200 rotations at 15/s took 12.46 s: 48 writes/s,
bench/leak_bulk.py), hence 14 and 42."""


CHUNKED = "#chunked"
"""Marks a recorded fan-out queue whose items go several to a child workflow."""

CHUNKS_PER_SLOT = 2
"""Child workflows per unit of ``concurrency`` in a chunked fan-out. Each child works
its share of the items one after another, so at most ``concurrency`` items are in
flight; two per slot leave work for a second worker process to take and even out items
of uneven length."""


def chunks(count: int, concurrency: int) -> list[range]:
    """Contiguous ranges of item indexes, one per child workflow (in order, so a
    fan-out at concurrency 1 still works its items in order)."""
    parts = min(count, concurrency * CHUNKS_PER_SLOT)
    if parts == 0:
        return []
    size, extra = divmod(count, parts)
    ranges, start = [], 0
    for part in range(parts):
        end = start + size + (1 if part < extra else 0)
        ranges.append(range(start, end))
        start = end
    return ranges


def fanout_queue_name(concurrency: int, rate_class: str | None) -> str:
    suffix = f"-{rate_class}" if rate_class else ""
    return f"irbot-fanout-c{concurrency}{suffix}"


async def ensure_fanout_queue(concurrency: int, action: str | None) -> str:
    """Register (idempotently) the queue that runs one step's items ``concurrency`` at a
    time: partitioned per run and step, rate-limited when the action has a rate class."""
    limit = RATE_LIMITS.get(action or "")
    name = fanout_queue_name(concurrency, limit[0] if limit else None)
    if name not in _QUEUES:
        _QUEUES[name] = await DBOS.register_queue_async(
            name,
            partition_concurrency=concurrency,
            limiter={"limit": limit[1], "period": limit[2]} if limit else None,
            polling_interval_sec=FANOUT_POLL_SECONDS,
        )
    return name


_QUEUES: dict[str, Any] = {}
"""Queues this process registered or looked up, by name."""


def forget_queues() -> None:
    """Drop cached queue objects when DBOS is destroyed (they belong to that instance)."""
    _QUEUES.clear()


async def _queue(name: str) -> Any:
    if name not in _QUEUES:
        queue = await DBOS.retrieve_queue_async(name)
        if queue is None:  # pragma: no cover - steps.fanout_queue registers it first
            raise RuntimeError(f"queue {name} is not registered")
        _QUEUES[name] = queue
    return _QUEUES[name]


async def fan_out(state: RunState, step: ActionStep, policy: Retry, timeout: float | None) -> None:
    """Run ``step`` once per item of its ``for_each``; fail the run if any item failed."""
    spec = state.spec
    source = step.for_each
    try:
        if isinstance(source, list):
            items = expressions.render(source, state.context())
        else:
            items = expressions.evaluate(str(source), state.context(), bare=True)
    except ExpressionError as exc:
        await fail(state, step.id, f"for_each could not be evaluated: {exc.message}")
    if items is None:
        items = []
    if not isinstance(items, list | tuple):
        await fail(state, step.id, f"for_each must give a list, got {type(items).__name__}")
    calls = []
    for index, item in enumerate(items):
        ctx = state.context(item, with_item=True)
        try:
            args = expressions.render(step.with_, ctx)
        except ExpressionError as exc:
            await fail(state, step.id, f"arguments for item {index} ({item!r}): {exc.message}")
        calls.append(
            action_call(
                state,
                step.id,
                step.action,
                args,
                item_index=index,
                optional=step.optional,
                timeout=timeout,
            )
        )
    planned = await steps.fanout_queue(step.concurrency, step.action)
    queue = await _queue(planned.removesuffix(CHUNKED))
    retry = policy.model_dump(mode="json")
    # Each item's compensations are rendered here, not in its child: a child used to get
    # the whole context (inputs, every step's outputs, the trigger) to render them from,
    # stored by DBOS with every child: 0.73 MB of inputs for a 2,000-item fan-out over
    # an input list, 0.18 MB without (and more with big outputs before the fan-out).
    jobs = [
        {
            "call": call,
            "retry": retry,
            "compensations": _compensations(
                step.id, step.on_failure, state.context(items[index], with_item=True)
            ),
        }
        for index, call in enumerate(calls)
    ]
    partition = f"{spec.run_id}:{step.id}"
    if planned.endswith(CHUNKED):
        # Several items to a child workflow: a child's bookkeeping in DBOS (enqueue,
        # dequeue, status, completion) cost ~10 ms per item when each item had one.
        parts = chunks(len(jobs), step.concurrency)
        ids = [
            await _enqueue(
                queue,
                f"{partition}:{part.start}-{part.stop - 1}",
                partition,
                run_items,
                jobs[part.start : part.stop],
            )
            for part in parts
        ]
        finished = await steps.await_items(ids, AWAIT_POLL_SECONDS)
        ordered = [
            result
            for part, out in zip(parts, finished, strict=True)
            for result in out.get("results", [out] * len(part))  # a failed child: each item
        ]
    else:  # rate-limited actions (the limiter counts child workflows), and older runs
        ids = [
            await _enqueue(queue, f"{partition}:{index}", partition, run_item, job)
            for index, job in enumerate(jobs)
        ]
        ordered = await steps.await_items(ids, AWAIT_POLL_SECONDS)
    state.outputs[step.id] = [r.get("outputs", {}) for r in ordered]
    failed = [str(items[n]) for n, r in enumerate(ordered) if r["status"] == "failed"]
    if failed:
        state.statuses[step.id] = "failed"
        raise RunEnded("failed", f"step {step.id!r} failed for {', '.join(failed)}")
    state.statuses[step.id] = "succeeded"


async def _enqueue(queue: Any, workflow_id: str, partition: str, fn: Any, arg: Any) -> str:
    with SetWorkflowID(workflow_id), SetEnqueueOptions(queue_partition_key=partition):
        handle = await queue.enqueue_async(fn, arg)
    return str(handle.workflow_id)


@DBOS.workflow(name="irbot.item")
async def run_item(job: dict[str, Any]) -> dict[str, Any]:
    """One item of a for_each fan-out: the action with its retries, then its on_failure."""
    return await _item(job)


@DBOS.workflow(name="irbot.items")
async def run_items(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """A share of a for_each fan-out's items, one after another (see :func:`chunks`)."""
    return {"results": [await _item(job) for job in jobs]}


def _compensations(
    step_id: str, comps: list[Compensation], ctx: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """An item's on_failure calls, rendered: {id, action, args, timeout}."""
    rendered = []
    for number, comp in enumerate(comps):
        try:
            args = expressions.render(comp.with_, ctx)
        except ExpressionError as exc:
            args = {"_unrendered": exc.message}  # fails the action's input check, by name
        rendered.append(
            {
                "id": comp.id or f"{step_id}.on_failure.{number}",
                "action": comp.action,
                "args": args,
                "timeout": comp.timeout.total_seconds() if comp.timeout else None,
            }
        )
    return rendered


async def _item(job: dict[str, Any]) -> dict[str, Any]:
    call = job["call"]
    result = await call_with_retries(call, Retry.model_validate(job["retry"]))
    if result["status"] != "failed":
        return result
    if "compensations" in job:
        comps = job["compensations"]
    else:  # an item enqueued before compensations were rendered by the parent
        models = [Compensation.model_validate(c) for c in job["on_failure"]]
        comps = _compensations(call["step_id"], models, job["context"])
    for comp in comps:
        await steps.call_action(
            {
                **call,
                "step_id": comp["id"],
                "action": comp["action"],
                "args": comp["args"],
                "timeout": comp["timeout"],
                "optional": False,
                "attempt": 1,
                "attempts": 1,
            }
        )
    return result
