"""Static validation of playbooks: every problem at once, each with file:line:column.

Checks, in the order a reader meets them:

* YAML syntax and duplicate keys (``yaml``, ``duplicate-key``)
* shape: unknown and missing keys, wrong types (``schema``)
* ``unknown-action``, ``with`` against the action's input model (``action-input``)
* expressions: syntax, blocked names, undefined references (``expression``, ``reference``)
* ``duplicate-step``, ``unreachable`` steps, gates (``gate``)
* the safety rule: a destructive step must stand behind a gate that covers it
  (``ungated-destructive``) — a playbook that breaks it does not load
* sub-playbooks: unknown names, their inputs, and cycles (see :mod:`bot.core.library`)
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from bot.core import expressions, pydantic_errors
from bot.core.catalog import ActionSpec, default_catalog
from bot.core.coverage import covered_by, needs_gate
from bot.core.diagnostics import Diagnostic, Location
from bot.core.errors import ExpressionError, PlaybookInvalid
from bot.core.playbook import (
    PRINCIPAL_PATTERN,
    ActionStep,
    ApprovalStep,
    InputSpec,
    ManualStep,
    Playbook,
    PlaybookStep,
    Step,
    Trigger,
    WaitStep,
)
from bot.core.yamlsrc import Path, SourceMap, YamlSourceError
from bot.core.yamlsrc import load as load_yaml

RUN_FIELDS = ("id", "requester", "playbook", "started_at", "trigger")
INCIDENT_FIELDS = ("id", "title", "severity", "url", "channel", "thread_ts")
KIND_OUTPUTS: dict[str, tuple[str, ...]] = {
    "approval": ("approvers", "breakglass", "digest"),
    "manual": ("completed_by", "status", "note", "secret_ref"),
    "wait": ("until",),
    "playbook": ("run_id", "status", "incident_id"),
}
STEP_ATTRIBUTES = ("outputs", "status")

_step_adapter: TypeAdapter[Step] = TypeAdapter(Step)
_trigger_adapter: TypeAdapter[Trigger] = TypeAdapter(Trigger)


@dataclass(frozen=True)
class LoadedPlaybook:
    """A playbook that passed validation, pinned to the exact text it came from."""

    playbook: Playbook
    file: str
    source: str
    sha256: str
    warnings: tuple[Diagnostic, ...] = ()

    @property
    def name(self) -> str:
        return self.playbook.name


@dataclass
class Result:
    """What checking one file found: the model if its shape is sound, and diagnostics."""

    file: str
    source: str
    playbook: Playbook | None
    smap: SourceMap | None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)

    def loaded(self) -> LoadedPlaybook:
        """The loaded playbook; raises :class:`PlaybookInvalid` if anything is wrong."""
        if not self.ok or self.playbook is None:
            raise PlaybookInvalid(sorted_diagnostics(self.diagnostics))
        digest = hashlib.sha256(self.source.encode()).hexdigest()
        warnings = tuple(d for d in self.diagnostics if d.severity == "warning")
        return LoadedPlaybook(self.playbook, self.file, self.source, digest, warnings)


def sorted_diagnostics(items: Iterable[Diagnostic]) -> list[Diagnostic]:
    unique = dict.fromkeys(items)
    return sorted(unique, key=lambda d: (d.location, d.code, d.message))


def check(text: str, file: str, catalog: Mapping[str, ActionSpec] | None = None) -> Result:
    """Check one playbook's text on its own (sub-playbooks are resolved by the library)."""
    catalog = default_catalog() if catalog is None else catalog
    try:
        data, smap, soft = load_yaml(text, file)
    except YamlSourceError as exc:
        return Result(file, text, None, None, list(exc.diagnostics))
    checker = _Checker(file, smap, catalog)
    checker.problems.extend(soft)
    playbook = checker.run(data)
    return Result(file, text, playbook, smap, sorted_diagnostics(checker.problems))


def load(text: str, file: str, catalog: Mapping[str, ActionSpec] | None = None) -> LoadedPlaybook:
    """Check and return the playbook, or raise :class:`PlaybookInvalid`."""
    return check(text, file, catalog).loaded()


