"""Support for the Slack app tests (no tests here): signed requests in, a fake Web API out.

:class:`SlackDoor` sends requests signed as Slack signs them (``v0=`` HMAC-SHA256 over
``v0:{timestamp}:{body}``) through the real HTTP handler (``slack_route_handler``)
mounted in a Starlette app, over httpx's ASGI transport in the test's own event loop —
the loop the engine's worker runs in. Outgoing calls go to :class:`tests.fake_slack.FakeSlack`,
taught here the methods the app uses beyond the built-in ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.service import Service
from bot.slack import blocks
from bot.slack.app import build_app, slack_route_handler
from tests.engine_support import Harness
from tests.fake_slack import BOT_TOKEN, TEAM_ID, Call, FakeSlack

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5-irbot-tests"
CHANNEL = "C0INCIDENTS"
"""The notification channel of tests.engine_support.config_text."""

GATED = """
name: gated
version: 1
inputs:
  target: {type: string, default: db-1}
steps:
  - id: gate
    approval: {min: 2, from: [group:sre], ttl: 10m}
  - id: rotate
    action: test.destructive
    with: {target: "{{ inputs.target }}"}
"""

SHORT = GATED.replace("name: gated", "name: short").replace("ttl: 10m", "ttl: 1s")

HANDOVER = """
name: handover
version: 1
steps:
  - id: handover
    manual:
      instructions: Create the new API key at the vendor and hand it over.
      secret_input: {label: New API key}
      ttl: 10m
  - id: use
    action: test.noop
    with: {ref: "{{ steps.handover.outputs.secret_ref }}"}
"""

TASKED = """
name: tasked
version: 1
steps:
  - id: check
    manual:
      instructions: Check the dashboards.
      assignee: group:security
      ttl: 10m
  - id: after
    action: test.noop
    with: {by: "{{ steps.check.outputs.completed_by }}"}
"""


def sign(body: bytes, timestamp: int, secret: str = SIGNING_SECRET) -> dict[str, str]:
    """Slack's signing headers for ``body`` at ``timestamp``."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


def teach(fake: FakeSlack) -> FakeSlack:
    """Answer the Web API methods the app calls that the fake does not know yet."""
    counter = itertools.count(1)

    def ephemeral(call: Call) -> dict[str, Any]:
        return {"ok": True, "message_ts": f"{int(time.time())}.{next(counter):06d}"}

    def view(call: Call) -> dict[str, Any]:
        return {"ok": True, "view": {"id": f"V{next(counter):08d}", **call.params["view"]}}

    fake.handle("chat.postEphemeral", ephemeral)
    fake.handle("views.open", view)
    fake.handle("views.publish", view)
    return fake


def everything_sent(fake: FakeSlack) -> str:
    """Every outgoing call, as text, to search for a canary."""
    return "\n".join(
        json.dumps({"method": c.method, "params": c.params}, default=str) for c in fake.calls()
    )


