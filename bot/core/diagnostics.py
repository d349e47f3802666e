"""Compiler-style diagnostics: ``file:line:col: error[code]: message``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Location:
    """A 1-based position in a source file."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a playbook, with where and why."""

    location: Location
    code: str
    message: str
    severity: Severity = "error"
    hint: str | None = None

    def format(self) -> str:
        text = f"{self.location}: {self.severity}[{self.code}]: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("location"))
        return data


def sort_key(diagnostic: Diagnostic) -> tuple[Location, str]:
    return (diagnostic.location, diagnostic.code)
