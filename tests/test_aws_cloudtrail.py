"""aws.cloudtrail.lookup against a local CloudTrail speaking the JSON protocol.

moto does not implement LookupEvents, so tests/fake_cloudtrail.py serves it over HTTP
and boto3 reaches it through ``AWS_ENDPOINT_URL_CLOUDTRAIL`` (the ``aws`` fixture
supplies credentials and region; every other service still goes to moto).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.actions.aws import client
from bot.actions.aws.cloudtrail import OTHER, business_hours, off_hours
from bot.core.catalog import default_catalog
from bot.core.redaction import Redactor
from bot.engine.actions import ActionContext, ActionError, Registry
from tests.fake_cloudtrail import FakeCloudTrail, event, serve

KEY = "AKIAFAKEFAKEFAKE0001"


@pytest.fixture
def trail(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCloudTrail]:
    """A fresh fake CloudTrail; boto3's cloudtrail clients talk to it."""
    with serve(FakeCloudTrail(page_size=50)) as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDTRAIL", fake.url)
        client.reset()
        yield fake


def lookup(**args: Any) -> Mapping[str, Any]:
    from bot.actions.aws import cloudtrail

    registry = Registry()
    cloudtrail.register(registry)
    spec = default_catalog()["aws.cloudtrail.lookup"]
    assert spec.inputs is not None
    ctx = ActionContext(
        run_id="run-ct",
        step_id="evidence",
        item_index=None,
        attempt=1,
        incident_id="inc-1",
        redactor=Redactor(),
    )
    inputs = spec.inputs.model_validate(args)
    return asyncio.run(registry.get("aws.cloudtrail.lookup").run(inputs, ctx))


