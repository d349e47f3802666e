"""The playbook language v1 as typed models (pydantic v2).

A playbook is ``name``, ``version``, ``description``, ``inputs``, ``triggers`` and
``steps``. A step is exactly one of five kinds, told apart by its key:

==========  ===========================================================
``action``  call an action from the catalog (``with``, ``retry``, ``timeout``,
            ``for_each`` + ``concurrency``, ``on_failure``, ``optional``)
``approval``  a two-person gate in front of destructive steps
``manual``  a task for a person (optionally handing over a secret)
``wait``    a durable pause (``wait: 7d``)
``playbook``  run another playbook as a child
==========  ===========================================================

Every step may carry ``id`` (required, snake_case so templates can say
``steps.<id>.outputs``), ``name`` and ``when``. The models check shapes only;
cross-references and the safety rule live in :mod:`bot.core.validate`.
"""

from __future__ import annotations

import re
import warnings
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    StringConstraints,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from bot.core import durations

STEP_ID_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
INPUT_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,62}$"
PRINCIPAL_PATTERN = r"^(group|user):[A-Za-z0-9_.-]+$"


def _to_duration(value: Any) -> Any:
    if isinstance(value, str):
        return durations.parse_duration(value)
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 15m")
    if isinstance(value, int | float):
        raise ValueError(f"write durations with a unit, for example '{int(value)}s'")
    return value


def _regex(value: str | None, what: str) -> str | None:
    """Check a regular expression; ambiguous ones (Python's FutureWarning) count as errors."""
    if value is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            re.compile(value)
        except (re.error, FutureWarning) as exc:
            raise ValueError(f"{what} is not a valid regular expression: {exc}") from exc
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_duration),
    PlainSerializer(durations.format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": durations.PATTERN, "examples": ["15m", "7d"]}),
]
StepId = Annotated[str, StringConstraints(pattern=STEP_ID_PATTERN)]
InputName = Annotated[str, StringConstraints(pattern=INPUT_NAME_PATTERN)]
Principal = Annotated[str, StringConstraints(pattern=PRINCIPAL_PATTERN)]
Condition = bool | str
"""A ``when``: a literal bool or an expression (``"{{ inputs.deployments }}"`` or bare)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


# --------------------------------------------------------------------------- inputs


class InputType(StrEnum):
    STRING = "string"
    INT = "int"
    BOOL = "bool"
    DURATION = "duration"
    LIST = "list"
    ENUM = "enum"


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class InputSpec(_Model):
    """One declared input: its type, constraints and default."""

    type: InputType = InputType.STRING
    description: str = ""
    required: bool | None = None
    """Defaults to required when there is no default."""
    default: Any = None
    pattern: str | None = None
    """Regular expression each string (or list item) must match in full."""
    values: list[str] | None = None
    """The allowed values of an enum."""
    items: Literal["string", "int"] = "string"
    """The type of list items."""

    @property
    def is_required(self) -> bool:
        if self.required is not None:
            return self.required
        return self.default is None

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        return _regex(value, "pattern")

    @model_validator(mode="after")
    def _consistent(self) -> InputSpec:
        if self.type is InputType.ENUM and not self.values:
            raise ValueError("an enum input needs 'values'")
        if self.type is not InputType.ENUM and self.values is not None:
            raise ValueError("'values' only applies to enum inputs")
        if self.pattern is not None and self.type not in (InputType.STRING, InputType.LIST):
            raise ValueError("'pattern' only applies to string and list inputs")
        if self.required and self.default is not None:
            raise ValueError("an input cannot be required and have a default")
        if self.default is not None:
            self.coerce(self.default)  # a bad default is a playbook error, not a run error
        return self

    def coerce(self, raw: Any) -> Any:
        """Turn a YAML value or a command-line string into the typed value.

        Raises ValueError with a message meant for the person who typed it.
        """
        kind = self.type
        if kind is InputType.LIST:
            if isinstance(raw, str):
                parts = [p.strip() for p in raw.split(",")]
                raw = [p for p in parts if p]
            if not isinstance(raw, list):
                raise ValueError("expected a list (comma-separated on a command line)")
            return [self._scalar(item, self.items) for item in raw]
        if kind is InputType.ENUM:
            value = self._scalar(raw, "string")
            if self.values and value not in self.values:
                raise ValueError(f"{value!r} is not one of {', '.join(self.values)}")
            return value
        return self._scalar(raw, kind.value)

    def _scalar(self, raw: Any, kind: str) -> Any:
        if kind == "string":
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                raise ValueError(f"expected a string, got {type(raw).__name__}")
            value = str(raw)
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                raise ValueError(f"{value!r} does not match the pattern {self.pattern}")
            return value
        if kind == "int":
            if isinstance(raw, bool):
                raise ValueError("expected a whole number, got a boolean")
            if isinstance(raw, int):
                return raw
            if isinstance(raw, str) and re.fullmatch(r"[+-]?\d{1,18}", raw.strip()):
                return int(raw)
            raise ValueError(f"expected a whole number, got {raw!r}")
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
                return raw.strip().lower() in _TRUE
            raise ValueError(f"expected true or false, got {raw!r}")
        if kind == "duration":
            if not isinstance(raw, str):
                raise ValueError(f"expected a duration such as 15m or 7d, got {raw!r}")
            return durations.format_duration(durations.parse_duration(raw))
        raise AssertionError(kind)  # pragma: no cover


# --------------------------------------------------------------------------- triggers


class _TriggerBase(_Model):
    inputs: dict[InputName, str] = Field(default_factory=dict)
    """How the event fills the playbook's inputs: templates over ``event``."""


