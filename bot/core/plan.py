"""What a run would do, resolved as far as it can be, and the digest approvers sign.

The plan digest is the SHA-256 of the canonical JSON of: the playbook's name, version
and content hash, the inputs, and — for each step a gate covers — the action and its
resolved arguments (per item for ``for_each``), with its ``on_failure`` actions.
Values not known yet (outputs of steps that have not run) appear as
``<steps.x.outputs.y>``, so the digest is the same whether it is computed by
``irbot playbook plan`` or by the gate in a run, as long as what it covers is the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.core import expressions
from bot.core.catalog import ActionSpec, default_catalog
from bot.core.coverage import covered_by, gate_targets, needs_gate
from bot.core.durations import format_duration
from bot.core.errors import ExpressionError
from bot.core.playbook import ActionStep, ApprovalStep, ManualStep, PlaybookStep, Step, WaitStep
from bot.core.validate import LoadedPlaybook


def _strict(value: Any) -> Any:
    if isinstance(value, expressions.Unresolved):
        return str(value)
    # Anything else (a method, an object) could print a memory address and make the
    # digest differ between processes: refuse it loudly instead.
    raise TypeError(f"cannot put {type(value).__name__} into a plan digest")


def canonical_json(value: Any) -> str:
    """Stable JSON: sorted keys, no spaces; only plain data and placeholders."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_strict
    )


def sha256_hex(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


@dataclass
class PlannedStep:
    id: str
    kind: str
    title: str
    action: str | None = None
    destructive: bool = False
    guarded_by: str | None = None
    arguments: Any = None
    """Resolved ``with`` (a list of them, one per item, for ``for_each``)."""
    items: list[Any] | str | None = None
    when: Any = None
    detail: str | None = None
    compensations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PlannedGate:
    id: str
    min: int
    approvers: list[str]
    ttl: str
    covers: list[str]
    digest: str


@dataclass
class Plan:
    playbook: str
    version: int
    sha256: str
    inputs: dict[str, Any]
    steps: list[PlannedStep]
    gates: list[PlannedGate]

    def to_dict(self) -> dict[str, Any]:
        return json.loads(canonical_json(asdict(self)))  # type: ignore[no-any-return]


def context(
    inputs: Mapping[str, Any],
    *,
    outputs: Mapping[str, Any] | None = None,
    run: Mapping[str, Any] | None = None,
    incident: Mapping[str, Any] | None = None,
    step_ids: list[str] | None = None,
) -> dict[str, Any]:
    """The expression context; unknown run/incident/step values become placeholders."""
    known = dict(outputs or {})
    steps: dict[str, Any] = {}
    for step_id in step_ids or []:
        if step_id in known:
            steps[step_id] = {"outputs": known[step_id], "status": "succeeded"}
        else:
            steps[step_id] = expressions.Unresolved(f"steps.{step_id}")
    return {
        "inputs": dict(inputs),
        "steps": steps,
        "run": run if run is not None else expressions.Unresolved("run"),
        "incident": incident if incident is not None else expressions.Unresolved("incident"),
    }


def _placeholders_to_text(value: Any) -> Any:
    if isinstance(value, expressions.Unresolved):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _placeholders_to_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_placeholders_to_text(v) for v in value]
    return value


def _render(value: Any, ctx: Mapping[str, Any]) -> Any:
    try:
        return _placeholders_to_text(expressions.render(value, ctx))
    except ExpressionError:
        return value  # shown as written; the run resolves it


def _items(step: ActionStep, ctx: Mapping[str, Any]) -> list[Any] | str | None:
    if step.for_each is None:
        return None
    if isinstance(step.for_each, list):
        return list(_render(step.for_each, ctx))
    try:
        value = expressions.evaluate(step.for_each, ctx, bare=True)
    except ExpressionError:
        return step.for_each
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(_placeholders_to_text(value))
    return step.for_each if isinstance(value, expressions.Unresolved) else [value]


def _arguments(step: ActionStep, ctx: Mapping[str, Any], items: list[Any] | str | None) -> Any:
    if isinstance(items, list):
        return [_render(step.with_, {**ctx, "item": item}) for item in items]
    item_ctx = {**ctx, "item": expressions.Unresolved("item")} if items is not None else ctx
    return _render(step.with_, item_ctx)


