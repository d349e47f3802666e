"""Durations written the way people write them: ``30s``, ``15m``, ``2h30m``, ``7d``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"^(?:\d+[smhdw])+$")

PATTERN = r"^(?:\d+[smhdw])+$"
"""JSON-Schema pattern of a duration string."""

MAX = timedelta(days=3650)
"""Nothing in incident response waits ten years; larger values are typos."""


def parse_duration(text: str) -> timedelta:
    """Parse ``"1h30m"`` into a timedelta; raise ValueError with a helpful message."""
    cleaned = text.strip().lower().replace(" ", "")
    if not cleaned or not _WHOLE.match(cleaned):
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit (s, m, h, d, w), "
            "for example 30s, 15m, 2h30m or 7d"
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(cleaned))
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be longer than zero")
    if seconds > MAX.total_seconds():
        raise ValueError(f"duration {text!r} is longer than the maximum of {MAX.days}d")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling: ``timedelta(hours=1, minutes=30)`` -> ``"1h30m"``."""
    seconds = int(value.total_seconds())
    if seconds <= 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
