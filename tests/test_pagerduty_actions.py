"""pagerduty.trigger / resolve / note against an in-process PagerDuty (httpx2.MockTransport).

The clients refuse non-https base URLs, so the fake sits at the transport: every request
the real ``pagerduty`` clients build is recorded and answered here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
import structlog

from bot.actions import pagerduty as pd_actions
from bot.core.catalog.pagerduty import Note, Resolve, Trigger
from bot.core.redaction import Redactor
from bot.engine.actions import ActionContext, ActionError, NotConfigured, Registry

ROUTING_KEY = "R0UTINGKEYCANARY0123456789abcdef"
API_TOKEN = "pdapitoken-canary-u+Zx9"
PD_FROM = "oncall@example.org"
PD_TRIGGER = {"source": "pagerduty", "incident_id": "PABC123"}


@dataclass
class FakePagerDuty:
    """Events API v2 and the incident-notes part of REST v2; ``script`` answers first."""

    requests: list[httpx2.Request] = field(default_factory=list)
    script: list[tuple[int, Any]] = field(default_factory=list)
    notes: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"PABC123": []})
    fail_network: bool = False

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if self.fail_network:
            raise httpx2.ConnectError("connection refused", request=request)
        if self.script:
            return _response(*self.script.pop(0))
        if request.url.path == "/v2/enqueue":
            key = json.loads(request.content)["dedup_key"]
            return _response(
                202, {"status": "success", "message": "Event processed", "dedup_key": key}
            )
        match = re.fullmatch(r"/incidents/(\w+)/notes", request.url.path)
        if match is None or match[1] not in self.notes:
            return _response(404, {"error": {"message": "Not Found", "code": 2100}})
        notes = self.notes[match[1]]
        if request.method == "GET":
            return _response(200, {"notes": notes})
        note = {"id": f"N{len(notes) + 1}", **json.loads(request.content)["note"]}
        notes.append(note)
        return _response(201, {"note": note})

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.content]


def _response(status: int, body: Any) -> httpx2.Response:
    return httpx2.Response(status, stream=httpx2.ByteStream(json.dumps(body).encode()))


@pytest.fixture
def pd(monkeypatch: pytest.MonkeyPatch) -> FakePagerDuty:
    """The fake behind every PagerDuty client, no retry sleeps, and the three settings."""
    fake = FakePagerDuty()
    monkeypatch.setattr(pd_actions, "transport", httpx2.MockTransport(fake))
    monkeypatch.setattr(pd_actions, "retry_sleep", 0)
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
    monkeypatch.setenv("PAGERDUTY_API_TOKEN", API_TOKEN)
    monkeypatch.setenv("PAGERDUTY_FROM", PD_FROM)
    return fake


def context(step: str = "page", trigger: Mapping[str, Any] | None = None) -> ActionContext:
    return ActionContext(
        run_id="run-1",
        step_id=step,
        item_index=None,
        attempt=1,
        incident_id="INC-7",
        redactor=Redactor(),
        trigger=trigger or {},
    )


def run(coro: Any) -> dict[str, Any]:
    return dict(asyncio.run(coro))


def failure(coro: Any) -> ActionError:
    with pytest.raises(ActionError) as info:
        asyncio.run(coro)
    return info.value


def test_trigger_sends_routing_key_severity_and_incident_dedup_key(pd: FakePagerDuty) -> None:
    """The event body is exactly what the Events API wants, keyed by irbot/<incident>."""
    inputs = Trigger.model_validate(
        {"summary": "secret leak: prod/db", "severity": "warning", "component": "db"}
    )
    outputs = run(pd_actions.trigger(inputs, context()))

    assert outputs == {"dedup_key": "irbot/INC-7", "status": "triggered"}
    [request] = pd.requests
    assert str(request.url) == "https://events.pagerduty.com/v2/enqueue"
    assert json.loads(request.content) == {
        "event_action": "trigger",
        "dedup_key": "irbot/INC-7",
        "routing_key": ROUTING_KEY,
        "payload": {
            "summary": "secret leak: prod/db",
            "source": "irbot",
            "severity": "warning",
            "component": "db",
        },
    }


def test_trigger_repeat_and_resolve_share_the_dedup_key(pd: FakePagerDuty) -> None:
    """A retried trigger re-sends the same dedup_key (PagerDuty folds it into one alert)
    and resolve, with no key given, targets that same alert."""
    inputs = Trigger.model_validate({"summary": "leak"})
    run(pd_actions.trigger(inputs, context()))
    run(pd_actions.trigger(inputs, context()))
    outputs = run(pd_actions.resolve(Resolve.model_validate({}), context("resolve")))

    assert outputs == {"dedup_key": "irbot/INC-7", "status": "resolved"}
    bodies = pd.bodies()
    assert [b["dedup_key"] for b in bodies] == ["irbot/INC-7"] * 3
    assert bodies[2] == {
        "event_action": "resolve",
        "dedup_key": "irbot/INC-7",
        "routing_key": ROUTING_KEY,
    }


def test_explicit_dedup_key_and_details_are_sent(pd: FakePagerDuty) -> None:
    """A dedup_key input wins over the derived one; group and custom_details pass through."""
    inputs = Trigger.model_validate(
        {
            "summary": "s",
            "dedup_key": "leak/prod-db",
            "group": "payments",
            "custom_details": {"secret_id": "prod/db"},
        }
    )
    assert run(pd_actions.trigger(inputs, context()))["dedup_key"] == "leak/prod-db"
    [body] = pd.bodies()
    assert body["dedup_key"] == "leak/prod-db"
    assert body["payload"]["group"] == "payments"
    assert body["payload"]["custom_details"] == {"secret_id": "prod/db"}


def test_bad_request_is_not_retried_and_quotes_pagerduty(pd: FakePagerDuty) -> None:
    """A 400 fails at once, non-retryable, with PagerDuty's words and what to check."""
    pd.script.append(
        (
            400,
            {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": ["Length of 'routing_key' is incorrect (should be 32 characters)"],
            },
        )
    )
    error = failure(pd_actions.trigger(Trigger.model_validate({"summary": "s"}), context()))

    assert not error.retryable
    assert "Event object is invalid" in error.message
    assert "Length of 'routing_key' is incorrect" in error.message
    assert "PAGERDUTY_ROUTING_KEY" in error.message
    assert len(pd.requests) == 1