def covered_material(
    loaded: LoadedPlaybook,
    gate_id: str,
    inputs: Mapping[str, Any],
    ctx: Mapping[str, Any],
    catalog: Mapping[str, ActionSpec],
) -> dict[str, Any]:
    """Exactly what a gate's approvers sign (hashed by :func:`gate_digest`)."""
    book = loaded.playbook
    targets = gate_targets(book.steps, catalog).get(gate_id, [])
    covered = []
    for step_id in targets:
        step = book.step(step_id)
        assert isinstance(step, ActionStep)
        items = _items(step, ctx)
        covered.append(
            {
                "id": step.id,
                "action": step.action,
                "items": items,
                "with": _arguments(step, ctx, items),
                "on_failure": [{"action": c.action, "with": c.with_} for c in step.on_failure],
            }
        )
    return {
        "playbook": book.name,
        "version": book.version,
        "sha256": loaded.sha256,
        "gate": gate_id,
        "inputs": dict(inputs),
        "covered": covered,
    }


def gate_digest(material: Mapping[str, Any]) -> str:
    return sha256_hex(material)


def build(
    loaded: LoadedPlaybook,
    inputs: Mapping[str, Any],
    *,
    catalog: Mapping[str, ActionSpec] | None = None,
    outputs: Mapping[str, Any] | None = None,
    run: Mapping[str, Any] | None = None,
    incident: Mapping[str, Any] | None = None,
) -> Plan:
    """Resolve every step as far as the known values allow."""
    catalog = default_catalog() if catalog is None else catalog
    book = loaded.playbook
    ctx = context(
        inputs, outputs=outputs, run=run, incident=incident, step_ids=[s.id for s in book.steps]
    )
    guard = covered_by(book.steps, catalog)
    steps = [_plan_step(step, ctx, guard, catalog) for step in book.steps]
    gates = []
    for step in book.steps:
        if isinstance(step, ApprovalStep):
            material = covered_material(loaded, step.id, inputs, ctx, catalog)
            gates.append(
                PlannedGate(
                    id=step.id,
                    min=step.approval.min,
                    approvers=list(step.approval.from_),
                    ttl=format_duration(step.approval.ttl),
                    covers=[c["id"] for c in material["covered"]],
                    digest=gate_digest(material),
                )
            )
    return Plan(book.name, book.version, loaded.sha256, dict(inputs), steps, gates)


def _plan_step(
    step: Step, ctx: Mapping[str, Any], guard: Mapping[str, str], catalog: Mapping[str, ActionSpec]
) -> PlannedStep:
    when: bool | str | None = None
    if step.when is not None:
        try:
            when = expressions.truthy(step.when, ctx)
        except ExpressionError:
            when = step.when
    planned = PlannedStep(id=step.id, kind=step.kind, title=step.title, when=when)
    if isinstance(step, ActionStep):
        spec = catalog[step.action]
        planned.action = step.action
        planned.destructive = needs_gate(step, catalog)
        planned.guarded_by = guard.get(step.id)
        planned.items = _items(step, ctx)
        planned.arguments = _arguments(step, ctx, planned.items)
        planned.compensations = [{"action": c.action, "with": c.with_} for c in step.on_failure]
        if step.optional:
            planned.detail = f"optional: skipped if {spec.integration} is not configured"
    elif isinstance(step, ApprovalStep):
        who = ", ".join(step.approval.from_)
        planned.detail = (
            f"{step.approval.min} approvals from {who}, not the requester; "
            f"expires after {format_duration(step.approval.ttl)}"
        )
    elif isinstance(step, ManualStep):
        planned.arguments = _render(step.manual.instructions, ctx)
        planned.detail = f"assignee: {step.manual.assignee or 'the requester'}" + (
            "; asks for a secret" if step.manual.secret else ""
        )
    elif isinstance(step, WaitStep):
        planned.arguments = _render(step.wait, ctx)
        planned.detail = f"wait {planned.arguments}"
    elif isinstance(step, PlaybookStep):
        planned.arguments = _render(step.with_, ctx)
        planned.detail = f"runs playbook {step.playbook}"
    return planned