class SlackDoor:
    """Signed requests into ``POST /slack/events``, as Slack sends them."""

    def __init__(self, http: httpx.AsyncClient, fake: FakeSlack, secret: str = SIGNING_SECRET):
        self.http = http
        self.fake = fake
        self.secret = secret
        self._ids = itertools.count(1)

    async def post(
        self, body: bytes, content_type: str, *, timestamp: int | None = None, **headers: str
    ) -> httpx.Response:
        ts = int(time.time()) if timestamp is None else timestamp
        sent = {"Content-Type": content_type, **sign(body, ts, self.secret), **headers}
        return await self.http.post("/slack/events", content=body, headers=sent)

    def response_url(self) -> str:
        return f"{self.fake.url}response/{next(self._ids)}"

    def command_body(self, text: str, user: str, *, response_url: str | None = None) -> bytes:
        form = {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "team_domain": "irbot-tests",
            "channel_id": CHANNEL,
            "channel_name": "incidents",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/incident",
            "text": text,
            "api_app_id": "A0IRBOT01",
            "response_url": response_url or self.response_url(),
            "trigger_id": f"{next(self._ids)}.1.trigger",
        }
        return urlencode(form).encode()

    async def command(self, text: str, user: str, **kw: Any) -> httpx.Response:
        """``/incident <text>`` typed by ``user``."""
        body = self.command_body(text, user, **kw)
        return await self.post(body, "application/x-www-form-urlencoded")

    def click_payload(
        self, action_id: str, value: str, user: str, *, thread_ts: str = "1700000000.000100"
    ) -> dict[str, Any]:
        return {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
            "api_app_id": "A0IRBOT01",
            "token": "legacy-verification-token",
            "container": {
                "type": "message",
                "message_ts": "1700000000.000200",
                "channel_id": CHANNEL,
                "is_ephemeral": False,
                "thread_ts": thread_ts,
            },
            "trigger_id": f"{next(self._ids)}.1.trigger",
            "team": {"id": TEAM_ID, "domain": "irbot-tests"},
            "channel": {"id": CHANNEL, "name": "incidents"},
            "message": {"type": "message", "ts": "1700000000.000200", "thread_ts": thread_ts},
            "response_url": self.response_url(),
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "irbot_block",
                    "value": value,
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }

    async def interact(self, payload: Mapping[str, Any], **kw: Any) -> httpx.Response:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return await self.post(body, "application/x-www-form-urlencoded", **kw)

    async def click(self, action_id: str, value: str, user: str) -> httpx.Response:
        """``user`` clicks the button ``action_id`` carrying ``value``."""
        return await self.interact(self.click_payload(action_id, value, user))

    def submission(
        self, view: Mapping[str, Any], user: str, typed: Mapping[tuple[str, str], str]
    ) -> dict[str, Any]:
        """A view_submission of ``view`` (as the app opened it) with ``typed`` inputs."""
        state: dict[str, dict[str, Any]] = {}
        for (block_id, action_id), value in typed.items():
            state.setdefault(block_id, {})[action_id] = {"type": "plain_text_input", "value": value}
        return {
            "type": "view_submission",
            "team": {"id": TEAM_ID, "domain": "irbot-tests"},
            "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
            "api_app_id": "A0IRBOT01",
            "token": "legacy-verification-token",
            "trigger_id": f"{next(self._ids)}.1.trigger",
            "view": {**view, "id": view.get("id", "V0TEST"), "state": {"values": state}},
            "response_urls": [],
        }

    async def submit(
        self, view: Mapping[str, Any], user: str, typed: Mapping[tuple[str, str], str]
    ) -> httpx.Response:
        return await self.interact(self.submission(view, user, typed))

    async def event(self, event: Mapping[str, Any]) -> httpx.Response:
        body = json.dumps(
            {
                "token": "legacy-verification-token",
                "team_id": TEAM_ID,
                "api_app_id": "A0IRBOT01",
                "event": dict(event),
                "type": "event_callback",
                "event_id": f"Ev{next(self._ids):08d}",
                "event_time": int(time.time()),
            }
        ).encode()
        return await self.post(body, "application/json")


@asynccontextmanager
async def open_door(
    service: Service,
    fake: FakeSlack,
    *,
    now: Callable[[], float] = time.time,
    secret: str = SIGNING_SECRET,
    **kw: Any,
) -> AsyncIterator[SlackDoor]:
    """The app built for ``service``, served through its HTTP handler."""
    client = AsyncWebClient(token=BOT_TOKEN, base_url=fake.url)
    app = build_app(service, signing_secret=secret, bot_token=BOT_TOKEN, client=client, **kw)
    handler = slack_route_handler(app, now=now)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    web = Starlette(routes=[Route("/slack/events", events, methods=["POST"])])
    transport = httpx.ASGITransport(app=web)
    async with httpx.AsyncClient(transport=transport, base_url="http://irbot.test") as http:
        yield SlackDoor(http, fake, secret)


async def until(check: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def next_call(fake: FakeSlack, method: str, seen: int, **kw: Any) -> Call:
    """The call of ``method`` after the first ``seen`` ones."""
    calls = await until(lambda: fake.calls(method)[seen:], what=f"a {method} call", **kw)
    return calls[0]  # type: ignore[no-any-return]


def ack_text(response: httpx.Response) -> str:
    """The text of an ack (JSON body) or the empty string for an empty ack."""
    assert response.status_code == 200, response.text
    if not response.content:
        return ""
    return str(response.json().get("text", ""))


def buttons(rendered: blocks.Rendered) -> dict[str, str]:
    """action_id -> value of every button in a rendered message."""
    found: dict[str, str] = {}
    for block in rendered.blocks:
        for element in block.get("elements", []):
            if element.get("type") == "button":
                found[element["action_id"]] = element["value"]
    return found


def harness(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Harness:
    h = Harness(tmp_path, database_url, monkeypatch)
    for text in (GATED, SHORT, HANDOVER, TASKED):
        h.add_playbook(text)
    return h


def run_with_engine(h: Harness, scenario: Callable[[Service], Any]) -> None:
    """Start a worker in a fresh event loop, play ``scenario(service)``, stop the worker."""

    async def main() -> None:
        await h.start()
        try:
            await scenario(Service(h.settings, h.store))
        finally:
            h.stop()

    asyncio.run(main())
