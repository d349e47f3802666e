"""The DBOS workflows that interpret a pinned playbook.

Workflow code here is deterministic: it only computes from the pinned playbook, the
inputs and the recorded results of steps. Everything else — calling actions, reading
the clock or irbot.yaml, writing the timeline — happens in the DBOS steps of
:mod:`bot.engine.steps`, whose results DBOS records and replays after a crash.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NoReturn

from dbos import DBOS, SetEnqueueOptions, SetWorkflowID

from bot.core import approvals, expressions, plan, tasks
from bot.core.catalog import default_catalog
from bot.core.coverage import covered_by, needs_gate
from bot.core.durations import parse_duration
from bot.core.errors import ExpressionError, PlaybookInvalid, UsageError
from bot.core.playbook import (
    ActionStep,
    ApprovalStep,
    Compensation,
    ManualStep,
    PlaybookStep,
    Retry,
    Step,
    WaitStep,
)
from bot.core.retry import NO_RETRY, delay
from bot.core.timeline import (
    APPROVAL_BREAKGLASS,
    APPROVAL_COUNTED,
    APPROVAL_EXPIRED,
    APPROVAL_GRANTED,
    APPROVAL_REFUSED,
    APPROVAL_REJECTED,
    APPROVAL_REQUESTED,
    MANUAL_COMPLETED,
    MANUAL_REFUSED,
    MANUAL_REQUESTED,
    RUN_EXPIRED,
    RUN_FAILED,
    RUN_FINISHED,
    STEP_FAILED,
    STEP_SKIPPED,
    WAIT_FINISHED,
    WAIT_STARTED,
)
from bot.engine import steps
from bot.engine.spec import RunSpec

FANOUT_POLL_SECONDS = 0.1
"""How often each fan-out queue is polled, in every engine process, busy or idle. Since
items go several to a child, a fan-out meets a poll only when a child starts (not per
item), so 20 ms bought nothing measurable and cost an idle engine ~13% of a core (27 ->
14%, bench/RESULTS.md)."""
AWAIT_POLL_SECONDS = 0.2
"""The parent checks on its items this often: a wide poll of every item slows the items."""
MANUAL_DEFAULT_TTL = timedelta(days=30)

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


def gate_topic(step_id: str) -> str:
    return f"gate:{step_id}"


def manual_topic(step_id: str) -> str:
    return f"manual:{step_id}"


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


class RunEnded(Exception):
    """Stops interpretation with a final status (failed, rejected, expired)."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class _State:
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
            "steps": _StepsView(self),
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


class _StepsView(Mapping[str, dict[str, Any]]):
    """``steps`` in expressions: each step's status and outputs, read when used. Built
    in full for every step, it made a run quadratic in its length (a 500-step run spent
    ~6% of its time there, bench/engine_overhead.py)."""

    def __init__(self, state: _State) -> None:
        self._state = state

    def __getitem__(self, step_id: str) -> dict[str, Any]:
        status = self._state.statuses[step_id]
        return {"outputs": self._state.outputs.get(step_id, {}), "status": status}

    def __iter__(self) -> Iterator[str]:
        return iter(self._state.statuses)

    def __len__(self) -> int:
        return len(self._state.statuses)


@DBOS.workflow(name="irbot.run")
async def run_playbook(spec_data: dict[str, Any]) -> dict[str, Any]:
    """One run of one pinned playbook; returns ``{"status": …, "detail": …}``."""
    spec = RunSpec.from_dict(spec_data)
    started = await steps.start_run(spec.to_dict())
    state = _State(spec, started)
    try:
        try:
            book = spec.loaded.playbook
        except PlaybookInvalid as exc:  # e.g. an action left the catalog in an upgrade
            raise RunEnded("failed", f"the pinned playbook no longer loads: {exc.show()}") from exc
        state.guard = covered_by(book.steps, default_catalog())
        for step in book.steps:
            await _run_step(state, step)
    except RunEnded as end:
        kind = RUN_EXPIRED if end.status == "expired" else RUN_FAILED
        await steps.finish_run(spec.run_id, spec.incident_id, end.status, end.detail, kind)
        return {"status": end.status, "detail": end.detail}
    detail = "all steps done" + (" (break-glass used)" if state.breakglass else "")
    await steps.finish_run(spec.run_id, spec.incident_id, "succeeded", detail, RUN_FINISHED)
    return {"status": "succeeded", "detail": detail, "outputs": state.outputs}


