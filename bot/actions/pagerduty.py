"""PagerDuty actions: page and resolve through the Events API v2, add notes through REST.

Settings are read from the environment at call time:

- ``PAGERDUTY_ROUTING_KEY``: the Events API v2 integration key (pagerduty.trigger/resolve);
- ``PAGERDUTY_API_TOKEN`` and ``PAGERDUTY_FROM``: a REST API token and the e-mail address of
  a PagerDuty user, sent as the ``From`` header that writing notes requires.

Errors are mapped here, at the edge::

    pagerduty.Error            no response at all: network      -> retryable
    └── pagerduty.HttpError    a response: by status            429, 5xx -> retryable
                                                                400, 401, 403, 404 -> not

Repeats are safe: events carry a dedup_key derived from the incident (PagerDuty folds
a repeated trigger into the open alert), and a note carries a marker line with the
step's idempotency key that is looked for before posting.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import httpx2
import pagerduty

from bot.core.catalog.pagerduty import Note, Resolve, Trigger
from bot.engine.actions import ActionContext, ActionError, NotConfigured, Registry

T = TypeVar("T")
Client = TypeVar("Client", bound=pagerduty.ApiClient)

transport: httpx2.BaseTransport | None = None
"""The HTTP transport of every PagerDuty client; tests set an ``httpx2.MockTransport``
(the clients refuse non-https base URLs, so a local fake server cannot be used)."""

retry_sleep: float = 1.5
"""Seconds before the first in-client retry (then doubling); tests set 0."""

HTTP_RETRIES = 2
"""In-client retries of a 429 or 5xx before it comes back to the engine as retryable.
The library would retry 429 forever, blocking the step past its timeout."""

TIMEOUT_SECONDS = 15
MAX_NOTE = 25_000
_PD_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")

EVENTS_HINT = (
    "check PAGERDUTY_ROUTING_KEY (the integration key of an Events API v2 integration) "
    "and the step's payload"
)
API_HINT = "check PAGERDUTY_API_TOKEN and PAGERDUTY_FROM (the e-mail of a PagerDuty user)"


def _setting(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def events_not_configured() -> str | None:
    """Why pagerduty.trigger/resolve cannot run here, or None."""
    if _setting("PAGERDUTY_ROUTING_KEY") is None:
        return "set PAGERDUTY_ROUTING_KEY (an Events API v2 integration key)"
    return None


def api_not_configured() -> str | None:
    """Why pagerduty.note cannot run here, or None."""
    if _setting("PAGERDUTY_API_TOKEN") is None:
        return "set PAGERDUTY_API_TOKEN (a PagerDuty REST API token)"
    if _setting("PAGERDUTY_FROM") is None:
        return "set PAGERDUTY_FROM (the e-mail address of a PagerDuty user, for notes)"
    return None


def _required(name: str, check: Callable[[], str | None]) -> str:
    value = _setting(name)
    if value is None:
        raise NotConfigured(check() or f"set {name}")
    return value


def _tune(client: Client) -> Client:
    for status in (429, 500, 502, 503, 504):
        client.retry[status] = HTTP_RETRIES
    client.sleep_timer = retry_sleep
    client.max_network_attempts = 1
    client.timeout = TIMEOUT_SECONDS
    return client


def events_client(routing_key: str) -> pagerduty.EventsApiV2Client:
    """An Events API v2 client with bounded retries (and the test transport, if set)."""
    return _tune(pagerduty.EventsApiV2Client(routing_key, transport=transport))


def rest_client(token: str, sender: str) -> pagerduty.RestApiV2Client:
    """A REST API v2 client sending ``From: sender``, with bounded retries."""
    return _tune(pagerduty.RestApiV2Client(token, default_from=sender, transport=transport))


def default_dedup_key(ctx: ActionContext) -> str:
    """``irbot/<incident id>``: trigger and resolve of one incident meet on the same alert."""
    return f"irbot/{ctx.incident_id}"[:255]


def _detail(response: httpx2.Response) -> str:
    """PagerDuty's own words from an error body (Events or REST shape), shortened."""
    try:
        body = response.json()
    except (json.JSONDecodeError, ValueError):
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]  # REST: {"error": {"message": ..., "errors": [...]}}
    if not isinstance(body, dict):
        return str(body)[:300]
    parts = [str(body.get("message") or body.get("status") or "")]
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        parts.append("; ".join(str(e) for e in errors))
    return ": ".join(p for p in parts if p)[:500]


def _error(exc: pagerduty.Error, doing: str, hint: str, ctx: ActionContext) -> ActionError:
    response = exc.response
    if response is None:
        cause = type(exc.__cause__).__name__ if exc.__cause__ else "network error"
        return ActionError(
            f"{doing}: cannot reach PagerDuty ({cause})", retryable=True, code="network"
        )
    status = response.status_code
    said = ctx.redactor.with_values(ctx.secrets).text(_detail(response))
    if status == 429:
        return ActionError(
            f"{doing}: PagerDuty is rate limiting (429)", retryable=True, code="throttled"
        )
    if status >= 500:
        return ActionError(
            f"{doing}: PagerDuty error {status} ({said})", retryable=True, code="pagerduty_5xx"
        )
    if status == 401:
        return ActionError(
            f"{doing}: PagerDuty rejected the credentials (401); {hint}", code="config"
        )
    if status == 403:
        return ActionError(f"{doing}: access denied (403: {said}); {hint}", code="denied")
    if status == 404:
        return ActionError(f"{doing}: not found (404: {said}); check the id", code="not_found")
    if 200 <= status < 300:  # accepted, but an odd body: repeating is harmless
        return ActionError(
            f"{doing}: unexpected answer from PagerDuty", retryable=True, code="pagerduty"
        )
    return ActionError(f"{doing}: PagerDuty said {status} {said}; {hint}", code="rejected")