def monday_two_weeks_ago() -> datetime:
    """00:00 UTC on a Monday 14-20 days back: a whole past week to place events in."""
    day = (datetime.now(UTC) - timedelta(days=14)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return day - timedelta(days=day.weekday())


def test_pages_are_followed_and_request_names_key_and_window(trail: FakeCloudTrail) -> None:
    """120 events in pages of 50: three requests, the 2nd and 3rd carry the NextToken,
    every one asks for this key over [now - window, now], and all 120 are counted."""
    now = datetime.now(UTC)
    trail.events = [event("GetObject", now - timedelta(minutes=i + 1)) for i in range(120)]
    trail.events.append(event("GetObject", now - timedelta(hours=30)))  # outside 24h
    trail.events.append(event("GetObject", now, access_key_id="AKIAOTHEROTHEROTHER1"))

    before = datetime.now(UTC).timestamp()
    out = lookup(access_key_id=KEY, window="24h")
    after = datetime.now(UTC).timestamp()

    assert out["event_count"] == 120
    assert len(trail.requests) == 3
    assert [r.get("NextToken") for r in trail.requests] == [None, "page-50", "page-100"]
    first = trail.requests[0]
    assert first["LookupAttributes"] == [{"AttributeKey": "AccessKeyId", "AttributeValue": KEY}]
    assert before - 1 <= first["EndTime"] <= after + 1
    assert first["EndTime"] - first["StartTime"] == pytest.approx(24 * 3600, abs=1)
    assert all(r["StartTime"] == first["StartTime"] for r in trail.requests)


def test_user_name_lookup_uses_username_attribute(trail: FakeCloudTrail) -> None:
    """A user_name subject is sent as the Username lookup attribute."""
    trail.events = [event("ListBuckets", datetime.now(UTC) - timedelta(hours=1), user="ci-bot")]
    out = lookup(user_name="ci-bot")
    assert trail.requests[0]["LookupAttributes"] == [
        {"AttributeKey": "Username", "AttributeValue": "ci-bot"}
    ]
    assert out["by_event_name"] == {"ListBuckets": 1}


def test_summary_counts_and_first_last_seen(trail: FakeCloudTrail) -> None:
    """Counts by event name, source IP and region; first/last seen in ISO-8601 UTC; the
    summary line gives the totals, the top events and the off-hours count."""
    monday = monday_two_weeks_ago()
    at = monday + timedelta(hours=10)  # business hours
    trail.events = (
        [event("GetObject", at + timedelta(minutes=i), ip="198.51.100.1") for i in range(1200)]
        + [
            event("ListBuckets", at + timedelta(hours=1, seconds=i), ip="198.51.100.2")
            for i in range(30)
        ]
        + [
            event("PutObject", monday + timedelta(days=5, hours=3), region="eu-west-1")
            for _ in range(4)
        ]
    )
    out = lookup(access_key_id=KEY, window="30d")

    assert out["event_count"] == 1234
    assert out["by_event_name"] == {"GetObject": 1200, "ListBuckets": 30, "PutObject": 4}
    assert out["by_source_ip"] == {"198.51.100.1": 1200, "198.51.100.2": 30, "203.0.113.7": 4}
    assert out["by_region"] == {"us-east-1": 1230, "eu-west-1": 4}
    assert out["off_hours_count"] == 4 + sum(1 for i in range(1200) if 10 * 60 + i >= 19 * 60)
    assert out["first_seen"] == at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert out["last_seen"] == (monday + timedelta(days=5, hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert out["summary"] == (
        "1,234 events from 3 IPs in 2 regions; top: GetObject (1,200), ListBuckets (30), "
        f"PutObject (4); {out['off_hours_count']:,} off-hours"
    )


def test_off_hours_weekend_before_and_after(trail: FakeCloudTrail) -> None:
    """With 08:00-19:00: 07:59 and 19:00 on a Monday are off-hours, 08:00 and 18:59 are
    not, and any time on Saturday or Sunday is."""
    monday = monday_two_weeks_ago()
    inside = [monday + timedelta(hours=8), monday + timedelta(hours=18, minutes=59, seconds=59)]
    outside = [
        monday + timedelta(hours=7, minutes=59),
        monday + timedelta(hours=19),
        monday + timedelta(days=5, hours=12),  # Saturday noon
        monday + timedelta(days=6, hours=9),  # Sunday 09:00
    ]
    trail.events = [event("GetObject", t) for t in inside + outside]
    out = lookup(access_key_id=KEY, window="30d", business_hours="08:00-19:00")
    assert out["event_count"] == 6
    assert out["off_hours_count"] == 4


def test_off_hours_rules() -> None:
    """The pure rule: weekdays inside [start, end) are business hours, across midnight
    too; a malformed or empty span is an input error."""
    wednesday = datetime(2026, 11, 25, tzinfo=UTC)
    assert wednesday.weekday() == 2
    day = business_hours("08:00-19:00")
    assert not off_hours(wednesday.replace(hour=8), day)
    assert off_hours(wednesday.replace(hour=19), day)
    night = business_hours("22:00-06:00")
    assert not off_hours(wednesday.replace(hour=23), night)
    assert not off_hours(wednesday.replace(hour=5, minute=59), night)
    assert off_hours(wednesday.replace(hour=12), night)
    assert not off_hours(wednesday.replace(hour=23, minute=59), business_hours("00:00-24:00"))
    for bad in ("25:00-19:00", "08:60-19:00", "08:00-08:00", "8-19"):
        with pytest.raises(ActionError) as info:
            business_hours(bad)
        assert info.value.code == "input"


def test_max_events_stops_paging(trail: FakeCloudTrail) -> None:
    """max_events=70 over 200 events: two pages are read, 70 newest events counted, and
    the summary says the count was cut off."""
    now = datetime.now(UTC)
    trail.events = [event("GetObject", now - timedelta(minutes=i + 1)) for i in range(200)]
    out = lookup(access_key_id=KEY, max_events=70)
    assert out["event_count"] == 70
    assert len(trail.requests) == 2
    assert out["last_seen"] == (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert out["first_seen"] == (now - timedelta(minutes=70)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "max_events reached" in out["summary"]


def test_exactly_max_events_is_not_truncated(trail: FakeCloudTrail) -> None:
    """When the events end exactly at max_events the summary does not claim a cut-off."""
    now = datetime.now(UTC)
    trail.events = [event("GetObject", now - timedelta(minutes=i + 1)) for i in range(50)]
    out = lookup(access_key_id=KEY, max_events=50)
    assert out["event_count"] == 50
    assert "max_events" not in out["summary"]


def test_counts_are_bounded(trail: FakeCloudTrail) -> None:
    """30 distinct event names and IPs: 20 kept each, the rest summed under (other)."""
    now = datetime.now(UTC)
    trail.events = [
        event(f"Call{i:02d}", now - timedelta(minutes=i + 1), ip=f"192.0.2.{i}")
        for i in range(30)
        for _ in range(i + 1)
    ]
    out = lookup(access_key_id=KEY, window="2d")
    total = sum(range(1, 31))
    assert out["event_count"] == total
    for counts in (out["by_event_name"], out["by_source_ip"]):
        assert len(counts) == 21
        assert sum(counts.values()) == total
        assert counts[OTHER] == sum(range(1, 11))
    assert "30 IPs" in out["summary"]


def test_no_events(trail: FakeCloudTrail) -> None:
    """No events: zero counts, no first/last seen, and a summary that says so."""
    out = lookup(access_key_id=KEY, window="6h")
    assert out["event_count"] == 0
    assert out["first_seen"] is None
    assert out["last_seen"] is None
    assert out["summary"] == f"no CloudTrail events for access key {KEY} in the last 6h"


def test_throttling_is_retryable(trail: FakeCloudTrail, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CloudTrail that keeps throttling: the SDK tries AWS_MAX_ATTEMPTS times, then the
    action fails with a retryable ActionError so the engine backs off."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    client.reset()
    trail.throttle = -1
    with pytest.raises(ActionError) as info:
        lookup(access_key_id=KEY)
    assert info.value.retryable
    assert info.value.code == "throttled"
    assert KEY in info.value.message
    assert len(trail.requests) == 2


def test_one_throttle_is_absorbed_by_sdk_retry(trail: FakeCloudTrail) -> None:
    """A single ThrottlingException is retried by boto3's standard mode: the lookup works."""
    trail.events = [event("GetObject", datetime.now(UTC) - timedelta(minutes=5))]
    trail.throttle = 1
    out = lookup(access_key_id=KEY)
    assert out["event_count"] == 1
    assert len(trail.requests) == 2
