"""Prometheus metrics for ``GET /metrics``.

Run and approval figures come from the timeline, not from counters bumped inside
workflows: DBOS replays workflow code after a crash, which would count twice, and the
timeline also holds the work of other workers. A :class:`TimelineMetrics` task follows
new events (starting at the head when the server starts, so counters restart at zero as
Prometheus expects); runs by state are read from the store at scrape time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any, Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bot.core.timeline import (
    APPROVAL_BREAKGLASS,
    APPROVAL_COUNTED,
    APPROVAL_EXPIRED,
    APPROVAL_GRANTED,
    APPROVAL_REFUSED,
    APPROVAL_REJECTED,
    STEP_FAILED,
    STEP_SUCCEEDED,
    StoredEvent,
)
from bot.store.records import RUN_STATUSES

log = structlog.get_logger("irbot.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_APPROVAL_OUTCOMES = {
    APPROVAL_COUNTED: "counted",
    APPROVAL_GRANTED: "granted",
    APPROVAL_REFUSED: "refused",
    APPROVAL_REJECTED: "rejected",
    APPROVAL_EXPIRED: "expired",
    APPROVAL_BREAKGLASS: "breakglass",
}


class EventSource(Protocol):
    def head_seq(self) -> int: ...

    def events_after(self, seq: int, limit: int) -> list[StoredEvent]: ...


class _Runs(Collector):
    def __init__(self, runs_by_state: Callable[[], Mapping[str, int]]) -> None:
        self.runs_by_state = runs_by_state

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("irbot_runs", "Runs by state.", labels=["state"])
        counts = self.runs_by_state()
        for state in sorted(set(RUN_STATUSES) | set(counts)):
            family.add_metric([state], counts.get(state, 0))
        yield family


class Metrics:
    """The server's metric families on a registry of their own."""

    def __init__(self, runs_by_state: Callable[[], Mapping[str, int]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Runs(runs_by_state))
        self.step_seconds = Histogram(
            "irbot_step_duration_seconds",
            "Duration of action calls, by action and result.",
            ["action", "result"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.approvals = Counter(
            "irbot_approvals",
            "Approval votes and gate outcomes, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "irbot_webhook_deliveries",
            "Webhook deliveries, by source and result.",
            ["source", "result"],
            registry=self.registry,
        )
        self.ack_seconds = Histogram(
            "irbot_ack_seconds",
            "Time to answer Slack and webhook requests, by route.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2.5),
            registry=self.registry,
        )

    def observe_delivery(self, source: str, result: str) -> None:
        self.deliveries.labels(source=source, result=result).inc()

    def observe_event(self, event: StoredEvent) -> None:
        if event.kind in (STEP_SUCCEEDED, STEP_FAILED) and "duration_ms" in event.payload:
            result = "succeeded" if event.kind == STEP_SUCCEEDED else "failed"
            action = str(event.payload.get("action") or "-")
            seconds = float(event.payload["duration_ms"]) / 1000
            self.step_seconds.labels(action=action, result=result).observe(seconds)
        outcome = _APPROVAL_OUTCOMES.get(event.kind)
        if outcome is not None:
            self.approvals.labels(outcome=outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class TimelineMetrics:
    """Follows the timeline from the head at start and feeds :class:`Metrics`."""

    def __init__(self, metrics: Metrics, source: EventSource, *, poll_seconds: float = 1.0):
        self.metrics = metrics
        self.source = source
        self.poll_seconds = poll_seconds
        self.seq: int | None = None

    def tick(self) -> int:
        if self.seq is None:
            self.seq = self.source.head_seq()
            return 0
        events = self.source.events_after(self.seq, 500)
        for event in events:
            self.metrics.observe_event(event)
            self.seq = event.seq
        return len(events)

    async def run_forever(self) -> None:
        while True:
            await asyncio.to_thread(self.tick)
            await asyncio.sleep(self.poll_seconds)


Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


class AckTimer:
    """ASGI middleware: time from request start to the response's first byte, for the
    Slack and webhook routes (what the senders' deadlines measure)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        route = _route_of(path) if scope.get("type") == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        observed = False

        async def timed_send(message: MutableMapping[str, Any]) -> None:
            nonlocal observed
            if message.get("type") == "http.response.start" and not observed:
                observed = True
                self.metrics.ack_seconds.labels(route=route).observe(time.perf_counter() - began)
            await send(message)

        await self.app(scope, receive, timed_send)


def _route_of(path: str) -> str | None:
    if path == "/slack/events":
        return "slack"
    if path.startswith("/webhooks/"):
        parts = path.split("/")
        return f"webhook:{parts[2]}" if len(parts) > 2 and parts[2] else "webhook"
    return None