async def _run_step(state: _State, step: Step) -> None:
    if step.when is not None:
        try:
            go = expressions.truthy(step.when, state.context())
        except ExpressionError as exc:
            await _fail(state, step.id, f"`when` could not be evaluated: {exc.message}")
        if not go:
            state.statuses[step.id] = "skipped"
            await state.record(step.id, STEP_SKIPPED, {"reason": "when is false"})
            return
    if isinstance(step, ActionStep):
        await _action(state, step)
    elif isinstance(step, ApprovalStep):
        await _gate(state, step)
    elif isinstance(step, ManualStep):
        await _manual(state, step)
    elif isinstance(step, WaitStep):
        await _wait(state, step)
    elif isinstance(step, PlaybookStep):
        await _child(state, step)


async def _fail(state: _State, step_id: str, detail: str) -> NoReturn:
    state.statuses[step_id] = "failed"
    await state.record(step_id, STEP_FAILED, {"error": detail})
    raise RunEnded("failed", f"step {step_id!r} failed: {detail}")


# --------------------------------------------------------------------------- actions


def _call(
    state: _State,
    step_id: str,
    action: str,
    args: Any,
    *,
    item_index: int | None,
    optional: bool = False,
    timeout: float | None = None,
) -> dict[str, Any]:
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


async def _compensate(
    state: _State,
    step_id: str,
    comps: list[Compensation],
    ctx: Mapping[str, Any],
    index: int | None,
) -> None:
    for number, comp in enumerate(comps):
        comp_id = comp.id or f"{step_id}.on_failure.{number}"
        try:
            args = expressions.render(comp.with_, ctx)
        except ExpressionError as exc:
            await state.record(
                comp_id,
                STEP_FAILED,
                {"error": f"on_failure arguments: {exc.message}", "item": index},
            )
            continue
        timeout = comp.timeout.total_seconds() if comp.timeout else None
        await steps.call_action(
            {
                **_call(state, comp_id, comp.action, args, item_index=index, timeout=timeout),
                "attempt": 1,
                "attempts": 1,
            }
        )


async def _action(state: _State, step: ActionStep) -> None:
    if needs_gate(step, default_catalog()):
        gate_id = state.guard.get(step.id)
        if gate_id is None or state.statuses.get(gate_id) != "succeeded":
            # The validator already refuses such playbooks; this is the run-time net.
            await _fail(
                state, step.id, "refused: a destructive step whose approval gate is not satisfied"
            )
    policy = step.retry or NO_RETRY
    timeout = step.timeout.total_seconds() if step.timeout else None
    if step.for_each is None:
        ctx = state.context()
        try:
            args = expressions.render(step.with_, ctx)
        except ExpressionError as exc:
            await _fail(state, step.id, f"arguments could not be resolved: {exc.message}")
        call = _call(
            state,
            step.id,
            step.action,
            args,
            item_index=None,
            optional=step.optional,
            timeout=timeout,
        )
        result = await call_with_retries(call, policy)
        if result["status"] == "failed":
            await _compensate(state, step.id, step.on_failure, ctx, None)
            state.statuses[step.id] = "failed"
            raise RunEnded("failed", f"step {step.id!r} failed: {result['error']}")
        state.statuses[step.id] = result["status"]
        state.outputs[step.id] = result.get("outputs", {})
        return
    await _fan_out(state, step, policy, timeout)