def _suggest(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Checker:
    def __init__(self, file: str, smap: SourceMap, catalog: Mapping[str, ActionSpec]) -> None:
        self.file = file
        self.smap = smap
        self.catalog = catalog
        self.problems: list[Diagnostic] = []
        self.broken: dict[int, dict[str, Any]] = {}
        """Steps whose shape is wrong (reported already), by index: kept so that later
        checks do not pile misleading follow-on errors on top of the real one."""

    # ------------------------------------------------------------------ helpers

    def error(
        self, path: Path, code: str, message: str, *, key: bool = False, hint: str | None = None
    ) -> None:
        self.problems.append(Diagnostic(self.smap.locate(path, key=key), code, message, hint=hint))

    def warn(self, path: Path, code: str, message: str, *, key: bool = False) -> None:
        self.problems.append(
            Diagnostic(self.smap.locate(path, key=key), code, message, severity="warning")
        )

    # ------------------------------------------------------------------ entry

    def run(self, data: Any) -> Playbook | None:
        if not isinstance(data, dict):
            self.error((), "schema", "a playbook is a YAML mapping with name, version and steps")
            return None
        try:
            playbook: Playbook | None = Playbook.model_validate(data)
        except ValidationError as exc:
            playbook = None
            self.problems += pydantic_errors.diagnostics(exc, self.smap, model=Playbook)
        inputs, steps, triggers = self._pieces(data, playbook)
        self._check_steps(inputs, steps)
        self._check_triggers(inputs, triggers)
        return playbook

    def _pieces(
        self, data: dict[str, Any], playbook: Playbook | None
    ) -> tuple[dict[str, InputSpec], list[tuple[int, Step]], list[tuple[int, Trigger]]]:
        """The parts that are individually sound, so one bad step hides no other problem."""
        if playbook is not None:
            return (
                dict(playbook.inputs),
                list(enumerate(playbook.steps)),
                list(enumerate(playbook.triggers)),
            )
        inputs: dict[str, InputSpec] = {}
        raw_inputs = data.get("inputs")
        if isinstance(raw_inputs, dict):
            for name, spec in raw_inputs.items():
                try:
                    inputs[str(name)] = InputSpec.model_validate(spec if spec is not None else {})
                except ValidationError:
                    inputs[str(name)] = InputSpec()  # reported already; still a known name
        steps: list[tuple[int, Step]] = []
        raw_steps = data.get("steps")
        if isinstance(raw_steps, list):
            for index, raw in enumerate(raw_steps):
                try:
                    steps.append((index, _step_adapter.validate_python(raw)))
                except ValidationError:
                    self.broken[index] = raw if isinstance(raw, dict) else {}
        triggers: list[tuple[int, Trigger]] = []
        raw_triggers = data.get("triggers")
        if isinstance(raw_triggers, list):
            for index, raw in enumerate(raw_triggers):
                try:
                    triggers.append((index, _trigger_adapter.validate_python(raw)))
                except ValidationError:
                    continue
        return inputs, steps, triggers

    # ------------------------------------------------------------------ steps

    def _check_steps(self, inputs: Mapping[str, InputSpec], steps: list[tuple[int, Step]]) -> None:
        seen: dict[str, int] = {}
        for index, step in steps:
            if step.id in seen:
                self.error(
                    ("steps", index, "id"),
                    "duplicate-step",
                    f"duplicate step id {step.id!r} (first used by step {seen[step.id] + 1})",
                )
            else:
                seen[step.id] = index
        scope = _Scope(inputs, {})
        unreachable: set[str] = set()
        sound = dict(steps)
        for index in sorted({*sound, *self.broken}):
            if index in self.broken:
                broken_id = self.broken[index].get("id")
                if isinstance(broken_id, str):
                    scope.opaque.add(broken_id)
                continue
            step = sound[index]
            self._check_step(step, ("steps", index), scope, unreachable)
            scope.steps.setdefault(step.id, step)
        self._check_gates([s for _, s in steps], {s.id: i for i, s in steps})

    def _check_step(self, step: Step, path: Path, scope: _Scope, unreachable: set[str]) -> None:
        if step.when is not None:
            self._check_when(step, path, scope, unreachable)
        deps = set()
        if isinstance(step, ActionStep):
            deps |= self._check_action(step, path, scope)
        elif isinstance(step, ApprovalStep):
            if step.when is not None:
                self.error(
                    (*path, "when"),
                    "gate",
                    f"approval gate {step.id!r} cannot be conditional: a skipped gate would "
                    "leave its destructive steps unguarded",
                    key=True,
                    hint="put `when` on the guarded steps instead",
                )
            if step.approval.message is not None:
                deps |= self._refs(step.approval.message, (*path, "approval", "message"), scope)
        elif isinstance(step, ManualStep):
            deps |= self._refs(step.manual.instructions, (*path, "manual", "instructions"), scope)
            assignee = step.manual.assignee
            if assignee is not None:
                if expressions.is_template(assignee):
                    deps |= self._refs(assignee, (*path, "manual", "assignee"), scope)
                elif not _matches(PRINCIPAL_PATTERN, assignee):
                    self.error(
                        (*path, "manual", "assignee"),
                        "schema",
                        f"assignee {assignee!r} must be group:NAME, user:ID or a template",
                    )
        elif isinstance(step, WaitStep):
            deps |= self._refs(step.wait, (*path, "wait"), scope)
        elif isinstance(step, PlaybookStep):
            deps |= self._value_refs(step.with_, (*path, "with"), scope)
        dead = sorted(d for d in deps if d in unreachable)
        if dead and step.id not in unreachable:
            unreachable.add(step.id)
            self.error(
                (*path, "id"),
                "unreachable",
                f"step {step.id!r} can never run usefully: it uses the outputs of step "
                f"{dead[0]!r}, which never runs",
            )

    def _check_when(self, step: Step, path: Path, scope: _Scope, unreachable: set[str]) -> None:
        when = step.when
        always_false = when is False
        if isinstance(when, str):
            refs = self._refs(when, (*path, "when"), scope, bare=True)
            analysis = _analyse(when, bare=True)
            if analysis is not None and not analysis.references:
                try:
                    always_false = not expressions.truthy(when, {})
                except ExpressionError:
                    always_false = False
            del refs
        if always_false:
            unreachable.add(step.id)
            self.error(
                (*path, "when"),
                "unreachable",
                f"step {step.id!r} is unreachable: its `when` is always false",
                key=True,
            )

    def _check_action(self, step: ActionStep, path: Path, scope: _Scope) -> set[str]:
        deps: set[str] = set()
        item_scope = scope.with_item() if step.for_each is not None else scope
        if step.for_each is not None:
            if isinstance(step.for_each, str):
                deps |= self._refs(step.for_each, (*path, "for_each"), scope, bare=True)
            else:
                deps |= self._value_refs(step.for_each, (*path, "for_each"), scope)
        elif step.concurrency != 1:
            self.warn(
                (*path, "concurrency"),
                "concurrency",
                "concurrency has no effect without for_each",
                key=True,
            )
        spec = self._action(step.action, (*path, "action"))
        if spec is not None:
            self._check_with(spec, step.with_, (*path, "with"))
            if step.optional and spec.integration is None:
                self.warn(
                    (*path, "optional"),
                    "optional",
                    f"optional has no effect: {spec.name} needs no integration",
                    key=True,
                )
        deps |= self._value_refs(step.with_, (*path, "with"), item_scope)
        for number, comp in enumerate(step.on_failure):
            comp_path: Path = (*path, "on_failure", number)
            comp_spec = self._action(comp.action, (*comp_path, "action"))
            if comp_spec is not None:
                self._check_with(comp_spec, comp.with_, (*comp_path, "with"))
            self._value_refs(comp.with_, (*comp_path, "with"), item_scope)
        return deps

    def _action(self, name: str, path: Path) -> ActionSpec | None:
        spec = self.catalog.get(name)
        if spec is None:
            self.error(
                path,
                "unknown-action",
                f"unknown action {name!r}{_suggest(name, self.catalog)}",
                hint="`irbot playbook schema` lists every action and its inputs",
            )
        return spec

    def _check_with(self, spec: ActionSpec, given: Mapping[str, Any], path: Path) -> None:
        if spec.inputs is None:
            return
        templated = frozenset(
            p for p, v in expressions.iter_strings(given) if expressions.is_template(v)
        )
        try:
            spec.inputs.model_validate(dict(given))
        except ValidationError as exc:
            for diag in pydantic_errors.diagnostics(
                exc, self.smap, model=spec.inputs, prefix=path, code="action-input", skip=templated
            ):
                text = f"{spec.name}: {diag.message}"
                self.problems.append(Diagnostic(diag.location, diag.code, text, hint=diag.hint))

    # ------------------------------------------------------------------ gates

    def _check_gates(self, steps: Sequence[Step], index_of: Mapping[str, int]) -> None:
        position = {step.id: n for n, step in enumerate(steps)}
        for step in steps:
            if not isinstance(step, ApprovalStep) or step.approval.covers is None:
                continue
            gate_path: Path = ("steps", index_of[step.id], "approval", "covers")
            for number, target in enumerate(step.approval.covers):
                where = (*gate_path, number)
                if target not in position:
                    hint = _suggest(target, position)
                    self.error(
                        where, "gate", f"gate {step.id!r} covers unknown step {target!r}{hint}"
                    )
                elif position[target] < position[step.id]:
                    self.error(
                        where,
                        "gate",
                        f"gate {step.id!r} cannot cover step {target!r}, which runs before it",
                    )
                elif not needs_gate(steps[position[target]], self.catalog):
                    self.warn(
                        where,
                        "gate",
                        f"step {target!r} is not destructive; covering it has no effect",
                    )
        guard = covered_by(steps, self.catalog)
        used_gates = set(guard.values())
        broken_gates = [i for i, raw in self.broken.items() if "approval" in raw]
        first_broken_gate = min(broken_gates, default=None)
        for step in steps:
            if first_broken_gate is not None and index_of[step.id] > first_broken_gate:
                continue  # coverage is unknowable past a malformed gate; that error stands
            if isinstance(step, ApprovalStep) and step.id not in used_gates:
                self.warn(
                    ("steps", index_of[step.id], "approval"),
                    "gate",
                    f"gate {step.id!r} guards no destructive step",
                    key=True,
                )
            if needs_gate(step, self.catalog) and step.id not in guard:
                assert isinstance(step, ActionStep)
                destructive = [
                    a
                    for a in (step.action, *(c.action for c in step.on_failure))
                    if a in self.catalog and self.catalog[a].destructive  # unknown: reported
                ]
                self.error(
                    ("steps", index_of[step.id], "action"),
                    "ungated-destructive",
                    f"step {step.id!r} runs destructive action {destructive[0]} but no approval "
                    "gate before it covers it",
                    key=True,
                    hint="add a step such as `- id: approve` / `approval: {from: [group:sre]}` "
                    f"before it, or list {step.id!r} in an earlier gate's covers",
                )

    # ------------------------------------------------------------------ triggers

    def _check_triggers(
        self, inputs: Mapping[str, InputSpec], triggers: list[tuple[int, Trigger]]
    ) -> None:
        for index, trigger in triggers:
            base: Path = ("triggers", index, trigger.kind, "inputs")
            for name, template in trigger.inputs.items():
                if name not in inputs:
                    self.error(
                        (*base, name),
                        "reference",
                        f"trigger fills unknown input {name!r}{_suggest(name, inputs)}",
                        key=True,
                    )
                analysis = self._analyse_at(template, (*base, name))
                for ref in analysis.references if analysis else ():
                    if ref[0] != "event":
                        self.error(
                            (*base, name),
                            "reference",
                            f"trigger inputs can only use 'event', not {ref[0]!r}",
                        )

    # ------------------------------------------------------------------ references

    def _analyse_at(
        self, source: str, path: Path, *, bare: bool = False
    ) -> expressions.Analysis | None:
        try:
            return expressions.analyse(source, bare=bare)
        except ExpressionError as exc:
            self.error(path, "expression", exc.message)
            return None

    def _value_refs(self, value: Any, path: Path, scope: _Scope) -> set[str]:
        deps: set[str] = set()
        for sub, text in expressions.iter_strings(value):
            if expressions.is_template(text):
                deps |= self._refs(text, (*path, *sub), scope)
        return deps

    def _refs(self, source: str, path: Path, scope: _Scope, *, bare: bool = False) -> set[str]:
        """Check every reference in ``source``; return the step ids it depends on."""
        if not bare and not expressions.is_template(source):
            return set()
        analysis = self._analyse_at(source, path, bare=bare)
        if analysis is None:
            return set()
        deps: set[str] = set()
        for ref in analysis.references:
            problem = scope.problem(ref, self.catalog)
            if problem:
                self.error(path, "reference", problem)
            elif ref[0] == "steps" and len(ref) > 1:
                deps.add(str(ref[1]))
        return deps


def _analyse(source: str, *, bare: bool) -> expressions.Analysis | None:
    try:
        return expressions.analyse(source, bare=bare)
    except ExpressionError:
        return None


def _matches(pattern: str, value: str) -> bool:
    import re

    return re.match(pattern, value) is not None


@dataclass
class _Scope:
    """What an expression may refer to at one point of the playbook."""

    inputs: Mapping[str, InputSpec]
    steps: dict[str, Step]
    item: bool = False
    opaque: set[str] = field(default_factory=set)
    """Ids of earlier steps too malformed to know their outputs."""

    def with_item(self) -> _Scope:
        return _Scope(self.inputs, self.steps, item=True, opaque=self.opaque)

    def problem(self, ref: tuple[str | int, ...], catalog: Mapping[str, ActionSpec]) -> str | None:
        root = ref[0]
        rest = ref[1:]
        if root == "inputs":
            if not rest:
                return None
            name = str(rest[0])
            if name not in self.inputs:
                return f"unknown input {name!r}{_suggest(name, self.inputs)}"
            return None
        if root == "steps":
            return self._step_problem(rest, catalog)
        if root == "item":
            return None if self.item else "'item' is only defined in a step with for_each"
        if root in ("run", "incident"):
            allowed = RUN_FIELDS if root == "run" else INCIDENT_FIELDS
            if rest and str(rest[0]) not in allowed:
                return f"{root} has no field {rest[0]!r} (it has: {', '.join(allowed)})"
            return None
        return (
            f"unknown name {root!r}{_suggest(str(root), expressions.ROOTS)}; expressions can use "
            + ", ".join(expressions.ROOTS)
        )

    def _step_problem(
        self, rest: Sequence[str | int], catalog: Mapping[str, ActionSpec]
    ) -> str | None:
        if not rest:
            return None
        step_id = str(rest[0])
        step = self.steps.get(step_id)
        if step is None and step_id in self.opaque:
            return None
        if step is None:
            hint = _suggest(step_id, self.steps)
            return f"unknown step {step_id!r}, or it does not run before this one{hint}"
        if len(rest) < 2:
            return None
        attribute = str(rest[1])
        if attribute not in STEP_ATTRIBUTES:
            return f"steps.{step_id} has no {attribute!r}; use steps.{step_id}.outputs or .status"
        if attribute != "outputs" or len(rest) < 3:
            return None
        fields = _outputs_of(step, catalog)
        tail = list(rest[2:])
        if isinstance(step, ActionStep) and step.for_each is not None:
            if not isinstance(tail[0], int):
                return (
                    f"step {step_id!r} runs for each item, so its outputs are a list: "
                    f"use steps.{step_id}.outputs[0].{tail[0]} or loop over them"
                )
            tail = tail[1:]
            if not tail:
                return None
        if fields is None:
            return None
        name = str(tail[0])
        if name not in fields:
            known = ", ".join(fields) if fields else "none"
            hint = _suggest(name, fields)
            return f"step {step_id!r} has no output {name!r}{hint} (outputs: {known})"
        return None


def _outputs_of(step: Step, catalog: Mapping[str, ActionSpec]) -> tuple[str, ...] | None:
    if isinstance(step, ActionStep):
        spec = catalog.get(step.action)
        return None if spec is None else spec.outputs
    return KIND_OUTPUTS[step.kind]


def file_location(file: str) -> Location:
    return Location(file, 1, 1)
