"""Playbook inputs from a command line (``key=value``) or a mapping, checked and typed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bot.core.errors import InputError
from bot.core.playbook import Playbook
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
        if name in raw:
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
