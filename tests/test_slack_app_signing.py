"""The HTTP door of the Slack app: signatures, timestamps, sizes and shapes, checked before
anything behind it runs. A refused request answers 4xx with a JSON error and does
nothing: no run, no Web API call."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp, AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.engine import runtime
from bot.service import Service
from bot.slack.app import MAX_BODY, build_app, slack_route_handler
from tests.engine_support import Harness
from tests.fake_slack import BOT_TOKEN, FakeSlack, fake_slack_fixture  # noqa: F401
from tests.test_slack_app_support import SIGNING_SECRET, harness, open_door, sign, teach

VECTOR = json.loads(Path("/work/shared/vectors/slack_signature.json").read_text())
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def fake(fake_slack: FakeSlack) -> FakeSlack:
    return teach(fake_slack)


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """A service on a real store, with no worker: starting a run only queues it."""
    h: Harness = harness(tmp_path, f"sqlite:///{tmp_path / 'irbot.sqlite'}", monkeypatch)
    store = runtime.open_store(h.settings)
    try:
        yield Service(h.settings, store)
    finally:
        store.close()


def test_forged_missing_and_replayed_signatures_get_401_and_nothing_happens(
    service: Service, fake: FakeSlack
) -> None:
    """`/incident run gated` signed with the wrong secret, unsigned, replayed 301 s late,
    dated 301 s ahead, with a garbage timestamp or a non-ASCII signature: 401 each time,
    no run and no outgoing call. The same body signed properly does start the run."""

    async def scenario() -> None:
        async with open_door(service, fake, ack_budget=5) as door:
            body = door.command_body("run gated", "U01")
            now = int(time.time())
            post = door.http.post
            attempts = {
                "forged": sign(body, now, "not-the-secret"),
                "unsigned": {},
                "no timestamp": {"X-Slack-Signature": sign(body, now)["X-Slack-Signature"]},
                "replayed": sign(body, now - 301),
                "from the future": sign(body, now + 301),
                "garbage timestamp": {**sign(body, now), "X-Slack-Request-Timestamp": "1e9"},
                "non-ascii signature": {**sign(body, now), "X-Slack-Signature": "v0=\u00e9"},
                "tampered body": sign(body + b"&x=1", now),
            }
            for name, headers in attempts.items():
                sent = {"Content-Type": FORM, **headers}
                encoded = {k: v.encode("latin-1") for k, v in sent.items()}
                response = await post("/slack/events", content=body, headers=encoded)
                assert response.status_code == 401, name
                assert response.json() == {"error": "missing, invalid or expired Slack signature"}
            await asyncio.sleep(0.2)
            assert service.store.list_runs() == []
            assert fake.calls() == []

            accepted = await door.post(body, FORM)
            assert accepted.status_code == 200
            assert "Started *gated*" in accepted.json()["text"]
            assert len(service.store.list_runs()) == 1

    asyncio.run(scenario())


def test_slacks_documented_example_verifies_with_its_clock(
    service: Service, fake: FakeSlack
) -> None:
    """Slack's published signing example passes the door within 300 s of its timestamp
    (then Bolt answers 404: /webhook-collect is not irbot's command) and is refused after."""
    ts = int(VECTOR["timestamp"])
    headers = {
        "Content-Type": FORM,
        "X-Slack-Request-Timestamp": VECTOR["timestamp"],
        "X-Slack-Signature": VECTOR["expected_signature"],
    }
    body = VECTOR["body"].encode()

    async def post(now: float, content: bytes = body) -> httpx.Response:
        async with open_door(
            service, fake, now=lambda: now, secret=VECTOR["signing_secret"]
        ) as door:
            return await door.http.post("/slack/events", content=content, headers=headers)

    async def scenario() -> None:
        within = await post(ts + 299)
        assert within.status_code == 404
        assert within.json() == {"error": "unhandled request"}
        assert (await post(ts + 301)).status_code == 401
        assert (await post(ts - 301)).status_code == 401
        assert (await post(ts + 10, body.replace(b"text=", b"text=x"))).status_code == 401

    asyncio.run(scenario())


def test_oversize_and_malformed_bodies_are_4xx_never_500(service: Service, fake: FakeSlack) -> None:
    """A body over 1 MiB is refused (413) before its signature is even checked; signed
    bodies that are not Slack payloads (bad JSON in payload=, not UTF-8) get 400."""

    async def scenario() -> None:
        async with open_door(service, fake) as door:
            huge = b"payload=" + b"x" * MAX_BODY
            too_big = await door.post(huge, FORM)
            assert too_big.status_code == 413
            assert "over 1048576 bytes" in too_big.json()["error"]
            lying = await door.http.post(
                "/slack/events", content=huge, headers={"Content-Length": "10"}
            )
            assert lying.status_code in (400, 413)

            bad_json = await door.post(b"payload=%7Bnot-json", FORM)
            assert bad_json.status_code == 400
            assert bad_json.json() == {"error": "the request body is not a Slack payload"}
            not_utf8 = await door.post(b"text=\xff\xfe", FORM)
            assert not_utf8.status_code == 400
        assert fake.calls() == []

    asyncio.run(scenario())


def test_without_a_signing_secret_nothing_gets_in(service: Service, fake: FakeSlack) -> None:
    """An app built with an empty signing secret (Socket Mode only) refuses every HTTP
    request, including one signed with the empty key."""

    async def scenario() -> None:
        async with open_door(service, fake, secret="") as door:
            response = await door.command("help", "U01")
            assert response.status_code == 401

    asyncio.run(scenario())


def test_mounting_the_app_without_the_door_fails_closed(service: Service, fake: FakeSlack) -> None:
    """Served through Bolt's stock Starlette handler instead of slack_route_handler, even a
    correctly signed request is refused: signatures are only checked at irbot's door."""
    client = AsyncWebClient(token=BOT_TOKEN, base_url=fake.url)
    app = build_app(service, signing_secret=SIGNING_SECRET, bot_token=BOT_TOKEN, client=client)
    stock = AsyncSlackRequestHandler(app)

    async def events(request: Request) -> Response:
        return await stock.handle(request)

    web = Starlette(routes=[Route("/slack/events", events, methods=["POST"])])

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=web)
        async with httpx.AsyncClient(transport=transport, base_url="http://irbot.test") as http:
            body = b"command=%2Fincident&text=help&user_id=U01&team_id=T1"
            headers = {"Content-Type": FORM, **sign(body, int(time.time()))}
            response = await http.post("/slack/events", content=body, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"error": "request not verified"}

    asyncio.run(scenario())
    with pytest.raises(TypeError, match="build_app"):
        slack_route_handler(AsyncApp(signing_secret="x", token="xoxb-x", name="other"))


def test_url_verification_and_socket_mode_pass(service: Service, fake: FakeSlack) -> None:
    """Slack's signed url_verification (sent when the manifest's event URL is saved) is
    answered with its challenge; a Socket Mode request, which arrives over an
    authenticated socket and has no signature, reaches the listeners."""

    async def scenario() -> None:
        async with open_door(service, fake) as door:
            body = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "t"})
            response = await door.post(body.encode(), "application/json")
            assert response.status_code == 200
            assert response.json() == {"challenge": "c-123"}
        client = AsyncWebClient(token=BOT_TOKEN, base_url=fake.url)
        app = build_app(service, signing_secret="", bot_token=BOT_TOKEN, client=client)
        form = "command=%2Fincident&text=help&user_id=U01&team_id=T1&response_url=x"
        answer = await app.async_dispatch(AsyncBoltRequest(body=form, mode="socket_mode"))
        assert answer.status == 200
        assert "/incident run PLAYBOOK" in json.loads(answer.body)["text"]

    asyncio.run(scenario())