def test_persistent_rate_limit_is_bounded_then_retryable(pd: FakePagerDuty) -> None:
    """429s are retried a few times in the client (not forever), then the engine may retry."""
    pd.script.extend([(429, {"status": "throttle event"})] * 10)
    error = failure(pd_actions.trigger(Trigger.model_validate({"summary": "s"}), context()))

    assert error.retryable
    assert error.code == "throttled"
    assert len(pd.requests) == 1 + pd_actions.HTTP_RETRIES


def test_one_rate_limit_is_absorbed(pd: FakePagerDuty) -> None:
    """A single 429 costs one more request and the page still goes out."""
    pd.script.append((429, {"status": "throttle event"}))
    outputs = run(pd_actions.trigger(Trigger.model_validate({"summary": "s"}), context()))

    assert outputs["status"] == "triggered"
    assert len(pd.requests) == 2


def test_server_error_is_retryable(pd: FakePagerDuty) -> None:
    """A 5xx that persists comes back as a retryable error, after bounded attempts."""
    pd.script.extend([(503, {"status": "unavailable"})] * 10)
    error = failure(pd_actions.resolve(Resolve.model_validate({}), context()))

    assert error.retryable
    assert "503" in error.message
    assert len(pd.requests) == 1 + pd_actions.HTTP_RETRIES


def test_network_failure_is_retryable(pd: FakePagerDuty) -> None:
    """No answer at all (connection refused) is a retryable network error."""
    pd.fail_network = True
    error = failure(pd_actions.trigger(Trigger.model_validate({"summary": "s"}), context()))

    assert error.retryable
    assert error.code == "network"


def test_note_goes_to_the_triggering_incident_with_from_header(pd: FakePagerDuty) -> None:
    """The note lands on the PagerDuty incident that started the run, sent with the
    From header and token, and ends with the step's marker line."""
    inputs = Note.model_validate({"content": "Rotated prod/db."})
    outputs = run(pd_actions.note(inputs, context("note", PD_TRIGGER)))

    assert outputs == {"incident_id": "PABC123", "note_id": "N1"}
    get, post = pd.requests
    assert (get.method, get.url.path) == ("GET", "/incidents/PABC123/notes")
    assert (post.method, str(post.url)) == (
        "POST",
        "https://api.pagerduty.com/incidents/PABC123/notes",
    )
    assert post.headers["From"] == PD_FROM
    assert post.headers["Authorization"] == f"Token token={API_TOKEN}"
    assert json.loads(post.content) == {
        "note": {"content": "Rotated prod/db.\n\n— irbot run-1:note"}
    }