class GithubSecretScanningTrigger(_TriggerBase):
    kind: Literal["github_secret_scanning"] = "github_secret_scanning"
    secret_types: list[str] = Field(default_factory=list)
    """Only these GitHub secret types (empty: any)."""


class PagerDutyTrigger(_TriggerBase):
    kind: Literal["pagerduty"] = "pagerduty"
    event: str = "incident.triggered"
    service: str | None = None
    title_matches: str | None = None

    @field_validator("title_matches")
    @classmethod
    def _title_regex(cls, value: str | None) -> str | None:
        return _regex(value, "title_matches")


class AlertmanagerTrigger(_TriggerBase):
    kind: Literal["alertmanager"] = "alertmanager"
    alertname: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class GenericTrigger(_TriggerBase):
    kind: Literal["generic"] = "generic"
    source: str
    match: dict[str, str] = Field(default_factory=dict)


TRIGGER_KINDS = ("github_secret_scanning", "pagerduty", "alertmanager", "generic")


def _unwrap_trigger(value: Any) -> Any:
    """``{pagerduty: {...}}`` -> ``{"kind": "pagerduty", ...}``."""
    if isinstance(value, dict) and len(value) == 1:
        ((kind, body),) = value.items()
        if kind in TRIGGER_KINDS:
            body = {} if body is None else body
            if isinstance(body, dict):
                return {"kind": kind, **body}
    if isinstance(value, dict) and "kind" in value:
        return value
    raise ValueError(f"a trigger is a mapping with one key, one of: {', '.join(TRIGGER_KINDS)}")


Trigger = Annotated[
    GithubSecretScanningTrigger | PagerDutyTrigger | AlertmanagerTrigger | GenericTrigger,
    Field(discriminator="kind"),
    BeforeValidator(_unwrap_trigger),
]


# --------------------------------------------------------------------------- steps


class Retry(_Model):
    attempts: int = Field(3, ge=1, le=20)
    backoff: Literal["fixed", "exponential"] = "exponential"
    delay: Duration = timedelta(seconds=1)
    max_delay: Duration = timedelta(seconds=60)


class _StepBase(_Model):
    kind: ClassVar[str]
    id: StepId
    name: str | None = None
    when: Condition | None = None

    @property
    def title(self) -> str:
        return self.name or self.id


