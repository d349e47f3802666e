"""The four webhook endpoints: check, decide, remember, answer — then work.

Each handler reads the headers and the (capped) body, lets :mod:`bot.core.webhooks`
verify and interpret them, records the delivery through :class:`Service`, and answers;
the run start or the note is the response's background task (:mod:`bot.webhooks.work`).

Answers (JSON): 202 ``{"status": "accepted", "run": …}``; 200 ``{"status":
"duplicate"}`` or ``{"status": "ignored", "reason": …}``; 4xx ``{"error": …}`` for a
bad signature (401), body (400), size (413) or content type (415); 503 ``{"error": …}``
when the source has no secret configured or irbot cannot record the delivery now (the
sender retries later).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.core import webhooks as core
from bot.core.config import TriggerRoute
from bot.core.errors import IrbotError
from bot.core.playbook import Trigger
from bot.service import Service
from bot.turns import Turns
from bot.webhooks.body import read_body
from bot.webhooks.secrets import ALERTMANAGER, GENERIC, GITHUB, PAGERDUTY, WebhookSecrets
from bot.webhooks.work import STARTS_IN_FLIGHT, Claim, NoteRun, StartRun

ROUTES_TTL = 1.0
"""Seconds the trigger routes (irbot.yaml's and the playbooks') are reused: an edit
counts within a second, and a burst does not re-read them per delivery."""

log = structlog.get_logger("irbot.webhooks")

Observe = Callable[[str, str], None]
"""``observe(source, result)``, result in accepted|duplicate|unauthorized|invalid|ignored."""
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Outcome:
    """What to answer, and what to do once the answer is sent."""

    result: str
    body: dict[str, Any]
    status: int = 200
    work: Callable[[], Awaitable[None]] | None = None


def accepted(work: StartRun | NoteRun, **body: Any) -> Outcome:
    return Outcome("accepted", {"status": "accepted", **body}, 202, work)


def duplicate(reason: str) -> Outcome:
    return Outcome("duplicate", {"status": "duplicate", "reason": reason})


def ignored(reason: str) -> Outcome:
    return Outcome("ignored", {"status": "ignored", "reason": reason})


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Endpoints:
    """The handlers, sharing the service, the secrets and the hooks."""

    def __init__(
        self,
        service: Service,
        secrets: WebhookSecrets,
        observe: Observe | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.service = service
        self.secrets = secrets
        self.observe = observe or (lambda source, result: None)
        self.clock = clock or _utcnow
        self.starts = Turns(STARTS_IN_FLIGHT)
        self._routes: tuple[list[TriggerRoute], dict[str, list[Trigger]]] | None = None
        self._routes_at = 0.0

    # ------------------------------------------------------------------ answering

    async def _answer(
        self, source: str, request: Request, handle: Callable[[Request], Awaitable[Outcome]]
    ) -> Response:
        """Turn an outcome or a refusal into the response; observe it once."""
        try:
            with self.starts.answering():
                outcome = await handle(request)
        except core.WebhookError as exc:
            log.info("webhook.refused", source=source, status=exc.status, reason=exc.message)
            self.observe(source, exc.result)
            return JSONResponse({"error": exc.show()}, status_code=exc.status)
        except core.RouteError as exc:
            log.error("webhook.route_unusable", source=source, reason=exc.message)
            outcome = ignored(exc.show())
        except IrbotError as exc:  # the store, irbot.yaml or the playbooks failed us
            log.error("webhook.unavailable", source=source, error=exc.show())
            self.observe(source, "ignored")
            body = {"error": "irbot cannot take this delivery now (see its log); retry later"}
            return JSONResponse(body, status_code=503)
        log.info("webhook.answered", source=source, result=outcome.result, **_brief(outcome))
        self.observe(source, outcome.result)
        task = BackgroundTask(outcome.work) if outcome.work is not None else None
        return JSONResponse(outcome.body, status_code=outcome.status, background=task)

    async def _route(self, events: list[core.TriggerEvent]) -> core.Match | None:
        loop = asyncio.get_running_loop()
        if self._routes is None or loop.time() - self._routes_at > ROUTES_TTL:
            self._routes = await self.service.atrigger_routes()
            self._routes_at = loop.time()
        routes, triggers = self._routes
        return core.route(events, routes, triggers)

    # ------------------------------------------------------------------ PagerDuty

    async def pagerduty(self, request: Request) -> Response:
        return await self._answer("pagerduty", request, self._pagerduty)

    async def _pagerduty(self, request: Request) -> Outcome:
        if not self.secrets.pagerduty:
            raise core.NotConfigured(f"not configured: set {PAGERDUTY}")
        secrets = self.secrets.pagerduty
        body = await _signed_body(
            request, "X-PagerDuty-Signature", lambda b, s: core.verify_pagerduty(b, s, secrets)
        )
        delivery = core.pagerduty_delivery(core.parse_json(body))
        ids = [f"event:{delivery.event_id}"]
        if "x-webhook-id" in request.headers:
            webhook_id = request.headers["x-webhook-id"]
            ids.append("webhook:" + core.check_delivery_id(webhook_id, "X-Webhook-Id"))
        incident = delivery.incident_id
        if delivery.event_type == "incident.resolved" and incident is not None:
            if not await self.service.arecord_delivery("pagerduty", ids):
                return duplicate(f"event {delivery.event_id} was delivered before")
            generation = await self.service.aresolve_alert_group("pagerduty", incident)
            if generation is None:
                return ignored(f"no irbot run is open for PagerDuty incident {incident}")
            run_id = "run-" + core.run_key("pd", incident, str(generation))
            text = f"{delivery.summary} was resolved in PagerDuty."
            return accepted(NoteRun(self.service, run_id, "pagerduty", text), run=run_id)
        match = await self._route([delivery.event])
        if match is None:
            return ignored(f"no route matches this {delivery.event_type} event")
        event_id = delivery.event_id
        return await self._start(
            "pagerduty",
            match,
            match.event.trigger,
            ids=ids,
            group_key=incident,
            key_for=lambda generation: (
                core.run_key("pd", event_id)
                if incident is None
                else core.run_key("pd", incident, str(generation))
            ),
            seen={
                "delivery": f"event {event_id} was delivered before",
                "group": f"PagerDuty incident {incident} already has a run",
            },
        )

    # ------------------------------------------------------------------ Alertmanager

    async def alertmanager(self, request: Request) -> Response:
        return await self._answer("alertmanager", request, self._alertmanager)

    async def _alertmanager(self, request: Request) -> Outcome:
        if not self.secrets.alertmanager:
            raise core.NotConfigured(f"not configured: set {ALERTMANAGER}")
        core.verify_bearer(request.headers.get("authorization"), self.secrets.alertmanager)
        body = await read_body(request)
        core.check_content_type(request.headers.get("content-type"))
        group = core.alertmanager_group(core.parse_json(body))
        if group.status == "resolved":
            generation = await self.service.aresolve_alert_group("alertmanager", group.group_key)
            if generation is None:
                return ignored("no irbot run is open for this alert group")
            run_id = "run-" + core.run_key("am", group.group_key, str(generation))
            text = f"{group.summary} was resolved in Alertmanager."
            return accepted(NoteRun(self.service, run_id, "alertmanager", text), run=run_id)
        match = await self._route(list(group.alerts))
        if match is None:
            return ignored("no route matches a firing alert of this group")
        group_key = group.group_key
        return await self._start(
            "alertmanager",
            match,
            match.event.trigger,
            ids=(),  # Alertmanager sends no delivery id: the group claim is the dedupe
            group_key=group_key,
            key_for=lambda generation: core.run_key("am", group_key, str(generation)),
            seen={"group": "this alert group already has a run while it fires"},
        )

    # ------------------------------------------------------------------ GitHub

    async def github(self, request: Request) -> Response:
        return await self._answer("github", request, self._github)

    async def _github(self, request: Request) -> Outcome:
        if not self.secrets.github:
            raise core.NotConfigured(f"not configured: set {GITHUB}")
        secret = self.secrets.github
        body = await _signed_body(
            request, "X-Hub-Signature-256", lambda b, s: core.verify_github(b, s, secret)
        )
        delivery_id = core.check_delivery_id(
            request.headers.get("x-github-delivery"), "X-GitHub-Delivery"
        )
        name = request.headers.get("x-github-event")
        event = core.github_event(name, core.parse_json(body))
        if event is None:
            return ignored(f"irbot acts on secret_scanning_alert events, not {name or 'none'}")
        match = await self._route([event])
        if match is None:
            return ignored(f"no route matches this secret_scanning_alert ({event.kind}) event")
        return await self._start(
            "github",
            match,
            {**match.event.trigger, "delivery": delivery_id},
            ids=[delivery_id],
            key_for=lambda _: core.run_key("gh", delivery_id),
            seen={"delivery": f"delivery {delivery_id} was received before"},
        )

    # ------------------------------------------------------------------ generic

    async def generic(self, request: Request) -> Response:
        name = str(request.path_params.get("source", ""))
        label = f"generic/{name}" if name in self.secrets.generic else "generic"
        return await self._answer(label, request, self._generic)

    async def _generic(self, request: Request) -> Outcome:
        name = str(request.path_params.get("source", ""))
        secret = self.secrets.generic.get(name)
        if secret is None:
            shown = name if core.SOURCE_NAME.match(name) else "<source>"
            raise core.NotConfigured(f"not configured: add {shown}=<secret> to {GENERIC}")
        timestamp = request.headers.get("x-irbot-timestamp")
        now = self.clock()
        body = await _signed_body(
            request,
            "X-Irbot-Signature",
            lambda b, s: core.verify_generic(b, s, timestamp, secret, now),
        )
        delivery_id = core.check_delivery_id(
            request.headers.get("x-irbot-delivery"), "X-Irbot-Delivery"
        )
        event = core.generic_event(name, core.parse_json(body))
        match = await self._route([event])
        if match is None:
            return ignored(f"no route matches this {name} event")
        return await self._start(
            f"generic/{name}",
            match,
            {**match.event.trigger, "delivery": delivery_id},
            ids=[delivery_id],
            key_for=lambda _: core.run_key("gen", name, delivery_id),
            seen={"delivery": f"delivery {delivery_id} was received before"},
        )

    # ------------------------------------------------------------------ starting

    async def _start(
        self,
        source: str,
        match: core.Match,
        trigger: Mapping[str, Any],
        *,
        ids: Sequence[str],
        key_for: Callable[[int | None], str],
        seen: Mapping[str, str],
        group_key: str | None = None,
    ) -> Outcome:
        """Accept the delivery (dedupe, group claim, outbox: one transaction, before the
        answer, so a crash after it loses no run) and answer with the start to make.
        ``key_for(generation)`` names the run; ``seen`` says why a repeat is one."""
        made: list[StartRun] = []

        def start(generation: int | None) -> tuple[str, Mapping[str, Any]]:
            claim = None
            if group_key is not None and generation is not None:
                claim = Claim(source, group_key, generation)
            work = StartRun.of(
                self.service,
                source,
                match,
                key_for(generation),
                trigger,
                slots=self.starts,
                claim=claim,
            )
            made.append(work)
            return work.key, work.request()

        acceptance = await self.service.aaccept_delivery(
            source, ids, group_key=group_key, start=start
        )
        if acceptance.seen is not None:
            return duplicate(seen[acceptance.seen])
        work = made[-1]
        return accepted(work, playbook=match.playbook, run=f"run-{work.key}", route=match.route)


async def _signed_body(
    request: Request, header: str, verify: Callable[[bytes, str], None]
) -> bytes:
    """The body, once ``verify(body, signature)`` passed; an unsigned request is
    refused before its body is read, and nothing is parsed before verification."""
    signature = request.headers.get(header)
    if not signature:
        raise core.Unauthorized(f"missing {header} header")
    body = await read_body(request)
    verify(body, signature)
    core.check_content_type(request.headers.get("content-type"))
    return body


def _brief(outcome: Outcome) -> dict[str, Any]:
    """The answer's identifiers for the log (no payload fields)."""
    return {k: v for k, v in outcome.body.items() if k in ("run", "playbook", "reason")}
