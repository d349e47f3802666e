"""``irbot.yaml``: who is in which group, who may start what, where triggers go.

Loaded with positions, so every problem is reported at once as ``file:line:col: message``.
Access questions fail closed: an unknown group has no members and a playbook not listed
under ``playbooks:`` cannot be started by anyone.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from bot.core import pydantic_errors
from bot.core.diagnostics import Diagnostic
from bot.core.errors import ConfigError
from bot.core.playbook import NAME_PATTERN
from bot.core.yamlsrc import Path as DocPath
from bot.core.yamlsrc import SourceMap, YamlSourceError
from bot.core.yamlsrc import load as load_yaml

ENV_VAR = "IRBOT_CONFIG"
DEFAULT_PATH = "irbot.yaml"
DEFAULT_BREAKGLASS = "breakglass"
GROUP_PATTERN = r"^[a-z][a-z0-9_-]*$"
MEMBER_PATTERN = r"^[A-Za-z0-9._@-]+$"
"""Slack ids (``U01ABC``) and local names (``alice``, ``alice@example.com``) both fit."""

_LOCATED = "located"
"""Validation-context flag: the caller reports cross-check problems with positions itself."""

GroupName = Annotated[str, StringConstraints(pattern=GROUP_PATTERN)]
MemberId = Annotated[str, StringConstraints(pattern=MEMBER_PATTERN)]
PlaybookName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]


def _none_is_empty(value: Any) -> Any:
    """``breakglass:`` with nothing after it is YAML null; it means "no members"."""
    return [] if value is None else value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackConfig(_Model):
    channel: str = Field(min_length=1)
    """Where run announcements and approval requests go."""
    incident_channels: bool = False
    """Open one channel per incident instead of threads in ``channel``."""


class PlaybookAccess(_Model):
    start: list[GroupName]
    """Groups whose members may start the playbook (by hand; triggers need no starter)."""


class TriggerRoute(_Model):
    source: Literal["pagerduty", "alertmanager", "github_secret_scanning", "generic"]
    playbook: PlaybookName
    match: dict[str, str] = Field(default_factory=dict)
    inputs: dict[str, str] = Field(default_factory=dict)
    generic_source: str | None = Field(default=None, min_length=1)
    """The name in ``/webhooks/generic/<name>``; required iff ``source`` is ``generic``."""

    @model_validator(mode="after")
    def _generic_source(self) -> TriggerRoute:
        if self.source == "generic" and self.generic_source is None:
            raise ValueError("a generic route needs generic_source (the webhook's name)")
        if self.source != "generic" and self.generic_source is not None:
            raise ValueError("generic_source only applies to routes with source: generic")
        return self


class Config(_Model):
    slack: SlackConfig
    groups: dict[GroupName, Annotated[list[MemberId], BeforeValidator(_none_is_empty)]]
    playbooks: dict[PlaybookName, PlaybookAccess] = Field(default_factory=dict)
    triggers: list[TriggerRoute] = Field(default_factory=list)
    breakglass_group: GroupName = DEFAULT_BREAKGLASS

    @model_validator(mode="after")
    def _cross_check(self, info: ValidationInfo) -> Config:
        # parse_config reports these itself, with positions; direct construction must not
        # be able to skip them.
        if not (info.context or {}).get(_LOCATED):
            problems = _cross_problems(self.model_dump())
            if problems:
                raise ValueError("; ".join(message for _, message in problems))
        return self

    def members(self, group: str) -> frozenset[str]:
        """Members of ``group``; an unknown group has none."""
        return frozenset(self.groups.get(group, ()))

    def groups_of(self, user: str) -> frozenset[str]:
        return frozenset(name for name, members in self.groups.items() if user in members)

    def can_start(self, user: str, playbook: str) -> bool:
        """Unlisted playbooks cannot be started by anyone: fail closed."""
        access = self.playbooks.get(playbook)
        return access is not None and any(user in self.members(g) for g in access.start)

    def group_map(self) -> dict[str, frozenset[str]]:
        """A snapshot of membership for :func:`bot.core.approvals.decide`."""
        return {name: frozenset(members) for name, members in self.groups.items()}


def _cross_problems(data: Any) -> list[tuple[DocPath, str]]:
    """References between sections; tolerant of bad shapes (reported elsewhere), so they
    are found even when the schema check failed too."""
    if not isinstance(data, dict):
        return []
    groups = data.get("groups")
    known = set(groups) if isinstance(groups, dict) else set()
    problems: list[tuple[DocPath, str]] = []
    playbooks = data.get("playbooks")
    for name, access in (playbooks if isinstance(playbooks, dict) else {}).items():
        start = access.get("start") if isinstance(access, dict) else None
        for index, group in enumerate(start if isinstance(start, list) else []):
            if isinstance(group, str) and group not in known:
                path: DocPath = ("playbooks", name, "start", index)
                problems.append((path, f"{name}: unknown group {group!r} in start"))
    breakglass = data.get("breakglass_group", DEFAULT_BREAKGLASS)
    if isinstance(breakglass, str) and breakglass != DEFAULT_BREAKGLASS and breakglass not in known:
        problems.append(
            (("breakglass_group",), f"unknown group {breakglass!r} in breakglass_group")
        )
    return problems


def _diagnostics(text: str, file: str) -> tuple[Config | None, list[Diagnostic]]:
    try:
        data, smap, soft = load_yaml(text, file)
    except YamlSourceError as exc:
        return None, [_config_wording(d) for d in exc.diagnostics]
    problems = list(soft)
    if not isinstance(data, dict):
        smap = SourceMap(file)
        message = "the config must be a YAML mapping with slack, groups and playbooks"
        return None, [*problems, Diagnostic(smap.locate(()), "schema", message)]
    config: Config | None = None
    try:
        config = Config.model_validate(data, context={_LOCATED: True})
    except ValidationError as exc:
        problems += pydantic_errors.diagnostics(exc, smap, model=Config)
    for path, message in _cross_problems(data):
        problems.append(Diagnostic(smap.locate(path), "reference", message))
    return config, problems


def _config_wording(diagnostic: Diagnostic) -> Diagnostic:
    """yamlsrc words its empty-file error for playbooks."""
    if diagnostic.message.startswith("the file is empty"):
        message = "the file is empty; irbot.yaml needs at least slack and groups"
        return Diagnostic(diagnostic.location, diagnostic.code, message)
    return diagnostic


def parse_config(text: str, file: str) -> Config:
    """The config in ``text``, or :class:`ConfigError` listing every problem.

    Remembered by text: irbot.yaml is read on every request (so an edit, a member
    removed from a group, counts at once), but parsing and validating it cost ~1-2 ms,
    paid by every webhook delivery and Slack command before. A Config is frozen.
    """
    return _parse_config(text, file)


@functools.lru_cache(maxsize=16)
def _parse_config(text: str, file: str) -> Config:
    config, problems = _diagnostics(text, file)
    if problems or config is None:
        problems = sorted(dict.fromkeys(problems), key=lambda d: (d.location, d.message))
        raise ConfigError(
            "\n".join(f"{d.location}: {d.message}" for d in problems),
            file=file,
            problems=[d.to_dict() for d in problems],
        )
    return config


def load_config(path: str | Path) -> Config:
    """Read and parse the config file at ``path``."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{file}: no such config file; start from the example: "
            "cp irbot.example.yaml irbot.yaml",
            file=str(file),
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read the config file: {exc}", file=str(file)) from exc
    return parse_config(text, str(file))


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$IRBOT_CONFIG``, else ``./irbot.yaml``."""
    env = os.environ if environ is None else environ
    return Path(env.get(ENV_VAR) or DEFAULT_PATH)
