"""The DBOS workflows that interpret a pinned playbook.

Workflow code here is deterministic: it only computes from the pinned playbook, the
inputs and the recorded results of steps. Everything else — calling actions, reading
the clock or irbot.yaml, writing the timeline — happens in the DBOS steps of
:mod:`bot.engine.steps`, whose results DBOS records and replays after a crash. Gates
are in :mod:`bot.engine.gates`, fan-outs in :mod:`bot.engine.fanout`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from dbos import DBOS, SetWorkflowID

from bot.core import expressions, tasks
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
    Step,
    WaitStep,
)
from bot.core.retry import NO_RETRY
from bot.core.timeline import (
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
from bot.engine.fanout import fan_out
from bot.engine.gates import run_gate
from bot.engine.spec import RunSpec
from bot.engine.state import RunEnded, RunState, action_call, call_with_retries, fail, reply_to

MANUAL_DEFAULT_TTL = timedelta(days=30)


def manual_topic(step_id: str) -> str:
    return f"manual:{step_id}"


@DBOS.workflow(name="irbot.run")
async def run_playbook(spec_data: dict[str, Any]) -> dict[str, Any]:
    """One run of one pinned playbook; returns ``{"status": …, "detail": …}``."""
    spec = RunSpec.from_dict(spec_data)
    started = await steps.start_run(spec.to_dict())
    state = RunState(spec, started)
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


async def _run_step(state: RunState, step: Step) -> None:
    if step.when is not None:
        try:
            go = expressions.truthy(step.when, state.context())
        except ExpressionError as exc:
            await fail(state, step.id, f"`when` could not be evaluated: {exc.message}")
        if not go:
            state.statuses[step.id] = "skipped"
            await state.record(step.id, STEP_SKIPPED, {"reason": "when is false"})
            return
    if isinstance(step, ActionStep):
        await _action(state, step)
    elif isinstance(step, ApprovalStep):
        await run_gate(state, step)
    elif isinstance(step, ManualStep):
        await _manual(state, step)
    elif isinstance(step, WaitStep):
        await _wait(state, step)
    elif isinstance(step, PlaybookStep):
        await _child(state, step)


# --------------------------------------------------------------------------- actions


async def _compensate(
    state: RunState,
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
                **action_call(state, comp_id, comp.action, args, item_index=index, timeout=timeout),
                "attempt": 1,
                "attempts": 1,
            }
        )


async def _action(state: RunState, step: ActionStep) -> None:
    if needs_gate(step, default_catalog()):
        gate_id = state.guard.get(step.id)
        if gate_id is None or state.statuses.get(gate_id) != "succeeded":
            # The validator already refuses such playbooks; this is the run-time net.
            await fail(
                state, step.id, "refused: a destructive step whose approval gate is not satisfied"
            )
    policy = step.retry or NO_RETRY
    timeout = step.timeout.total_seconds() if step.timeout else None
    if step.for_each is None:
        ctx = state.context()
        try:
            args = expressions.render(step.with_, ctx)
        except ExpressionError as exc:
            await fail(state, step.id, f"arguments could not be resolved: {exc.message}")
        call = action_call(
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
    await fan_out(state, step, policy, timeout)


# --------------------------------------------------------------------------- manual, wait, child


async def _manual(state: RunState, step: ManualStep) -> None:
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
        await fail(state, step.id, f"the task could not be resolved: {exc.message}")
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
            await fail(state, step.id, "the manual task was not completed in time")
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
            await reply_to(message, {"outcome": "refused", **payload})
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
    await reply_to(message, {"outcome": "accepted", "user": answer.user, "reason": decision.reason})
    if answer.status == "failed":
        await fail(state, step.id, decision.reason)
    state.statuses[step.id] = "succeeded"
    state.outputs[step.id] = outputs


async def _wait(state: RunState, step: WaitStep) -> None:
    try:
        text = expressions.render(step.wait, state.context())
        seconds = parse_duration(str(text)).total_seconds()
    except (ExpressionError, ValueError) as exc:
        await fail(state, step.id, f"wait duration: {exc}")
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


async def _child(state: RunState, step: PlaybookStep) -> None:
    spec = state.spec
    source = spec.library.get(step.playbook)
    if source is None:
        await fail(state, step.id, f"sub-playbook {step.playbook!r} was not pinned with the run")
    try:
        raw = expressions.render(step.with_, state.context())
    except ExpressionError as exc:
        await fail(state, step.id, f"arguments could not be resolved: {exc.message}")
    child_id = f"{spec.run_id}.{step.id}"
    child = await steps.prepare_child(spec.to_dict(), child_id, step.playbook, raw)
    if "error" in child:
        await fail(state, step.id, child["error"])
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
