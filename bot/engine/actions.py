"""The action protocol and registry: how the engine calls the code behind a catalog entry.

An action is ``async def run(inputs, ctx) -> outputs``. ``inputs`` is the validated
input model of its catalog spec (or a plain dict for actions without one); ``outputs``
is a JSON-safe mapping of references, never secret values.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from bot.core.catalog import ActionSpec, default_catalog
from bot.core.errors import IrbotError, NotFoundError
from bot.core.redaction import Redactor
from bot.core.refs import client_token


class ActionError(IrbotError):
    """An action failed. ``retryable`` says whether trying again may help (throttling,
    timeouts, a rollout still converging) or not (bad input, missing permission)."""

    def __init__(self, message: str, *, retryable: bool = False, code: str = "failed") -> None:
        super().__init__(message, retryable=retryable, code=code)
        self.retryable = retryable
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:  # survives pickling by DBOS
        return (_rebuild, (self.message, self.retryable, self.code))


def _rebuild(message: str, retryable: bool, code: str) -> ActionError:
    return ActionError(message, retryable=retryable, code=code)


class NotConfigured(ActionError):
    """The action's integration has no credentials here; an ``optional`` step skips."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False, code="not_configured")


class IncidentLink(Protocol):
    """Where the incident lives in Slack: what slack.post needs from the engine."""

    def slack_thread(self) -> tuple[str, str] | None:
        """(channel, thread ts) of the incident's root message, if it has one."""
        ...

    def set_slack_thread(self, channel: str, ts: str) -> tuple[str, str]:
        """Make this message the incident's root unless it has one already; returns the
        root that won (the notifier may have posted one first)."""
        ...

    def notification_channel(self) -> str | None:
        """The channel from irbot.yaml, if a config is present."""
        ...


@dataclass(frozen=True)
class ActionContext:
    """What an action knows about the call it serves."""

    run_id: str
    step_id: str
    item_index: int | None
    attempt: int
    incident_id: str
    redactor: Redactor
    log: Any = field(default=None)
    trigger: Mapping[str, Any] = field(default_factory=dict)
    """What started the run (``{"source": "pagerduty", "incident_id": ...}``), or empty."""
    incident: IncidentLink | None = None
    secrets: set[str] = field(default_factory=set)
    """Values the action handled that must be masked in whatever it returns or raises."""

    @property
    def idempotency_key(self) -> str:
        """Run id + step id + item index: the same on every retry and after a crash, so
        AWS ClientRequestToken and friends dedupe the repeat."""
        suffix = "" if self.item_index is None else f":{self.item_index}"
        return f"{self.run_id}:{self.step_id}{suffix}"

    @property
    def client_token(self) -> str:
        """The idempotency key as a 36-character token (AWS wants 32 to 64 characters)."""
        return client_token(self.idempotency_key)

    def mark_secret(self, value: str) -> str:
        """Add ``value`` to the redaction set of this call; returns it for chaining."""
        self.secrets.add(value)
        return value

    def logger(self) -> Any:
        if self.log is not None:
            return self.log
        return structlog.get_logger("irbot.action").bind(
            run_id=self.run_id, step=self.step_id, incident_id=self.incident_id
        )


class Action(Protocol):
    """The shape of every action implementation."""

    spec: ActionSpec

    async def run(self, inputs: Any, ctx: ActionContext) -> Mapping[str, Any]: ...

    def not_configured(self) -> str | None:
        """Why the action cannot run here (missing credentials), or None."""
        ...


RunFn = Callable[[Any, ActionContext], Awaitable[Mapping[str, Any]]]


@dataclass
class FunctionAction:
    """An :class:`Action` made from a plain coroutine function."""

    spec: ActionSpec
    fn: RunFn
    check: Callable[[], str | None] | None = None

    async def run(self, inputs: Any, ctx: ActionContext) -> Mapping[str, Any]:
        return await self.fn(inputs, ctx)

    def not_configured(self) -> str | None:
        return self.check() if self.check is not None else None


BUILTIN_MODULES: dict[str, str] = {
    "test.": "bot.actions.testing",
    "aws.secretsmanager.": "bot.actions.aws.secretsmanager",
    "aws.iam.": "bot.actions.aws.iam",
    "aws.sts.": "bot.actions.aws.iam",
    "aws.cloudtrail.": "bot.actions.aws.cloudtrail",
    "k8s.": "bot.actions.k8s",
    "pagerduty.": "bot.actions.pagerduty",
    "slack.": "bot.actions.slack",
    "notify.email": "bot.actions.email",
}
"""Action-name prefix -> the module whose ``register(registry)`` implements it. Modules are
imported on first use: the SDKs behind them (boto3, kubernetes …) take seconds of CPU to
import, and a worker should neither pay for the ones its playbooks never call nor start
slower (resuming runs after a crash waits for it). The first call of a family pays its
import once, about a second for boto3. (Importing them all in a background thread at
start was tried: it held the GIL and slowed the worker's start and resumes.)"""


class Registry:
    """Action name -> implementation; names must exist in the catalog."""

    def __init__(
        self,
        catalog: Mapping[str, ActionSpec] | None = None,
        modules: Mapping[str, str] | None = None,
    ) -> None:
        self.catalog = default_catalog() if catalog is None else catalog
        self.modules = dict(modules or {})
        self._actions: dict[str, Action] = {}
        self._loaded: set[str] = set()

    def add(self, action: Action) -> None:
        if action.spec.name not in self.catalog:
            raise ValueError(f"action {action.spec.name!r} is not in the catalog")
        self._actions[action.spec.name] = action

    def function(
        self, name: str, *, check: Callable[[], str | None] | None = None
    ) -> Callable[[RunFn], RunFn]:
        """Decorator: register ``async def fn(inputs, ctx)`` as the action ``name``."""

        def register(fn: RunFn) -> RunFn:
            self.add(FunctionAction(self.catalog[name], fn, check))
            return fn

        return register

    def get(self, name: str) -> Action:
        if name not in self._actions:
            self._load_for(name)
        try:
            return self._actions[name]
        except KeyError:
            raise NotFoundError(
                f"action {name!r} is declared but has no implementation in this build"
            ) from None

    def load_all(self) -> None:
        """Import every module now (tests and tools that want every action present)."""
        for module in sorted(set(self.modules.values())):
            self._load(module)

    def _load_for(self, name: str) -> None:
        for prefix, module in self.modules.items():
            if name.startswith(prefix):
                self._load(module)

    def _load(self, module: str) -> None:
        import importlib

        if module not in self._loaded:
            importlib.import_module(module).register(self)
            self._loaded.add(module)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and name not in self._actions:
            self._load_for(name)
        return name in self._actions


def default_registry() -> Registry:
    """A registry of every built-in action implementation (imported on first use)."""
    return Registry(modules=BUILTIN_MODULES)
