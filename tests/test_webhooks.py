"""Webhook endpoints end to end: signed requests into the ASGI routes, runs queued by the
real engine client in a real store (SQLite and PostgreSQL), and what must never happen
for a forged, replayed, malformed or oversize delivery.

No worker runs: a run queued in the store (and in DBOS) is the evidence of "started".
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import structlog
import uvicorn
from starlette.applications import Starlette

from bot.core import webhooks as core
from bot.core.timeline import INCIDENT_OPENED, NOTE
from bot.core.webhooks import generic_signature
from bot.engine import runtime
from bot.service import Service, Started
from bot.store import RunRecord, TimelineStore
from bot.store.database import normalize_url
from bot.webhooks import WebhookSecrets, webhook_routes, work
from tests.engine_support import Harness, config_text
from tests.test_webhooks_core import needs_vectors, sign, vector

GENERIC = "IRBOT_WEBHOOK_SECRETS"
NOW = datetime(2026, 11, 20, 9, 15, tzinfo=UTC)
PD_SECRET = "whsec-example-pagerduty-0123456789"
GH_SECRET = "gh-webhook-example-secret"
AM_TOKEN = "am-bearer-token-0123456789"
GL_SECRET = "gitleaks-secret-0123456789"
ENV = {
    "PAGERDUTY_WEBHOOK_SECRET": f"whsec-rotated-new,{PD_SECRET}",
    "GITHUB_WEBHOOK_SECRET": GH_SECRET,
    "ALERTMANAGER_TOKEN": AM_TOKEN,
    "IRBOT_WEBHOOK_SECRETS": f"gitleaks={GL_SECRET},trufflehog=th-secret",
}

PLAYBOOKS = (
    """
    name: contain
    version: 1
    inputs:
      secret_id: {type: string, pattern: "^[A-Za-z0-9/_.-]+$"}
      severity: {type: string, default: warning}
    triggers:
      - alertmanager:
          alertname: SecretLeakDetected
          inputs:
            secret_id: "{{ event.labels.secret_id }}"
            severity: "{{ event.labels.severity | default('warning') }}"
    steps:
      - id: announce
        action: test.noop
        with: {msg: "contain {{ inputs.secret_id }}"}
    """,
    """
    name: pd-response
    version: 1
    inputs:
      incident: {type: string}
      title: {type: string}
    steps:
      - id: announce
        action: test.noop
        with: {msg: "{{ inputs.incident }}: {{ inputs.title }}"}
    """,
    """
    name: gh-leak
    version: 1
    inputs:
      repository: {type: string}
      alert: {type: int}
      secret_type: {type: string}
    triggers:
      - github_secret_scanning:
          secret_types: [aws_access_key_id]
          inputs:
            repository: "{{ event.repository }}"
            alert: "{{ event.alert_number }}"
            secret_type: "{{ event.secret_type }}"
    steps:
      - id: announce
        action: test.noop
        with: {msg: "{{ inputs.repository }}#{{ inputs.alert }}"}
    """,
    """
    name: ci-leak
    version: 1
    inputs:
      rule: {type: string}
      where: {type: string}
    steps:
      - id: announce
        action: test.noop
        with: {msg: "{{ inputs.rule }} in {{ inputs.where }}"}
    """,
)

ROUTES = """
triggers:
  - source: pagerduty
    playbook: pd-response
    match: {service.id: PSVC123, title_matches: "(?i)anomalous"}
    inputs: {incident: "{{ event.incident_id }}", title: "{{ event.title }}"}
  - source: generic
    generic_source: gitleaks
    playbook: ci-leak
    match: {rule_matches: "^aws-"}
    inputs: {rule: "{{ event.rule }}", where: "{{ event.repository }}/{{ event.file }}"}
