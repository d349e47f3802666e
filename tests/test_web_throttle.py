"""Guessing the pages' access token: wrong tokens are counted per client address, and a
client over the limit gets 429 with Retry-After until its window has passed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from structlog.testing import capture_logs

from bot.store import TimelineStore
from bot.web.auth import COOKIE, WebAuth
from bot.web.pages import Pages
from bot.web.throttle import FailureThrottle

TOKEN = "the-right-token-0123456789"
WRONG = "not-the-token-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(tmp_path: Path, clock: Clock) -> Iterator[Starlette]:
    with TimelineStore(f"sqlite:///{tmp_path / 'irbot.sqlite'}") as store:
        store.migrate()
        throttle = FailureThrottle(limit=3, window=60, clock=clock)
        pages = Pages(store, WebAuth(SecretStr(TOKEN)), "https://x.slack.com", throttle)
        yield Starlette(routes=pages.routes())


class Door:
    """Requests into the app from one client address (through httpx's ASGI transport)."""

    def __init__(self, app: Starlette, address: str) -> None:
        self.transport = httpx.ASGITransport(app=app, client=(address, 40000))

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            async with httpx.AsyncClient(
                transport=self.transport, base_url="http://irbot.test"
            ) as http:
                return await http.request(method, path, **kw)

        return asyncio.run(send())

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)


def client(app: Starlette, address: str) -> Door:
    return Door(app, address)


def login(door: Door, token: str) -> int:
    return door.post("/login", data={"token": token, "next": "/incidents"}).status_code


def test_a_guesser_is_stopped_and_let_in_again_after_the_window(
    app: Starlette, clock: Clock
) -> None:
    """Three wrong tokens (a login form and Bearer headers alike), then 429 with
    Retry-After even for the right token, which is not looked at (logged once per block,
    not per request); a minute after the first failure the right token works again."""
    guesser = client(app, "203.0.113.7")
    assert login(guesser, WRONG) == 401
    assert (
        guesser.get("/incidents", headers={"Authorization": f"Bearer {WRONG}"}).status_code == 401
    )
    clock.now += 10
    assert login(guesser, WRONG) == 401

    with capture_logs() as logs:
        refused = guesser.post("/login", data={"token": TOKEN})
        bearer = guesser.get("/incidents", headers={"Authorization": f"Bearer {TOKEN}"})
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "50"
    assert "Too many wrong access tokens" in refused.text
    assert "set-cookie" not in refused.headers
    assert bearer.status_code == 429
    throttled = [e for e in logs if e["event"] == "web.token_attempts_throttled"]
    assert [(e["client"], e["retry_after"]) for e in throttled] == [("203.0.113.7", 50)]

    clock.now += 50  # the first two failures are a minute old
    assert (
        guesser.get("/incidents", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    )
    assert login(guesser, TOKEN) == 303


def test_others_and_sessions_are_not_held_up(app: Starlette) -> None:
    """One address over the limit: another address logs in, and a browser's session
    cookie from the blocked address still opens the pages (cookies are signed, there is
    nothing to guess)."""
    guesser = client(app, "203.0.113.7")
    session = client(app, "198.51.100.2").post("/login", data={"token": TOKEN})
    assert session.status_code == 303
    cookie = session.cookies[COOKIE]
    for _ in range(3):
        assert login(guesser, WRONG) == 401
    assert login(guesser, TOKEN) == 429

    assert login(client(app, "198.51.100.9"), TOKEN) == 303
    opened = guesser.get("/incidents", headers={"Cookie": f"{COOKIE}={cookie}"})
    assert opened.status_code == 200


def test_the_right_token_clears_a_mistyped_count(app: Starlette) -> None:
    """Two typos, then the right token: the count starts again."""
    person = client(app, "192.0.2.4")
    assert [login(person, WRONG) for _ in range(2)] == [401, 401]
    assert login(person, TOKEN) == 303
    assert [login(person, WRONG) for _ in range(2)] == [401, 401]
    assert login(person, TOKEN) == 303


def test_the_quietest_client_is_forgotten_first(clock: Clock) -> None:
    throttle = FailureThrottle(limit=1, window=60, max_clients=2, clock=clock)
    for address in ("a", "b", "c"):
        throttle.failed(address)
    assert throttle.retry_after("a") is None  # dropped to make room
    assert throttle.retry_after("b") == 60
    assert throttle.retry_after("c") == 60