def test_note_repeat_finds_its_marker_and_does_not_post_again(pd: FakePagerDuty) -> None:
    """Running the same step again (a crash mid-call) returns the first note."""
    inputs = Note.model_validate({"content": "Rotated prod/db."})
    first = run(pd_actions.note(inputs, context("note", PD_TRIGGER)))
    again = run(pd_actions.note(inputs, context("note", PD_TRIGGER)))
    other = run(pd_actions.note(inputs, context("note2", PD_TRIGGER)))

    assert again == first
    assert other["note_id"] != first["note_id"]
    assert [r.method for r in pd.requests] == ["GET", "POST", "GET", "GET", "POST"]
    assert len(pd.notes["PABC123"]) == 2


def test_note_input_incident_wins_over_trigger(pd: FakePagerDuty) -> None:
    """An explicit incident_id is used even when a PagerDuty trigger names another."""
    pd.notes["PXYZ999"] = []
    inputs = Note.model_validate({"content": "c", "incident_id": "PXYZ999"})
    assert run(pd_actions.note(inputs, context("n", PD_TRIGGER)))["incident_id"] == "PXYZ999"
    assert len(pd.notes["PXYZ999"]) == 1


@pytest.mark.parametrize(
    "trigger",
    [{}, {"source": "alertmanager", "incident_id": "PABC123"}],
    ids=["no-trigger", "not-pagerduty"],
)
def test_note_without_a_pagerduty_incident_fails_clearly(
    pd: FakePagerDuty, trigger: dict[str, Any]
) -> None:
    """No incident_id and no PagerDuty trigger: a clear, non-retryable error, no request."""
    error = failure(pd_actions.note(Note.model_validate({"content": "c"}), context("n", trigger)))

    assert not error.retryable
    assert "incident_id" in error.message
    assert pd.requests == []


def test_note_on_unknown_incident_is_not_found(pd: FakePagerDuty) -> None:
    """A 404 from PagerDuty is non-retryable and names the incident."""
    inputs = Note.model_validate({"content": "c", "incident_id": "PNOPE00"})
    error = failure(pd_actions.note(inputs, context("n")))

    assert not error.retryable
    assert error.code == "not_found"
    assert "PNOPE00" in error.message


def test_not_configured_names_the_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each check names the variable to set; a direct call raises NotConfigured."""
    for name in ("PAGERDUTY_ROUTING_KEY", "PAGERDUTY_API_TOKEN", "PAGERDUTY_FROM"):
        monkeypatch.delenv(name, raising=False)
    registry = Registry()
    pd_actions.register(registry)

    assert "PAGERDUTY_ROUTING_KEY" in (registry.get("pagerduty.trigger").not_configured() or "")
    assert "PAGERDUTY_ROUTING_KEY" in (registry.get("pagerduty.resolve").not_configured() or "")
    assert "PAGERDUTY_API_TOKEN" in (registry.get("pagerduty.note").not_configured() or "")
    monkeypatch.setenv("PAGERDUTY_API_TOKEN", API_TOKEN)
    assert "PAGERDUTY_FROM" in (registry.get("pagerduty.note").not_configured() or "")
    monkeypatch.setenv("PAGERDUTY_FROM", PD_FROM)
    assert registry.get("pagerduty.note").not_configured() is None
    with pytest.raises(NotConfigured, match="PAGERDUTY_ROUTING_KEY"):
        asyncio.run(pd_actions.trigger(Trigger.model_validate({"summary": "s"}), context()))


def test_canary_credentials_never_leave(
    pd: FakePagerDuty, caplog: pytest.LogCaptureFixture
) -> None:
    """The routing key and API token appear in no output, error message or log line."""
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with structlog.testing.capture_logs() as logs:
        ctx = context("note", PD_TRIGGER)
        seen.append(repr(run(pd_actions.trigger(Trigger.model_validate({"summary": "s"}), ctx))))
        seen.append(repr(run(pd_actions.note(Note.model_validate({"content": "c"}), ctx))))
        pd.script.append((400, {"message": f"bad key {ROUTING_KEY}", "errors": [API_TOKEN]}))
        seen.append(
            failure(pd_actions.trigger(Trigger.model_validate({"summary": "s"}), ctx)).message
        )
        pd.script.append((401, {"error": {"message": "Unauthorized", "code": 2006}}))
        seen.append(failure(pd_actions.note(Note.model_validate({"content": "d"}), ctx)).message)
    assert logs, "the actions log what they did"
    sinks = "\n".join([*seen, repr(logs), caplog.text])
    assert ROUTING_KEY not in sinks
    assert API_TOKEN not in sinks
    assert "PAGERDUTY_API_TOKEN" in seen[-1]