"""


@dataclass
class Irbot:
    """One installation behind the webhook routes, and what they observed."""

    harness: Harness
    service: Service
    store: TimelineStore
    secrets: WebhookSecrets
    now: list[datetime] = field(default_factory=lambda: [NOW])
    observed: list[tuple[str, str]] = field(default_factory=list)

    def app(self, service: Service | None = None) -> Starlette:
        routes = webhook_routes(
            service or self.service,
            self.secrets,
            observe=lambda source, result: self.observed.append((source, result)),
            clock=lambda: self.now[0],
        )
        return Starlette(routes=routes)

    def client(self) -> Client:
        return Client(self.app())

    def runs(self) -> list[RunRecord]:
        return self.store.list_runs(limit=1000)

    def write_routes(self, routes: str) -> None:
        text = config_text(self.harness.playbooks) + routes
        (self.harness.root / "irbot.yaml").write_text(text)


@pytest.fixture(name="irbot")
def irbot_fixture(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Irbot]:
    """The test playbooks and routes, a migrated store and all four secrets configured."""
    harness = Harness(tmp_path, database_url, monkeypatch)
    for text in PLAYBOOKS:
        harness.add_playbook(text)
    store = runtime.open_store(harness.settings)
    installed = Irbot(
        harness, Service(harness.settings, store), store, WebhookSecrets.from_env(ENV)
    )
    installed.write_routes(ROUTES)
    try:
        yield installed
    finally:
        store.close()


class Client:
    """A synchronous face on httpx's ASGI transport: each request runs the app (and its
    background work) to completion in an event loop of its own; an exception escaping
    the app fails the test instead of becoming a 500."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def post(
        self, path: str, *, content: bytes | Iterator[bytes], headers: dict[str, str]
    ) -> httpx.Response:
        return asyncio.run(self.apost(path, content=content, headers=headers))

    async def apost(
        self, path: str, *, content: bytes | Iterator[bytes], headers: dict[str, str]
    ) -> httpx.Response:
        body: bytes | AsyncIterator[bytes] = (
            content if isinstance(content, bytes) else _chunks(content)
        )
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://irbot.test") as http:
            return await http.post(path, content=body, headers=headers)


