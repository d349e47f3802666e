"""The Bolt app: ``/incident``, the Approve/Reject/Done/Failed buttons and their forms,
and App Home — plus the HTTP door it is served through.

::

    server ──POST /slack/events──> SlackRequestHandler.handle
                                     size cap (413) -> signature + timestamp (401)
                                     -> parse (400) -> Bolt AsyncApp.async_dispatch
                                                         ├─ commands.py  /incident …
                                                         ├─ votes.py     Approve / Reject
                                                         ├─ tasks.py     Done / Failed
                                                         └─ home.py      app_home_opened

The signature is checked at the door, before Bolt parses anything, instead of by Bolt's
own middleware: that one logs the whole body of a refused request, and a replayed form
submission would put a handed-over secret in the log. A global middleware still refuses
any HTTP request that did not come through the door, so mounting the app another way
fails closed. Socket Mode requests arrive over an authenticated socket and pass.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from slack_bolt import BoltResponse
from slack_bolt.adapter.starlette.async_handler import (
    AsyncSlackRequestHandler,
    to_async_bolt_request,
    to_starlette_response,
)
from slack_bolt.async_app import AsyncApp, AsyncBoltRequest
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from bot.service import Service
from bot.slack import commands, home, tasks, votes

log = structlog.get_logger("irbot.slack")

MAX_BODY = 1024 * 1024
"""Slack's payloads are a few KiB; anything near this is not from Slack."""
VERIFIED = "irbot_signature_verified"
"""Context flag set by :class:`SlackRequestHandler` on requests it verified."""
SLACK_API_URL = "https://slack.com/api/"


class IrbotApp(AsyncApp):
    """An :class:`AsyncApp` that remembers its signing secret for the HTTP door."""

    def __init__(self, *, signing_secret: str, **kwargs: Any) -> None:
        super().__init__(
            signing_secret=signing_secret, request_verification_enabled=False, **kwargs
        )
        self.irbot_signing_secret = signing_secret


def build_app(
    service: Service,
    *,
    signing_secret: str,
    bot_token: str,
    client: AsyncWebClient | None = None,
    ack_budget: float = commands.ACK_BUDGET,
) -> AsyncApp:
    """The Bolt app for one workspace, its listeners bound to ``service``.

    ``client`` sets the Web API base URL and retry handlers (tests point it at a fake);
    its token is not used: every request is authorized with ``bot_token`` locally, so
    nothing calls ``auth.test``. Serve it over HTTP only through :func:`slack_route_handler`.
    """
    app = IrbotApp(
        name="irbot",
        signing_secret=signing_secret,
        client=_client(client),
        authorize=_authorize(bot_token),
        process_before_response=False,
    )
    app.use(_only_verified)
    commands.register(app, service, budget=ack_budget)
    votes.register(app, service)
    tasks.register(app, service)
    home.register(app, service)
    return app


def _client(given: AsyncWebClient | None) -> AsyncWebClient:
    """A token-less copy (Bolt gives each request its own client with the authorized
    token) that retries rate limits (429 + Retry-After) and dropped connections."""
    handlers = list(given.retry_handlers or []) if given is not None else []
    if not any(isinstance(h, AsyncRateLimitErrorRetryHandler) for h in handlers):
        handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=3))
    if not any(isinstance(h, AsyncConnectionErrorRetryHandler) for h in handlers):
        handlers.append(AsyncConnectionErrorRetryHandler(max_retry_count=2))
    if given is None:
        return AsyncWebClient(base_url=SLACK_API_URL, retry_handlers=handlers)
    return AsyncWebClient(
        base_url=given.base_url,
        timeout=given.timeout,
        ssl=given.ssl,
        proxy=given.proxy,
        headers=given.headers,
        retry_handlers=handlers,
    )


def _authorize(bot_token: str) -> Callable[..., Awaitable[AuthorizeResult]]:
    async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=bot_token)

    return authorize


async def _only_verified(
    req: AsyncBoltRequest, next: Callable[[], Awaitable[BoltResponse]]
) -> BoltResponse:
    if req.mode == "socket_mode" or req.context.get(VERIFIED) is True:
        return await next()
    return BoltResponse(status=401, body={"error": "request not verified"})


class _Clock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class _TooLarge(Exception):
    pass


class SlackRequestHandler(AsyncSlackRequestHandler):
    """``POST /slack/events``: check size and signature, then hand over to Bolt.

    Refusals answer with a JSON ``{"error": ...}`` and log neither the body nor the
    headers; nothing behind the door runs for them.
    """

    def __init__(
        self, app: IrbotApp, *, now: Callable[[], float] = time.time, max_body: int = MAX_BODY
    ) -> None:
        super().__init__(app)
        secret = app.irbot_signing_secret
        self.verifier = SignatureVerifier(secret, clock=_Clock(now)) if secret.strip() else None
        self.max_body = max_body

    async def handle(
        self, req: Request, addition_context_properties: dict[str, Any] | None = None
    ) -> Response:
        if req.method != "POST":
            return _refuse(405, "use POST")
        try:
            body = await _read(req, self.max_body)
        except _TooLarge:
            return _refuse(413, f"request body over {self.max_body} bytes")
        except ClientDisconnect:
            return _refuse(400, "the client went away")
        try:
            body.decode("utf-8")  # Slack sends UTF-8; the verifier decodes before hashing
        except UnicodeDecodeError:
            return _refuse(400, _NOT_SLACK)
        if not self._signed(
            body, req.headers.get("x-slack-request-timestamp"), req.headers.get("x-slack-signature")
        ):
            return _refuse(401, "missing, invalid or expired Slack signature")
        try:
            bolt_request = to_async_bolt_request(
                req, body, {**(addition_context_properties or {}), VERIFIED: True}
            )
        except ValueError:  # a payload that is not JSON
            return _refuse(400, _NOT_SLACK)
        return to_starlette_response(await self.app.async_dispatch(bolt_request))

    def _signed(self, body: bytes, timestamp: str | None, signature: str | None) -> bool:
        if self.verifier is None:  # no secret configured: nothing can be verified
            return False
        if not timestamp or not signature or len(timestamp) > 12:
            return False
        if not (timestamp.isascii() and timestamp.isdigit() and signature.isascii()):
            return False
        return self.verifier.is_valid(body=body, timestamp=timestamp, signature=signature)


_NOT_SLACK = "the request body is not a Slack payload"


def _refuse(status: int, message: str) -> Response:
    log.warning("slack.request_refused", status=status, reason=message)
    return JSONResponse({"error": message}, status_code=status)


async def _read(req: Request, limit: int) -> bytes:
    """The body, read in chunks and abandoned past ``limit`` (Content-Length may lie)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in req.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def slack_route_handler(
    app: AsyncApp, *, now: Callable[[], float] = time.time, max_body: int = MAX_BODY
) -> SlackRequestHandler:
    """The handler to mount at ``POST /slack/events``: ``await handler.handle(request)``.

    ``now`` is the clock signatures are checked against (tests inject one).
    """
    if not isinstance(app, IrbotApp):
        raise TypeError("slack_route_handler serves apps made by bot.slack.app.build_app")
    return SlackRequestHandler(app, now=now, max_body=max_body)
