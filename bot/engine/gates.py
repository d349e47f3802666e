"""Approval gates inside a run: the plan digest, waiting for votes, deciding each one
with the pure rules of :mod:`bot.core.approvals`, and recording every attempt."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from dbos import DBOS

from bot.core import approvals, expressions, plan
from bot.core.catalog import default_catalog
from bot.core.errors import ExpressionError
from bot.core.playbook import ApprovalStep
from bot.core.timeline import (
    APPROVAL_BREAKGLASS,
    APPROVAL_COUNTED,
    APPROVAL_EXPIRED,
    APPROVAL_GRANTED,
    APPROVAL_REFUSED,
    APPROVAL_REJECTED,
    APPROVAL_REQUESTED,
)
from bot.engine import steps
from bot.engine.state import RunEnded, RunState, reply_to


def gate_topic(step_id: str) -> str:
    return f"gate:{step_id}"


async def run_gate(state: RunState, step: ApprovalStep) -> None:
    """Record the request, then wait for votes until the gate is passed, rejected or
    expired (the last two end the run)."""
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
    await _request(state, step, gate, material)
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


async def _request(
    state: RunState, step: ApprovalStep, gate: approvals.Gate, material: dict[str, Any]
) -> None:
    """``approval.requested``: the digest, who may approve, and what they let run."""
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
            "digest": gate.digest,
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
    state: RunState,
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
    await reply_to(message, payload)