async def _fan_out(state: _State, step: ActionStep, policy: Retry, timeout: float | None) -> None:
    spec = state.spec
    source = step.for_each
    try:
        if isinstance(source, list):
            items = expressions.render(source, state.context())
        else:
            items = expressions.evaluate(str(source), state.context(), bare=True)
    except ExpressionError as exc:
        await _fail(state, step.id, f"for_each could not be evaluated: {exc.message}")
    if items is None:
        items = []
    if not isinstance(items, list | tuple):
        await _fail(state, step.id, f"for_each must give a list, got {type(items).__name__}")
    calls = []
    for index, item in enumerate(items):
        ctx = state.context(item, with_item=True)
        try:
            args = expressions.render(step.with_, ctx)
        except ExpressionError as exc:
            await _fail(state, step.id, f"arguments for item {index} ({item!r}): {exc.message}")
        calls.append(
            _call(
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


# --------------------------------------------------------------------------- gates


async def _gate(state: _State, step: ApprovalStep) -> None:
    spec = state.spec
    catalog = default_catalog()
    loaded = spec.loaded
    ctx = plan.context(
        spec.inputs,
        outputs=state.outputs,
        run=state.context()["run"],
        incident=state.context()["incident"],
        step_ids=[s.id for s in loaded.playbook.steps],
    )
    material = plan.covered_material(loaded, step.id, spec.inputs, ctx, catalog)
    digest = plan.gate_digest(material)
    opened = datetime.fromisoformat(await steps.now())
    gate = approvals.Gate(
        gate_id=step.id,
        min=step.approval.min,
        allowed=tuple(step.approval.from_),
        requester=spec.requester,
        digest=digest,
        expires_at=opened + step.approval.ttl,
    )
    message = None
    if step.approval.message:
        try:
            message = expressions.render(step.approval.message, state.context())
        except ExpressionError:
            message = step.approval.message
    await state.record(
        step.id,
        APPROVAL_REQUESTED,
        {
            "gate": step.id,
            "digest": digest,
            "min": gate.min,
            "from": list(gate.allowed),
            "expires_at": gate.expires_at.isoformat(),
            "covers": [c["id"] for c in material["covered"]],
            # What the approvers are asked to let run, as they will see it in Slack.
            "targets": [
                {"id": c["id"], "action": c["action"], "with": c["with"]}
                for c in material["covered"]
            ],
            "message": message,
        },
        run_status="waiting",
    )
    tally = approvals.Tally.pending()
    votes = 0
    while True:
        now = datetime.fromisoformat(await steps.now())
        expired = approvals.expire(gate, tally, now)
        if expired is not None:
            await state.record(
                step.id,
                APPROVAL_EXPIRED,
                {"gate": step.id, "reason": expired.reason, "approvers": list(tally.approvers)},
            )
            raise RunEnded("expired", f"approval gate {step.id!r} expired: {expired.reason}")
        remaining = max((gate.expires_at - now).total_seconds(), 0.0)
        message_in = await DBOS.recv_async(gate_topic(step.id), timeout_seconds=remaining)
        if message_in is None:
            continue
        votes += 1
        vote, problem = _vote(message_in, now)
        membership = await steps.group_map()
        groups = membership["groups"]
        gate = replace(gate, breakglass_group=membership["breakglass_group"])
        now = datetime.fromisoformat(await steps.now())
        if vote is None:
            decision = approvals.Decision(
                approvals.Outcome.REFUSED, tally, problem or "malformed vote", "malformed"
            )
        else:
            vote = replace(vote, at=now)
            decision = approvals.decide(gate, tally, vote, groups, now)
        tally = decision.tally
        await _record_vote(
            state, gate_id=step.id, number=votes, message=message_in, decision=decision, gate=gate
        )
        if decision.outcome in (approvals.Outcome.GRANTED, approvals.Outcome.BREAKGLASS):
            break
        if decision.outcome is approvals.Outcome.REJECTED:
            raise RunEnded("rejected", f"rejected at gate {step.id!r}: {tally.reason}")
        if decision.outcome is approvals.Outcome.EXPIRED:
            raise RunEnded("expired", f"approval gate {step.id!r} expired")
    state.breakglass = state.breakglass or tally.breakglass_by is not None
    state.statuses[step.id] = "succeeded"
    state.outputs[step.id] = {
        "approvers": list(tally.approvers),
        "breakglass": tally.breakglass_by is not None,
        "digest": digest,
    }
    await steps.set_run_status(spec.run_id, "running", breakglass=state.breakglass or None)


def _vote(message: Any, now: datetime) -> tuple[approvals.Vote | None, str | None]:
    if not isinstance(message, dict):
        return None, "malformed vote"
    try:
        return (
            approvals.Vote(
                user=str(message["user"]),
                decision=message["decision"],
                plan_digest=str(message.get("plan_digest", "")),
                reason=message.get("reason"),
                breakglass=bool(message.get("breakglass", False)),
                at=now,
            ),
            None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        return None, f"malformed vote: {exc}"


_VOTE_KINDS = {
    approvals.Outcome.COUNTED: APPROVAL_COUNTED,
    approvals.Outcome.GRANTED: APPROVAL_GRANTED,
    approvals.Outcome.REFUSED: APPROVAL_REFUSED,
    approvals.Outcome.REJECTED: APPROVAL_REJECTED,
    approvals.Outcome.EXPIRED: APPROVAL_EXPIRED,
    approvals.Outcome.BREAKGLASS: APPROVAL_BREAKGLASS,
}


async def _record_vote(
    state: _State,
    *,
    gate_id: str,
    number: int,
    message: Any,
    decision: approvals.Decision,
    gate: approvals.Gate,
) -> None:
    user = message.get("user") if isinstance(message, dict) else None
    payload = {
        "gate": gate_id,
        "vote": number,
        "user": user,
        "decision": message.get("decision") if isinstance(message, dict) else None,
        "outcome": decision.outcome.value,
        "code": decision.code,
        "reason": decision.reason,
        "plan_digest": message.get("plan_digest") if isinstance(message, dict) else None,
        "approvers": list(decision.tally.approvers),
        "summary": approvals.summary(gate, decision.tally),
    }
    await state.record(
        gate_id,
        _VOTE_KINDS[decision.outcome],
        payload,
        actor=f"user:{user}" if user else "irbot",
        discriminator=number,
    )
    vote_id = message.get("vote_id") if isinstance(message, dict) else None
    if vote_id:
        await DBOS.set_event_async(f"vote:{vote_id}", payload)


# --------------------------------------------------------------------------- manual, wait, child


async def _manual(state: _State, step: ManualStep) -> None:
    """Post a task and wait for an assignee to mark it done or failed (before ``ttl``)."""
    spec = state.spec
    try:
        instructions = expressions.render(step.manual.instructions, state.context())
        assignee = (
            expressions.render(step.manual.assignee, state.context())
            if step.manual.assignee
            else None
        )
    except ExpressionError as exc:
        await _fail(state, step.id, f"the task could not be resolved: {exc.message}")
    principals = tasks.assignee_principals(
        str(assignee) if assignee is not None else None, spec.requester
    )
    needs_secret = step.manual.secret is not None
    ttl = step.manual.ttl or MANUAL_DEFAULT_TTL
    opened = datetime.fromisoformat(await steps.now())
    deadline = opened + ttl
    await state.record(
        step.id,
        MANUAL_REQUESTED,
        {
            "instructions": instructions,
            "assignee": ", ".join(principals),
            "secret_input": needs_secret,
            "secret_label": step.manual.secret.label if step.manual.secret else None,
            "ttl": int(ttl.total_seconds()),
            "expires_at": deadline.isoformat(),
        },
        run_status="waiting",
    )
    answers = 0
    while True:
        now = datetime.fromisoformat(await steps.now())
        remaining = (deadline - now).total_seconds()
        if remaining <= 0:
            await _fail(state, step.id, "the manual task was not completed in time")
        message = await DBOS.recv_async(manual_topic(step.id), timeout_seconds=remaining)
        if message is None:
            continue
        answers += 1
        membership = await steps.group_map()
        try:
            answer = tasks.parse_answer(message)
            decision = tasks.decide_task(
                answer, principals, membership["groups"], needs_secret=needs_secret
            )
        except UsageError as exc:
            answer, decision = None, tasks.TaskDecision(False, exc.message, "malformed")
        user = message.get("user") if isinstance(message, dict) else None
        if not decision.accepted or answer is None:
            payload = {"user": user, "code": decision.code, "reason": decision.reason}
            await state.record(
                step.id,
                MANUAL_REFUSED,
                payload,
                actor=f"user:{user}" if user else "irbot",
                discriminator=answers,
            )
            await _answer(message, {"outcome": "refused", **payload})
            continue
        break
    outputs = {
        "completed_by": answer.user,
        "status": answer.status,
        "note": answer.note,
        "secret_ref": answer.secret_ref,
    }
    await state.record(
        step.id, MANUAL_COMPLETED, outputs, actor=f"user:{answer.user}", run_status="running"
    )
    await _answer(message, {"outcome": "accepted", "user": answer.user, "reason": decision.reason})
    if answer.status == "failed":
        await _fail(state, step.id, decision.reason)
    state.statuses[step.id] = "succeeded"
    state.outputs[step.id] = outputs


async def _answer(message: Any, payload: dict[str, Any]) -> None:
    """Tell the person who answered (CLI, Slack) what became of it."""
    answer_id = message.get("vote_id") if isinstance(message, dict) else None
    if answer_id:
        await DBOS.set_event_async(f"vote:{answer_id}", payload)


async def _wait(state: _State, step: WaitStep) -> None:
    try:
        text = expressions.render(step.wait, state.context())
        seconds = parse_duration(str(text)).total_seconds()
    except (ExpressionError, ValueError) as exc:
        await _fail(state, step.id, f"wait duration: {exc}")
    start = datetime.fromisoformat(await steps.now())
    until = start + timedelta(seconds=seconds)
    await state.record(
        step.id,
        WAIT_STARTED,
        {"until": until.isoformat()},
        run_status="waiting",
    )
    await DBOS.sleep_async(seconds)
    await state.record(
        step.id,
        WAIT_FINISHED,
        {"until": until.isoformat()},
        run_status="running",
    )
    state.statuses[step.id] = "succeeded"
    state.outputs[step.id] = {"until": until.isoformat()}


async def _child(state: _State, step: PlaybookStep) -> None:
    spec = state.spec
    source = spec.library.get(step.playbook)
    if source is None:
        await _fail(state, step.id, f"sub-playbook {step.playbook!r} was not pinned with the run")
    try:
        raw = expressions.render(step.with_, state.context())
    except ExpressionError as exc:
        await _fail(state, step.id, f"arguments could not be resolved: {exc.message}")
    child_id = f"{spec.run_id}.{step.id}"
    child = await steps.prepare_child(spec.to_dict(), child_id, step.playbook, raw)
    if "error" in child:
        await _fail(state, step.id, child["error"])
    with SetWorkflowID(child_id):
        handle = await DBOS.start_workflow_async(run_playbook, child)
    result = await handle.get_result()
    state.outputs[step.id] = {
        "run_id": child_id,
        "status": result["status"],
        "incident_id": spec.incident_id,
    }
    if result["status"] != "succeeded":
        state.statuses[step.id] = "failed"
        raise RunEnded(result["status"], f"sub-playbook {step.playbook}: {result['detail']}")
    state.statuses[step.id] = "succeeded"
