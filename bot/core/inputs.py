"""Playbook inputs from a command line (``key=value``) or a mapping, checked and typed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bot.core.errors import InputError
from bot.core.playbook import Playbook
from bot.core.redaction import Redactor, is_secret_key
from bot.core.validate import _suggest


def parse_pairs(pairs: Iterable[str], playbook: Playbook) -> dict[str, Any]:
    """``["secret_id=prod/db", "deployments=api,worker"]`` -> typed inputs.

    Reports every problem at once in one :class:`InputError`.
    """
    raw: dict[str, str] = {}
    problems: list[str] = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"{pair!r} is not key=value")
        elif key in raw:
            problems.append(f"input {key!r} is given twice")
        else:
            raw[key] = value
    try:
        resolved = resolve(raw, playbook)
    except InputError as exc:
        problems.extend(exc.problems)
        resolved = {}
    if problems:
        raise InputError(problems, playbook=playbook.name)
    return resolved


def resolve(raw: Mapping[str, Any], playbook: Playbook) -> dict[str, Any]:
    """Check ``raw`` against the declared inputs, fill defaults, coerce types."""
    problems: list[str] = []
    declared = playbook.inputs
    for key in raw:
        if key not in declared:
            known = ", ".join(declared) or "none"
            problems.append(f"unknown input {key!r}{_suggest(key, declared)} (inputs: {known})")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in raw and (problem := _secret(name, raw[name])) is not None:
            problems.append(problem)
        elif name in raw:
            try:
                values[name] = spec.coerce(raw[name])
            except ValueError as exc:
                problems.append(f"input {name!r}: {exc}")
        elif spec.default is not None:
            values[name] = spec.coerce(spec.default)
        elif spec.is_required:
            hint = f" ({spec.description})" if spec.description else ""
            problems.append(f"missing required input {name!r}{hint}")
        else:
            values[name] = None
    if problems:
        raise InputError(problems, playbook=playbook.name)
    return values


_PATTERNS = Redactor()


def _secret(name: str, value: Any) -> str | None:
    """Secrets never enter as inputs: a run's inputs are stored with it (DBOS keeps them
    to resume the run) and templates copy them into step arguments, Slack messages and
    the timeline. A secret moves by reference; the problem names the input, never the
    value, so refusing it does not repeat it."""
    if value in (None, "", []):
        return None
    items = value if isinstance(value, list) else [value]
    if is_secret_key(name) or any(
        isinstance(item, str) and _PATTERNS.text(item) != item for item in items
    ):
        return (
            f"input {name!r} looks like a secret (a password, token or key): irbot never "
            "takes secret values as inputs; give the secret's name or ARN in Secrets "
            "Manager, or hand it over in a manual task with secret_input"
        )
    return None