class Compensation(_Model):
    """An ``on_failure`` step: an action run when its parent step fails."""

    id: StepId | None = None
    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    timeout: Duration | None = None


class ActionStep(_StepBase):
    kind: ClassVar[str] = "action"
    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    retry: Retry | None = None
    timeout: Duration | None = None
    for_each: str | list[Any] | None = None
    concurrency: int = Field(1, ge=1, le=100)
    on_failure: list[Compensation] = Field(default_factory=list)
    optional: bool = False
    """Skip with a visible note when the action's integration is not configured."""


class Approval(_Model):
    min: int = Field(2, ge=1, le=10)
    from_: list[Principal] = Field(alias="from", min_length=1)
    exclude_requester: Literal[True] = True
    """The requester never counts; the key exists so playbooks can say so explicitly."""
    ttl: Duration = timedelta(minutes=30)
    covers: list[StepId] | None = None
    """Step ids this gate guards; default: every destructive step up to the next gate."""
    message: str | None = None


class ApprovalStep(_StepBase):
    kind: ClassVar[str] = "approval"
    approval: Approval


class SecretInput(_Model):
    label: str = "Secret"
    hint: str | None = None


class Manual(_Model):
    instructions: str
    assignee: str | None = None
    """``group:NAME``, ``user:ID``, or a template; default: the requester."""
    secret_input: bool | SecretInput = False
    ttl: Duration | None = None

    @property
    def secret(self) -> SecretInput | None:
        if isinstance(self.secret_input, SecretInput):
            return self.secret_input
        return SecretInput() if self.secret_input else None


class ManualStep(_StepBase):
    kind: ClassVar[str] = "manual"
    manual: Manual


class WaitStep(_StepBase):
    kind: ClassVar[str] = "wait"
    wait: Annotated[
        str, WithJsonSchema({"type": "string", "examples": ["7d", "{{ inputs.grace }}"]})
    ]
    """A duration (``7d``) or a template that renders to one."""

    @field_validator("wait", mode="before")
    @classmethod
    def _duration_or_template(cls, value: Any) -> Any:
        if isinstance(value, str) and "{{" not in value:
            durations.parse_duration(value)
        elif not isinstance(value, str):
            _to_duration(value)
        return value


class PlaybookStep(_StepBase):
    kind: ClassVar[str] = "playbook"
    playbook: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")


STEP_KINDS: dict[str, type[_StepBase]] = {
    "action": ActionStep,
    "approval": ApprovalStep,
    "manual": ManualStep,
    "wait": WaitStep,
    "playbook": PlaybookStep,
}


def step_kind(value: Any) -> str | None:
    """Which kind a raw step mapping is, by its key; None if zero or several."""
    if isinstance(value, _StepBase):
        return f"{value.kind}-step"
    if not isinstance(value, dict):
        return None
    found = [k for k in STEP_KINDS if k in value]
    return f"{found[0]}-step" if len(found) == 1 else None


Step = Annotated[
    Annotated[ActionStep, Tag("action-step")]
    | Annotated[ApprovalStep, Tag("approval-step")]
    | Annotated[ManualStep, Tag("manual-step")]
    | Annotated[WaitStep, Tag("wait-step")]
    | Annotated[PlaybookStep, Tag("playbook-step")],
    Discriminator(
        step_kind,
        custom_error_type="step_kind",
        custom_error_message="a step needs exactly one of: action, approval, manual, wait, "
        "playbook",
    ),
]
STEP_TAGS = frozenset(f"{k}-step" for k in STEP_KINDS)


# --------------------------------------------------------------------------- playbook


class Playbook(_Model):
    """A whole playbook, shape-checked. Use :func:`bot.core.validate.load` to get one."""

    name: Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
    version: int = Field(ge=1)
    description: str = ""
    inputs: dict[InputName, InputSpec] = Field(default_factory=dict)
    triggers: list[Trigger] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)

    def step(
        self, step_id: str
    ) -> ActionStep | ApprovalStep | ManualStep | WaitStep | PlaybookStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)
