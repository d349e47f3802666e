"""The action catalog: what each action is called, takes, returns, and whether it destroys.

Declared in code so validation needs no credentials; the implementations live in
``bot/actions/`` and are matched to these specs by name. An action's outputs are
references (ARN, version id, key id), never secret values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache

from pydantic import BaseModel, ConfigDict


class ActionInput(BaseModel):
    """Base of every action's input model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


@dataclass(frozen=True)
class ActionSpec:
    """What the engine and the validator know about one action."""

    name: str
    summary: str
    inputs: type[ActionInput] | None
    """The model ``with`` must match; None accepts any mapping (test actions)."""
    outputs: tuple[str, ...] | None
    """Output field names; None means the outputs mirror ``with`` (test.noop)."""
    destructive: bool = False
    """Changes or removes something that matters: must stand behind an approval gate."""
    integration: str | None = None
    """The configuration it needs (``aws``, ``pagerduty.events`` ...): ``optional`` skips it."""


class Catalog(Mapping[str, ActionSpec]):
    """An immutable name -> spec mapping."""

    def __init__(self, specs: tuple[ActionSpec, ...]) -> None:
        self._specs: dict[str, ActionSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"action {spec.name!r} declared twice")
            self._specs[spec.name] = spec

    def __getitem__(self, name: str) -> ActionSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


@cache
def default_catalog() -> Catalog:
    """Catalog v1: every action irbot ships."""
    from bot.core.catalog import aws, k8s, notify, pagerduty, testing

    return Catalog(aws.SPECS + k8s.SPECS + pagerduty.SPECS + notify.SPECS + testing.SPECS)
