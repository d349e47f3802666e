"""The ASGI application ``irbot serve`` runs: Slack, webhooks, health and metrics.

One Starlette app. Its lifespan makes the process an engine worker (DBOS), starts the
Slack notifier (messages irbot posts by itself), the timeline-fed metrics and, in
Socket Mode, the Slack connection. Routes stay thin: Slack requests go to the Bolt app,
webhooks to :mod:`bot.webhooks`, both of which call :class:`bot.service.Service`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.core.errors import IrbotError
from bot.engine import runtime
from bot.service import Service
from bot.settings import Settings
from bot.store import TimelineStore
from bot.web.metrics import CONTENT_TYPE, AckTimer, Metrics, TimelineMetrics
from bot.web.pages import page_routes
from bot.web.settings import ServerSettings

log = structlog.get_logger("irbot.web")


@dataclass
class Server:
    """What the routes and the lifespan share."""

    settings: Settings
    server: ServerSettings
    store: TimelineStore
    service: Service
    metrics: Metrics
    socket_mode: bool = False
    slack_client: Any = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    started: bool = False


def create_app(
    settings: Settings,
    server: ServerSettings,
    *,
    socket_mode: bool = False,
    slack_client: Any = None,
    worker: bool = True,
) -> Starlette:
    """Build the app; nothing connects until its lifespan starts.

    ``slack_client``: an ``AsyncWebClient`` to use instead of one made from
    ``SLACK_BOT_TOKEN``/``SLACK_API_URL`` (tests). ``worker=False`` serves without
    running the engine in this process (another ``irbot worker`` does).
    """
    server.require_slack(socket_mode=socket_mode)
    store = runtime.open_store(settings)
    service = Service(settings, store)
    metrics = Metrics(store.count_runs_by_status)
    state = Server(settings, server, store, service, metrics, socket_mode, slack_client)
    state.slack_client = slack_client or _slack_client(server)
    slack_app = _slack_app(state)

    routes: list[BaseRoute] = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz(state), methods=["GET"]),
        Route("/metrics", _metrics(metrics), methods=["GET"]),
    ]
    if not socket_mode:
        from bot.slack.app import slack_route_handler

        handler = slack_route_handler(slack_app)

        async def slack_events(request: Request) -> Response:
            response: Response = await handler.handle(request)
            return response

        routes.append(Route("/slack/events", slack_events, methods=["POST"]))
    routes += _webhook_routes(state)
    routes += page_routes(store, server)  # timeline pages, in HTTP and Socket Mode

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await _start(state, slack_app, worker=worker)
        try:
            yield
        finally:
            await _stop(state, worker=worker)

    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(AckTimer, metrics=metrics)],
    )


def _slack_client(server: ServerSettings) -> Any:
    from slack_sdk.http_retry.builtin_async_handlers import (
        AsyncConnectionErrorRetryHandler,
        AsyncRateLimitErrorRetryHandler,
    )
    from slack_sdk.web.async_client import AsyncWebClient

    assert server.slack_bot_token is not None  # require_slack checked it
    return AsyncWebClient(
        token=server.slack_bot_token.get_secret_value(),
        base_url=server.slack_api_url,
        retry_handlers=[
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
        ],
    )


def _slack_app(state: Server) -> Any:
    from bot.slack.app import build_app

    token = state.server.slack_bot_token
    secret = state.server.slack_signing_secret
    assert token is not None
    return build_app(
        state.service,
        signing_secret=secret.get_secret_value() if secret else "",
        bot_token=token.get_secret_value(),
        client=state.slack_client,
    )


def _webhook_routes(state: Server) -> list[BaseRoute]:
    from bot.webhooks import WebhookSecrets, webhook_routes

    secrets = WebhookSecrets.from_server_settings(state.server)
    return list(webhook_routes(state.service, secrets, observe=state.metrics.observe_delivery))


async def _start(state: Server, slack_app: Any, *, worker: bool) -> None:
    from bot.slack.notifier import Notifier

    if worker:
        await runtime.launch(state.settings, store=state.store)
    notifier = Notifier(state.store, state.slack_client, state.service.config)
    follow = TimelineMetrics(state.metrics, state.store)
    _spawn(state, "notifier", notifier.run_forever)
    _spawn(state, "metrics", follow.run_forever)
    _spawn(state, "prune", partial(_prune_deliveries, state.store))
    _spawn(state, "outbox", partial(_restart_pending, state.service))
    if state.socket_mode:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        token = state.server.slack_app_token
        assert token is not None
        handler = AsyncSocketModeHandler(slack_app, token.get_secret_value())
        await handler.connect_async()  # type: ignore[no-untyped-call]
        state.tasks.append(asyncio.create_task(_hold(handler), name="irbot-socket-mode"))
    state.started = True
    log.info("server.started", worker=worker, socket_mode=state.socket_mode)


DELIVERY_RETENTION = timedelta(days=30)
"""How long a webhook delivery id is remembered for dedupe (senders retry for hours)."""
PRUNE_EVERY = 3600.0


async def _prune_deliveries(store: TimelineStore) -> None:
    """Forget old delivery ids at start and then hourly, so the table does not grow
    with every page for ever."""
    while True:
        cutoff = datetime.now(UTC) - DELIVERY_RETENTION
        dropped = await asyncio.to_thread(store.prune_deliveries, cutoff)
        if dropped:
            log.info("webhooks.deliveries_pruned", dropped=dropped, before=cutoff.isoformat())
        await asyncio.sleep(PRUNE_EVERY)


async def _restart_pending(service: Service) -> None:
    """Start what webhook deliveries were answered for but a crash kept from starting."""
    from bot.turns import Turns
    from bot.webhooks.work import STARTS_IN_FLIGHT, restart_pending

    slots = Turns(STARTS_IN_FLIGHT)
    while True:
        await restart_pending(service, slots)
        await asyncio.sleep(OUTBOX_EVERY)


OUTBOX_EVERY = 30.0


async def _hold(handler: Any) -> None:
    try:
        await asyncio.Event().wait()
    finally:
        await handler.close_async()


def _spawn(state: Server, name: str, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def guarded() -> None:
        # A background loop that dies must not take the server down silently: log and
        # restart it after a pause. (Each loop handles its own expected errors.)
        while True:
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - last-resort boundary of a background loop
                log.error("background.crashed", task=name, error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(5)

    state.tasks.append(asyncio.create_task(guarded(), name=f"irbot-{name}"))


async def _stop(state: Server, *, worker: bool) -> None:
    state.started = False
    for task in state.tasks:
        task.cancel()
    for task in state.tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    state.tasks.clear()
    if worker:
        runtime.shutdown()
    else:
        state.store.close()


async def _healthz(request: Request) -> Response:
    """The process is up (liveness)."""
    return JSONResponse({"ok": True})


def _readyz(state: Server) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    async def readyz(request: Request) -> Response:
        """The database answers and the engine runs (readiness)."""
        if not state.started:
            return JSONResponse({"ready": False, "reason": "starting"}, status_code=503)
        try:
            await asyncio.to_thread(state.store.count_runs_by_status)
        except IrbotError as exc:
            return JSONResponse({"ready": False, "reason": exc.message}, status_code=503)
        return JSONResponse({"ready": True})

    return readyz


def _metrics(metrics: Metrics) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    async def endpoint(request: Request) -> Response:
        body = await asyncio.to_thread(metrics.render)
        return Response(body, media_type=CONTENT_TYPE)

    return endpoint
