"""One exception tree for irbot; every error knows how to show itself.

::

    IrbotError                  base; ``message`` + ``context`` + ``exit_code``
    ├── UsageError              the caller asked for something malformed (exit 2)
    │   ├── InputError          a playbook input given on a command line or by a trigger
    │   └── NotFoundError       an unknown playbook, run or incident
    ├── PlaybookInvalid         static validation failed; carries every Diagnostic (exit 1)
    ├── ExpressionError         a template failed to compile or render
    └── ConfigError             irbot.yaml or the environment is wrong (exit 2)

SDK errors never escape an adapter: they are mapped to one of these at the edge
with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from bot.core.diagnostics import Diagnostic


class IrbotError(Exception):
    """Base of every error irbot raises on purpose."""

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context: dict[str, Any] = context

    def show(self) -> str:
        """The text a person sees (CLI stderr, Slack ephemeral reply)."""
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe form for ``--json`` output."""
        return {"error": type(self).__name__, "message": self.message, **self.context}


class UsageError(IrbotError):
    """The request itself is malformed; nothing was attempted."""

    exit_code = 2


class InputError(UsageError):
    """One or more playbook inputs are missing, unknown or malformed."""

    def __init__(self, problems: Sequence[str], *, playbook: str) -> None:
        self.problems = list(problems)
        text = "; ".join(self.problems)
        super().__init__(f"invalid input for playbook {playbook!r}: {text}", playbook=playbook)

    def show(self) -> str:
        if len(self.problems) == 1:
            return self.message
        lines = [f"invalid input for playbook {self.context['playbook']!r}:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "problems": self.problems}


class NotFoundError(UsageError):
    """An unknown playbook, run or incident."""


class ConfigError(UsageError):
    """irbot.yaml or an environment variable is wrong."""


class ExpressionError(IrbotError):
    """A template did not compile, used a forbidden construct, or failed to render."""


class PlaybookInvalid(IrbotError):
    """Static validation found errors; the playbook is not loaded."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        errors = [d for d in self.diagnostics if d.severity == "error"]
        super().__init__(f"{len(errors)} error(s) in playbook", count=len(errors))

    def show(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "diagnostics": [d.to_dict() for d in self.diagnostics]}
