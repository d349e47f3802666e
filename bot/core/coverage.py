"""Which approval gate guards which step — one rule shared by validator, plan and engine.

A gate with ``covers`` guards exactly the steps it names. A gate without it guards
every step after it that needs a gate, up to the next gate. A step needs a gate if
its action is destructive or one of its ``on_failure`` actions is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bot.core.catalog import ActionSpec
from bot.core.playbook import ActionStep, ApprovalStep, Step


def needs_gate(step: Step, catalog: Mapping[str, ActionSpec]) -> bool:
    if not isinstance(step, ActionStep):
        return False
    actions = [step.action, *(c.action for c in step.on_failure)]
    return any(name in catalog and catalog[name].destructive for name in actions)


def covered_by(steps: Sequence[Step], catalog: Mapping[str, ActionSpec]) -> dict[str, str]:
    """Map each guarded step id to the id of the first gate before it that covers it.

    Steps that need a gate but are missing from the result are unguarded (an error).
    """
    guard: dict[str, str] = {}
    position = {step.id: index for index, step in enumerate(steps)}
    current_implicit: str | None = None
    for index, step in enumerate(steps):
        if isinstance(step, ApprovalStep):
            covers = step.approval.covers
            current_implicit = None if covers is not None else step.id
            for target in covers or ():
                if position.get(target, -1) > index:
                    guard.setdefault(target, step.id)
        elif needs_gate(step, catalog) and current_implicit is not None:
            guard.setdefault(step.id, current_implicit)
    return guard


def gate_targets(steps: Sequence[Step], catalog: Mapping[str, ActionSpec]) -> dict[str, list[str]]:
    """The inverse of :func:`covered_by`: gate id -> the step ids it guards, in order."""
    targets: dict[str, list[str]] = {s.id: [] for s in steps if isinstance(s, ApprovalStep)}
    for step_id, gate_id in covered_by(steps, catalog).items():
        targets[gate_id].append(step_id)
    order = {step.id: index for index, step in enumerate(steps)}
    for ids in targets.values():
        ids.sort(key=order.__getitem__)
    return targets
