"""CloudTrail evidence: what an access key or user did over a window, summarised.

LookupEvents over ``[now - window, now]``, newest first, 50 per page, until the pages
run out or ``max_events`` is reached. Counts by event name, source IP and region keep
the top :data:`TOP` entries (the rest add up under ``(other)``), so the outputs stay
small enough for the timeline and Slack whatever the key did. Read-only.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot.actions.aws.client import aws_call, client, not_configured
from bot.core.catalog.aws import CloudTrailLookup
from bot.core.durations import format_duration
from bot.engine.actions import ActionContext, ActionError, Registry

if TYPE_CHECKING:
    from mypy_boto3_cloudtrail import CloudTrailClient
    from mypy_boto3_cloudtrail.type_defs import EventTypeDef

TOP = 20
"""Entries kept per count; the rest are summed under :data:`OTHER`."""
OTHER = "(other)"
UNKNOWN = "(unknown)"
PAGE = 50  # LookupEvents' maximum; NextToken wants the same parameters on every page


def business_hours(text: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` -> (start, end) in minutes after midnight UTC.

    ``end`` may be ``24:00``; a start after the end means a span across midnight.
    """
    try:
        start, end = (_minutes(part) for part in text.split("-"))
    except ValueError:
        raise ActionError(
            f"business_hours {text!r} is not HH:MM-HH:MM (24-hour UTC, e.g. 08:00-19:00)",
            code="input",
        ) from None
    if start == end:
        raise ActionError(
            f"business_hours {text!r} starts and ends at the same time: give a real span",
            code="input",
        )
    return start, end


def _minutes(text: str) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or hours * 60 + minutes > 24 * 60:
        raise ValueError(text)
    return hours * 60 + minutes


def off_hours(moment: datetime, hours: tuple[int, int]) -> bool:
    """Outside business hours: a weekend (UTC), or before the start or from the end on."""
    moment = moment.astimezone(UTC)
    if moment.weekday() >= 5:
        return True
    start, end = hours
    minute = moment.hour * 60 + moment.minute
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    return not inside


@dataclass
class Tally:
    """Running counts over the events seen so far."""

    hours: tuple[int, int]
    count: int = 0
    off_hours: int = 0
    names: Counter[str] = field(default_factory=Counter)
    ips: Counter[str] = field(default_factory=Counter)
    regions: Counter[str] = field(default_factory=Counter)
    first: datetime | None = None
    last: datetime | None = None

    def add(self, event: EventTypeDef) -> None:
        self.count += 1
        self.names[event.get("EventName") or UNKNOWN] += 1
        detail = _detail(event.get("CloudTrailEvent"))
        self.ips[str(detail.get("sourceIPAddress") or UNKNOWN)] += 1
        self.regions[str(detail.get("awsRegion") or UNKNOWN)] += 1
        moment = event.get("EventTime")
        if moment is None:
            return
        self.off_hours += off_hours(moment, self.hours)
        self.first = moment if self.first is None else min(self.first, moment)
        self.last = moment if self.last is None else max(self.last, moment)


def _detail(text: str | None) -> Mapping[str, Any]:
    """The full event record (source IP and region live only there)."""
    try:
        detail = json.loads(text or "{}")
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}


def top(counts: Counter[str], limit: int = TOP) -> dict[str, int]:
    """The ``limit`` largest counts (ties by name), the remainder under ``(other)``."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = dict(ranked[:limit])
    rest = sum(n for _, n in ranked[limit:])
    if rest:
        kept[OTHER] = rest
    return kept


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def summary(tally: Tally, subject: str, window: str, truncated: bool) -> str:
    """One line for a person: ``1,234 events from 3 IPs in 2 regions; top: ...``."""
    if tally.count == 0:
        return f"no CloudTrail events for {subject} in the last {window}"
    leaders = ", ".join(f"{name} ({n:,})" for name, n in top(tally.names, 3).items())
    text = (
        f"{_plural(tally.count, 'event')} from {_plural(len(tally.ips), 'IP')} in "
        f"{_plural(len(tally.regions), 'region')}; top: {leaders}; "
        f"{tally.off_hours:,} off-hours"
    )
    if truncated:
        text += f" (newest {tally.count:,} only: max_events reached)"
    return text


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _lookup(inputs: CloudTrailLookup, ctx: ActionContext) -> dict[str, Any]:
    hours = business_hours(inputs.business_hours)
    if inputs.access_key_id is not None:
        attribute, value = "AccessKeyId", inputs.access_key_id
        subject = f"access key {value}"
    else:
        attribute, value = "Username", str(inputs.user_name)
        subject = f"IAM user {value}"
    trail: CloudTrailClient = client("cloudtrail", inputs.region)
    end = datetime.now(UTC)
    request: dict[str, Any] = {
        "LookupAttributes": [{"AttributeKey": attribute, "AttributeValue": value}],
        "StartTime": end - inputs.window,
        "EndTime": end,
        "MaxResults": PAGE,
    }
    tally, truncated = Tally(hours), False
    while True:
        page = aws_call(
            f"looking up CloudTrail events of {subject}", trail.lookup_events, **request
        )
        events = page.get("Events", [])
        taken = events[: inputs.max_events - tally.count]
        for event in taken:
            tally.add(event)
        token = page.get("NextToken")
        if tally.count >= inputs.max_events:
            truncated = bool(token) or len(events) > len(taken)
            break
        if not token:
            break
        request["NextToken"] = token
    ctx.logger().info("cloudtrail.lookup", subject=subject, events=tally.count, truncated=truncated)
    return {
        "event_count": tally.count,
        "by_event_name": top(tally.names),
        "by_source_ip": top(tally.ips),
        "by_region": top(tally.regions),
        "off_hours_count": tally.off_hours,
        "first_seen": _iso(tally.first),
        "last_seen": _iso(tally.last),
        "summary": summary(tally, subject, format_duration(inputs.window), truncated),
    }


async def lookup(inputs: CloudTrailLookup, ctx: ActionContext) -> Mapping[str, Any]:
    """Summarise what an access key or IAM user did in CloudTrail over a window."""
    return await asyncio.to_thread(_lookup, inputs, ctx)


def register(registry: Registry) -> None:
    """Register the CloudTrail action."""
    registry.function("aws.cloudtrail.lookup", check=not_configured)(lookup)