async def _call(doing: str, hint: str, ctx: ActionContext, fn: Callable[[], T]) -> T:
    """Run a blocking client call in a thread; PagerDuty errors become ActionErrors."""
    try:
        return await asyncio.to_thread(fn)
    except pagerduty.Error as exc:
        raise _error(exc, doing, hint, ctx) from exc


async def _send_event(action: str, dedup_key: str, ctx: ActionContext, **event: Any) -> str:
    key = ctx.mark_secret(_required("PAGERDUTY_ROUTING_KEY", events_not_configured))

    def send() -> str:
        with events_client(key) as client:
            return str(client.send_event(action, dedup_key=dedup_key, **event))

    return await _call(f"sending a {action} event for {dedup_key}", EVENTS_HINT, ctx, send)


async def trigger(inputs: Trigger, ctx: ActionContext) -> Mapping[str, Any]:
    """Page: a trigger event whose dedup_key makes a repeat fold into the same alert."""
    redact = ctx.redactor.with_values(ctx.secrets)
    payload: dict[str, Any] = {
        "summary": redact.text(inputs.summary),
        "source": inputs.source,
        "severity": inputs.severity,
    }
    if inputs.component:
        payload["component"] = inputs.component
    if inputs.group:
        payload["group"] = inputs.group
    if inputs.custom_details:
        payload["custom_details"] = redact(inputs.custom_details)
    dedup_key = inputs.dedup_key or default_dedup_key(ctx)
    returned = await _send_event("trigger", dedup_key, ctx, payload=payload)
    ctx.logger().info("pagerduty.triggered", dedup_key=returned, severity=inputs.severity)
    return {"dedup_key": returned, "status": "triggered"}


async def resolve(inputs: Resolve, ctx: ActionContext) -> Mapping[str, Any]:
    """Resolve the alert trigger opened (same derivation); resolving twice is harmless."""
    dedup_key = inputs.dedup_key or default_dedup_key(ctx)
    returned = await _send_event("resolve", dedup_key, ctx)
    ctx.logger().info("pagerduty.resolved", dedup_key=returned)
    return {"dedup_key": returned, "status": "resolved"}


def _pd_incident(inputs: Note, ctx: ActionContext) -> str:
    incident = inputs.incident_id
    if incident is None and ctx.trigger.get("source") == "pagerduty":
        incident = ctx.trigger.get("incident_id")
    if not incident:
        raise ActionError(
            "pagerduty.note needs a PagerDuty incident: pass incident_id, or start the run "
            "from a PagerDuty webhook",
            code="input",
        )
    if not _PD_ID.match(str(incident)):
        raise ActionError(
            f"{str(incident)[:80]!r} is not a PagerDuty incident id (like PT4KHLK)", code="input"
        )
    return str(incident)


def note_marker(ctx: ActionContext) -> str:
    """The last line of every note irbot writes: finds the note again after a crash."""
    return f"— irbot {ctx.idempotency_key}"


def _has_marker(note: Mapping[str, Any], marker: str) -> bool:
    lines = str(note.get("content") or "").rstrip().splitlines()
    return bool(lines) and lines[-1].strip() == marker


async def note(inputs: Note, ctx: ActionContext) -> Mapping[str, Any]:
    """Add a note to the PagerDuty incident; a repeat finds its marker and does not re-post."""
    incident = _pd_incident(inputs, ctx)
    token = ctx.mark_secret(_required("PAGERDUTY_API_TOKEN", api_not_configured))
    sender = _required("PAGERDUTY_FROM", api_not_configured)
    marker = note_marker(ctx)
    text = ctx.redactor.with_values(ctx.secrets).text(inputs.content)
    room = MAX_NOTE - len(marker) - 2
    if len(text) > room:
        text = text[: room - 1] + "…"
    content = f"{text}\n\n{marker}"
    path = f"/incidents/{quote(incident)}/notes"

    def add() -> tuple[str, bool]:
        with rest_client(token, sender) as client:
            for existing in client.rget(path):
                if isinstance(existing, dict) and _has_marker(existing, marker):
                    return str(existing["id"]), True
            created = client.rpost(path, json={"content": content})
            return str(created["id"]), False

    note_id, reused = await _call(
        f"adding a note to PagerDuty incident {incident}", API_HINT, ctx, add
    )
    ctx.logger().info("pagerduty.noted", pd_incident=incident, note_id=note_id, reused=reused)
    return {"incident_id": incident, "note_id": note_id}


def register(registry: Registry) -> None:
    registry.function("pagerduty.trigger", check=events_not_configured)(trigger)
    registry.function("pagerduty.resolve", check=events_not_configured)(resolve)
    registry.function("pagerduty.note", check=api_not_configured)(note)