async def _chunks(parts: Iterator[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.fixture(name="client")
def client_fixture(irbot: Irbot) -> Client:
    return irbot.client()


def pagerduty(event_type: str = "incident.triggered", event_id: str = "E-1", **data: Any) -> bytes:
    incident = {
        "id": "Q2X5C7QWER9ABC",
        "number": 4213,
        "title": "GuardDuty: anomalous API calls",
        "service": {"id": "PSVC123", "summary": "cs-mcp production"},
        **data,
    }
    return json.dumps(
        {"event": {"id": event_id, "event_type": event_type, "data": incident}}
    ).encode()


def pd_headers(body: bytes, webhook_id: str = "wh-1", secret: str = PD_SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-PagerDuty-Signature": f"v1={sign(secret, body)}",
        "X-Webhook-Id": webhook_id,
    }


def generic_headers(
    body: bytes, delivery: str, at: datetime = NOW, secret: str = GL_SECRET
) -> dict[str, str]:
    ts = str(int(at.timestamp()))
    return {
        "Content-Type": "application/json",
        "X-Irbot-Timestamp": ts,
        "X-Irbot-Signature": generic_signature(secret, ts, body),
        "X-Irbot-Delivery": delivery,
    }


def gh_headers(
    body: bytes, delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "secret_scanning_alert",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={sign(GH_SECRET, body)}",
    }


# --------------------------------------------------------------------------- PagerDuty


@needs_vectors
def test_pagerduty_vector_starts_a_run_whose_trigger_names_the_incident(
    irbot: Irbot, client: Client
) -> None:
    """The shared vector (good + stale signature, rotated secrets configured) is
    accepted; one run of the routed playbook is queued for webhook:pagerduty, with the
    PagerDuty incident id in its trigger and inputs mapped from the payload."""
    body, meta = vector("pagerduty_incident_triggered")
    response = client.post("/webhooks/pagerduty", content=body, headers=meta["headers"])
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "accepted"
    assert answer["playbook"] == "pd-response"
    [run] = irbot.runs()
    assert run.id == answer["run"]
    assert (run.playbook, run.requester, run.status) == (
        "pd-response",
        "webhook:pagerduty",
        "pending",
    )
    assert run.inputs == {
        "incident": "Q2X5C7QWER9ABC",
        "title": "GuardDuty: anomalous API calls by access key AKIAEXAMPLE1234567",
    }
    [opened] = [e for e in irbot.store.events(run_id=run.id) if e.kind == INCIDENT_OPENED]
    trigger = opened.payload["trigger"]
    assert trigger["source"] == "pagerduty"
    assert trigger["incident_id"] == "Q2X5C7QWER9ABC"
    assert irbot.observed == [("pagerduty", "accepted")]


def test_pagerduty_redelivery_answers_200_and_starts_nothing(irbot: Irbot, client: Client) -> None:
    """The same event again (same or new X-Webhook-Id), or the same X-Webhook-Id with
    another event, is a duplicate: 200, still one run."""
    body = pagerduty()
    first = client.post("/webhooks/pagerduty", content=body, headers=pd_headers(body))
    assert first.status_code == 202
    again = client.post("/webhooks/pagerduty", content=body, headers=pd_headers(body))
    retried = client.post("/webhooks/pagerduty", content=body, headers=pd_headers(body, "wh-2"))
    other = pagerduty(event_id="E-2")
    reused = client.post("/webhooks/pagerduty", content=other, headers=pd_headers(other))
    for response in (again, retried, reused):
        assert response.status_code == 200
        assert response.json()["status"] == "duplicate"
    assert len(irbot.runs()) == 1
    assert irbot.observed == [("pagerduty", "accepted")] + [("pagerduty", "duplicate")] * 3


def test_pagerduty_second_trigger_of_one_incident_starts_nothing(
    irbot: Irbot, client: Client
) -> None:
    """A new event id for a PagerDuty incident that already has a run is a duplicate."""
    for event_id, webhook_id in (("E-1", "wh-1"), ("E-2", "wh-2")):
        body = pagerduty(event_id=event_id)
        client.post("/webhooks/pagerduty", content=body, headers=pd_headers(body, webhook_id))
    assert len(irbot.runs()) == 1
    assert irbot.observed[-1] == ("pagerduty", "duplicate")


def test_pagerduty_resolved_notes_the_incident_its_trigger_started(
    irbot: Irbot, client: Client
) -> None:
    """incident.resolved adds a note by 'pagerduty' to the irbot incident the triggered
    event opened; a second resolution (new event) notes nothing more."""
    body = pagerduty()
    started = client.post("/webhooks/pagerduty", content=body, headers=pd_headers(body))
    [run] = irbot.runs()
    resolved = pagerduty("incident.resolved", "E-2", status="resolved")
    response = client.post(
        "/webhooks/pagerduty", content=resolved, headers=pd_headers(resolved, "wh-2")
    )
    assert response.status_code == 202, response.text
    assert response.json()["run"] == started.json()["run"]
    notes = [e for e in irbot.store.events(incident_id=run.incident_id) if e.kind == NOTE]
    assert len(notes) == 1
    assert notes[0].actor == "user:pagerduty"
    assert notes[0].payload["text"] == (
        "PagerDuty incident #4213 (GuardDuty: anomalous API calls) was resolved in PagerDuty."
    )
    again = pagerduty("incident.resolved", "E-3")
    response = client.post("/webhooks/pagerduty", content=again, headers=pd_headers(again, "wh-3"))
    assert response.json()["status"] == "ignored"
    assert len([e for e in irbot.store.events(incident_id=run.incident_id) if e.kind == NOTE]) == 1


def test_pagerduty_events_no_route_wants_are_ignored_not_recorded(
    irbot: Irbot, client: Client
) -> None:
    """An acknowledged event and a title no route matches: 200 ignored with the reason,
    no run; the delivery is not remembered, so nothing stops a later genuine match."""
    ack = pagerduty("incident.acknowledged")
    response = client.post("/webhooks/pagerduty", content=ack, headers=pd_headers(ack))
    assert response.json() == {
        "status": "ignored",
        "reason": "no route matches this incident.acknowledged event",
    }
    other = pagerduty(title="Disk full")
    response = client.post("/webhooks/pagerduty", content=other, headers=pd_headers(other))
    assert response.json()["status"] == "ignored"
    assert irbot.runs() == []
    match = pagerduty()
    response = client.post("/webhooks/pagerduty", content=match, headers=pd_headers(match))
    assert response.status_code == 202


# --------------------------------------------------------------------------- refusals


def test_forged_and_missing_signatures_are_401_and_leave_no_trace(
    irbot: Irbot, client: Client
) -> None:
    """Each source refuses a missing and a wrong signature or token with 401 and a
    reason; no run starts and no delivery id is remembered (the genuine delivery with
    the same ids is accepted afterwards)."""
    pd = pagerduty()
    gh = json.dumps(
        {
            "action": "created",
            "alert": {"number": 7, "secret_type": "aws_access_key_id"},
            "repository": {"full_name": "acme/x"},
        }
    ).encode()
    gl = b'{"rule": "aws-key", "repository": "acme/api", "file": "a.py"}'
    am = json.dumps(
        {
            "groupKey": "g",
            "status": "firing",
            "alerts": [{"labels": {"alertname": "SecretLeakDetected", "secret_id": "s"}}],
        }
    ).encode()
    forged = {
        "/webhooks/pagerduty": [
            (pd, {**pd_headers(pd), "X-PagerDuty-Signature": ""}, "missing X-PagerDuty-Signature"),
            (pd, pd_headers(pd, secret="guessed"), "does not match"),
            (pd, pd_headers(b"{}"), "does not match"),
        ],
        "/webhooks/github": [
            (
                gh,
                {k: v for k, v in gh_headers(gh).items() if k != "X-Hub-Signature-256"},
                "missing",
            ),
            (gh, gh_headers(gh + b"\n"), "does not match"),
        ],
        "/webhooks/generic/gitleaks": [
            (
                gl,
                {k: v for k, v in generic_headers(gl, "d-1").items() if k != "X-Irbot-Signature"},
                "missing",
            ),
            (gl, generic_headers(gl, "d-1", secret="th-secret"), "does not match"),
        ],
        "/webhooks/alertmanager": [
            (am, {"Content-Type": "application/json"}, "missing Authorization"),
            (am, {"Content-Type": "application/json", "Authorization": "Bearer nope"}, "wrong"),
        ],
    }
    for path, attempts in forged.items():
        for body, headers, reason in attempts:
            response = client.post(path, content=body, headers=headers)
            assert response.status_code == 401, (path, response.text)
            assert reason in response.json()["error"]
    assert irbot.runs() == []
    assert {result for _, result in irbot.observed} == {"unauthorized"}
    genuine = [
        ("/webhooks/pagerduty", pd, pd_headers(pd)),
        ("/webhooks/github", gh, gh_headers(gh)),
        ("/webhooks/generic/gitleaks", gl, generic_headers(gl, "d-1")),
        (
            "/webhooks/alertmanager",
            am,
            {"Content-Type": "application/json", "Authorization": f"Bearer {AM_TOKEN}"},
        ),
    ]
    for path, body, headers in genuine:
        response = client.post(path, content=body, headers=headers)
        assert response.status_code == 202, (path, response.text)
    assert len(irbot.runs()) == 4


def test_sources_without_a_secret_answer_503_naming_the_variable(irbot: Irbot) -> None:
    """With no secrets set, every source refuses (503 'not configured: set …') rather
    than accept unsigned requests; an unknown generic source says how to add it."""
    irbot.secrets = WebhookSecrets.from_env({})
    body = pagerduty()
    http = irbot.client()
    expected = {
        "/webhooks/pagerduty": "not configured: set PAGERDUTY_WEBHOOK_SECRET",
        "/webhooks/alertmanager": "not configured: set ALERTMANAGER_TOKEN",
        "/webhooks/github": "not configured: set GITHUB_WEBHOOK_SECRET",
        "/webhooks/generic/gitleaks": f"not configured: add gitleaks=<secret> to {GENERIC}",
        "/webhooks/generic/Bad%20Name": f"not configured: add <source>=<secret> to {GENERIC}",
    }
    for path, message in expected.items():
        response = http.post(path, content=body, headers=pd_headers(body))
        assert response.status_code == 503
        assert response.json() == {"error": message}
    assert irbot.runs() == []


def test_malformed_bodies_get_4xx_with_a_clear_message(irbot: Irbot, client: Client) -> None:
    """Signed but broken JSON (400), a JSON array (400), a v2-shaped payload (400), a
    form post (415), a body of 1 MiB + 1 byte with or without Content-Length (413):
    each answered with {"error": …}, never a 500; nothing starts."""
    cases: list[tuple[bytes, dict[str, str], int, str]] = []
    for body, reason in (
        (b'{"event": ', "not valid JSON"),
        (b"[]", "expected a JSON object, got an array"),
        (b'{"messages": []}', "'event' object"),
    ):
        cases.append((body, pd_headers(body), 400, reason))
    form = b"payload=%7B%7D"
    cases.append(
        (
            form,
            {**pd_headers(form), "Content-Type": "application/x-www-form-urlencoded"},
            415,
            "expected Content-Type application/json",
        )
    )
    huge = b'{"pad": "' + b"x" * (1024 * 1024 - 10) + b'"}'
    assert len(huge) == 1024 * 1024 + 1
    cases.append((huge, pd_headers(huge), 413, "larger than 1 MiB"))
    for body, headers, status, reason in cases:
        response = client.post("/webhooks/pagerduty", content=body, headers=headers)
        assert response.status_code == status, response.text
        assert reason in response.json()["error"]

    def stream() -> Iterator[bytes]:
        for _ in range(17):
            yield b" " * 65536  # 1 MiB + 64 KiB, sent chunked: no Content-Length to trust

    response = client.post("/webhooks/pagerduty", content=stream(), headers=pd_headers(b"x"))
    assert response.status_code == 413
    assert "larger than 1 MiB" in response.json()["error"]
    assert irbot.runs() == []
    assert {result for _, result in irbot.observed} == {"invalid"}


def test_a_broken_irbot_yaml_answers_503_and_the_delivery_can_come_again(
    irbot: Irbot, client: Client
) -> None:
    """When irbot.yaml cannot be read the delivery is refused with 503 (the sender
    retries) and not remembered: once the file is fixed, the retry starts the run."""
    good = (irbot.harness.root / "irbot.yaml").read_text()
    (irbot.harness.root / "irbot.yaml").write_text("slack: [not, a, mapping\n")
    body = pagerduty()
    response = client.post("/webhooks/pagerduty", content=body, headers=pd_headers(body))
    assert response.status_code == 503
    assert response.json() == {
        "error": "irbot cannot take this delivery now (see its log); retry later"
    }
    (irbot.harness.root / "irbot.yaml").write_text(good)
    response = client.post("/webhooks/pagerduty", content=body, headers=pd_headers(body))
    assert response.status_code == 202
    assert len(irbot.runs()) == 1
    assert irbot.observed == [("pagerduty", "ignored"), ("pagerduty", "accepted")]


# --------------------------------------------------------------------------- GitHub


def all_rows(url: str) -> str:
    """Every row of every table of the database at ``url``, as text (DBOS's schema
    included on PostgreSQL)."""
    engine = sa.create_engine(normalize_url(url))
    try:
        inspector = sa.inspect(engine)
        schemas = [
            s for s in inspector.get_schema_names() if s not in ("information_schema", "pg_catalog")
        ]
        text = []
        with engine.connect() as connection:
            for schema in schemas:
                for name in inspector.get_table_names(schema=schema):
                    table = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=engine)
                    text += [repr(tuple(row)) for row in connection.execute(sa.select(table))]
        return "\n".join(text)
    finally:
        engine.dispose()


@needs_vectors
def test_github_alert_starts_a_run_and_the_secret_never_reaches_any_sink(
    irbot: Irbot, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """A secret_scanning_alert carrying the leaked value (a canary) starts the playbook
    whose trigger filters on secret_types; the canary is in no answer, log line, run,
    timeline event, delivery row or DBOS input."""
    body, meta = vector("github_secret_scanning_alert")
    canary = "AKIACANARY7QWERTYUIOP/wJalrXUtnFEMI-canary-value"
    data = json.loads(body)
    data["alert"]["secret"] = canary
    planted = json.dumps(data).encode()
    headers = {**meta["headers"], "X-Hub-Signature-256": f"sha256={sign(meta['secret'], planted)}"}
    with structlog.testing.capture_logs() as logs:
        response = client.post("/webhooks/github", content=planted, headers=headers)
        again = client.post("/webhooks/github", content=planted, headers=headers)
    assert response.status_code == 202, response.text
    assert again.json()["status"] == "duplicate"
    [run] = irbot.runs()
    assert (run.playbook, run.requester) == ("gh-leak", "webhook:github")
    assert run.inputs == {
        "repository": "acme/cs-mcp",
        "alert": 42,
        "secret_type": "aws_access_key_id",
    }
    [opened] = [e for e in irbot.store.events(run_id=run.id) if e.kind == INCIDENT_OPENED]
    assert opened.payload["trigger"]["delivery"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert any(entry["event"] == "webhook.run_started" for entry in logs)
    sinks = [
        response.text,
        again.text,
        repr(logs),
        caplog.text,
        all_rows(irbot.harness.settings.store_url()),
        all_rows(irbot.harness.settings.dbos_url()),
    ]
    assert "acme/cs-mcp" in sinks[4]  # the dump does see the run's inputs
    for sink in sinks:
        assert canary not in sink
        assert "canary-value" not in sink


def test_other_github_events_and_actions_are_ignored(irbot: Irbot, client: Client) -> None:
    """A ping, and an alert being resolved, answer 200 ignored and start nothing."""
    ping = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'
    response = client.post(
        "/webhooks/github", content=ping, headers={**gh_headers(ping), "X-GitHub-Event": "ping"}
    )
    assert response.json() == {
        "status": "ignored",
        "reason": "irbot acts on secret_scanning_alert events, not ping",
    }
    resolved = json.dumps(
        {
            "action": "resolved",
            "alert": {"number": 7, "secret_type": "aws_access_key_id"},
            "repository": {"full_name": "acme/x"},
        }
    ).encode()
    response = client.post(
        "/webhooks/github", content=resolved, headers=gh_headers(resolved, "d-2")
    )
    assert response.json()["status"] == "ignored"
    assert irbot.runs() == []


def test_a_route_that_cannot_render_is_ignored_with_its_reason(
    irbot: Irbot, client: Client
) -> None:
    """A route reading a field the event does not have (``event.secret_id`` of a GitHub
    alert, which names no stored secret) answers 200 ignored naming the route; no run."""
    irbot.write_routes(
        "triggers:\n  - {source: github_secret_scanning, playbook: gh-leak,\n"
        "     inputs: {repository: '{{ event.secret_id }}'}}\n"
    )
    body = json.dumps(
        {
            "action": "created",
            "alert": {"number": 7, "secret_type": "aws_access_key_id"},
            "repository": {"full_name": "acme/x"},
        }
    ).encode()
    response = client.post("/webhooks/github", content=body, headers=gh_headers(body))
    assert response.status_code == 200
    reason = response.json()["reason"]
    assert reason.startswith(
        "irbot.yaml triggers[0] (github_secret_scanning -> gh-leak): input 'repository'"
    )
    assert "secret_id" in reason
    assert irbot.runs() == []


# --------------------------------------------------------------------------- generic


def test_generic_webhook_starts_once_and_refuses_replays(irbot: Irbot, client: Client) -> None:
    """A gitleaks report signed with its timestamp starts ci-leak; the same delivery id
    is a duplicate; the captured request replayed 301 s later is 401; a missing
    X-Irbot-Delivery is 400; an event no route matches is ignored."""
    body = json.dumps(
        {"rule": "aws-access-key", "repository": "acme/api", "file": "config.py", "Secret": "x"}
    ).encode()
    headers = generic_headers(body, "gitleaks-901-1")
    response = client.post("/webhooks/generic/gitleaks", content=body, headers=headers)
    assert response.status_code == 202, response.text
    [run] = irbot.runs()
    assert (run.playbook, run.requester) == ("ci-leak", "webhook:generic/gitleaks")
    assert run.inputs == {"rule": "aws-access-key", "where": "acme/api/config.py"}
    irbot.now[0] = NOW + timedelta(seconds=200)
    again = client.post("/webhooks/generic/gitleaks", content=body, headers=headers)
    assert again.json()["status"] == "duplicate"
    irbot.now[0] = NOW + timedelta(seconds=301)
    replay = client.post("/webhooks/generic/gitleaks", content=body, headers=headers)
    assert replay.status_code == 401
    assert "301 s from irbot's clock" in replay.json()["error"]
    irbot.now[0] = NOW
    no_id = {k: v for k, v in generic_headers(body, "x").items() if k != "X-Irbot-Delivery"}
    response = client.post("/webhooks/generic/gitleaks", content=body, headers=no_id)
    assert response.status_code == 400
    assert "missing X-Irbot-Delivery" in response.json()["error"]
    other = b'{"rule": "generic-api-key"}'
    response = client.post(
        "/webhooks/generic/gitleaks", content=other, headers=generic_headers(other, "d-9")
    )
    assert response.json() == {
        "status": "ignored",
        "reason": "no route matches this gitleaks event",
    }
    assert len(irbot.runs()) == 1
    assert [r for _, r in irbot.observed] == [
        "accepted",
        "duplicate",
        "unauthorized",
        "invalid",
        "ignored",
    ]
    assert {s for s, _ in irbot.observed} == {"generic/gitleaks"}


def test_generic_docstring_example_signs_as_the_server_checks() -> None:
    """The shell recipe in bot.webhooks' docstring (openssl + printf) computes the same
    signature as bot.core.webhooks.generic_signature."""
    import subprocess

    import bot.webhooks

    doc = bot.webhooks.__doc__ or ""
    recipe = doc.split("For example, from a CI job::", 1)[1].split("curl", 1)[0]
    script = (
        "\n".join(line.strip() for line in recipe.strip().splitlines())
        + '\nprintf "%s %s" "$ts" "$sig"\n'
    )
    out = subprocess.run(
        ["bash", "-c", script],
        env={"IRBOT_SECRET": GL_SECRET, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ts, sig = out.split()
    body = b'{"rule": "aws-access-key", "repository": "acme/api", "file": "config.py"}'
    assert f"sha256={sig}" == generic_signature(GL_SECRET, ts, body)


# --------------------------------------------------------------------------- deadline


class SlowStart(Service):
    """A service whose run start waits for the test's signal."""

    def __init__(self, base: Service, gate: threading.Event) -> None:
        super().__init__(base.settings, base.store)
        self.gate = gate

    async def astart(self, *args: Any, **kwargs: Any) -> Started:
        await asyncio.to_thread(self.gate.wait, 30)
        return await super().astart(*args, **kwargs)


@pytest.fixture
def served(irbot: Irbot) -> Iterator[tuple[str, threading.Event]]:
    """The webhook routes under a real uvicorn server on a free 127.0.0.1 port, with a
    run start that waits for the returned event."""
    gate = threading.Event()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        irbot.app(SlowStart(irbot.service, gate)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", gate
    finally:
        gate.set()
        server.should_exit = True
        thread.join(timeout=10)


def test_the_answer_is_sent_before_the_run_starts(
    irbot: Irbot, served: tuple[str, threading.Event]
) -> None:
    """Over real HTTP, PagerDuty gets its 202 while the run start is still held back;
    the run is queued once the start proceeds."""
    url, gate = served
    body = pagerduty()
    began = time.perf_counter()
    response = httpx.post(
        f"{url}/webhooks/pagerduty", content=body, headers=pd_headers(body), timeout=10
    )
    elapsed = time.perf_counter() - began
    assert response.status_code == 202
    assert elapsed < 5  # PagerDuty's deadline; the start is still blocked
    assert irbot.runs() == []
    later = datetime.now(UTC) + timedelta(hours=1)
    [(key, request)] = irbot.store.pending_starts(later)  # kept until the start is made
    assert f"run-{key}" == response.json()["run"]
    assert (request["playbook"], request["requester"]) == ("pd-response", "webhook:pagerduty")
    gate.set()
    deadline = time.monotonic() + 20
    while not irbot.runs() or irbot.store.pending_starts(later):
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.05)
    assert irbot.runs()[0].id == response.json()["run"]


def test_a_start_lost_after_the_answer_is_made_from_the_outbox(
    irbot: Irbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that answered a delivery and died before starting its run left the
    start in the outbox; the server's sweep starts it (once: the key is the run's id)
    and clears the outbox. Until RESTART_AFTER has passed the sweep leaves it alone."""
    event = core.TriggerEvent("pagerduty", "incident.triggered", {}, {"source": "pagerduty"})
    match = core.Match("pd-response", {"incident": "QLOST", "title": "lost"}, "test", event)
    slots = asyncio.Semaphore(1)
    start = work.StartRun.of(
        irbot.service, "pagerduty", match, "pd-lost-1", {"source": "pagerduty"}, slots=slots
    )
    claimed = work.StartRun.of(
        irbot.service,
        "alertmanager",
        match,
        "am-x-1",
        {"source": "alertmanager"},
        slots=slots,
        claim=work.Claim("alertmanager", '{}:{alertname="Leak"}', 3),
    )
    assert work.StartRun.from_request(irbot.service, "am-x-1", claimed.request(), slots) == claimed
    accepted = irbot.service.accept_delivery(
        "pagerduty", ["event:LOST"], group_key=None, start=lambda _: (start.key, start.request())
    )
    assert (accepted.seen, accepted.key) == (None, "pd-lost-1")  # ... and the process died here
    assert asyncio.run(work.restart_pending(irbot.service, slots)) == 0  # too recent
    monkeypatch.setattr(work, "RESTART_AFTER", timedelta(0))
    assert asyncio.run(work.restart_pending(irbot.service, slots)) == 1
    [run] = irbot.runs()
    assert (run.id, run.playbook, run.requester) == (
        "run-pd-lost-1",
        "pd-response",
        "webhook:pagerduty",
    )
    assert run.inputs == {"incident": "QLOST", "title": "lost"}
    assert irbot.store.pending_starts(datetime.now(UTC) + timedelta(hours=1)) == []
    assert asyncio.run(work.restart_pending(irbot.service, slots)) == 0
