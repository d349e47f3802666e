"""Placeholder: the implementation lands with issue 4."""

from __future__ import annotations

from bot.engine.actions import Registry


def register(registry: Registry) -> None:
    """Nothing yet."""
