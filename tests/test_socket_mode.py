"""`irbot serve --socket-mode` over a real WebSocket: a local Socket Mode endpoint (aiohttp)
hands the app a slash command envelope and receives its ack, as Slack's would.

The fake Web API answers ``apps.connections.open`` with this endpoint's ``ws://`` URL;
the app's lifespan connects to it (slack_bolt's AsyncSocketModeHandler on aiohttp).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from aiohttp import WSMsgType, web

from bot.settings import load_settings
from bot.web.app import create_app
from bot.web.settings import load_server_settings
from tests.engine_support import Harness
from tests.fake_slack import BOT_TOKEN, Call, FakeSlack, fake_slack_fixture  # noqa: F401
from tests.serving import free_port
from tests.test_slack_app_support import GATED, teach

APP_TOKEN = "xapp-1-A0IRBOT01-0000-socketmodetesttoken"


class SocketModeEndpoint:
    """Slack's side of one Socket Mode connection: hello, envelopes out, acks in."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connected = asyncio.Event()
        self.acks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.socket: web.WebSocketResponse | None = None

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.socket = ws
        await ws.send_json({"type": "hello", "num_connections": 1, "debug_info": {}})
        self.connected.set()
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await self.acks.put(json.loads(message.data))
        return ws

    async def send(self, envelope: dict[str, Any]) -> None:
        assert self.socket is not None
        await self.socket.send_json(envelope)


def test_slash_command_over_socket_mode_is_acked_with_the_run_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_slack: FakeSlack
) -> None:
    """No signing secret, no public URL: the app connects out, gets `/incident run`,
    acks the envelope with the run id, and the run is queued."""
    h = Harness(tmp_path / "irbot", None, monkeypatch)
    h.add_playbook(GATED)
    teach(fake_slack)
    endpoint = SocketModeEndpoint()
    fake_slack.handle(
        "apps.connections.open",
        lambda call: {"ok": True, "url": f"ws://127.0.0.1:{endpoint.port}/link"},
    )
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_APP_TOKEN", APP_TOKEN)
    monkeypatch.setenv("SLACK_API_URL", fake_slack.url)
    monkeypatch.delenv("SLACK_SIGNING_SECRET", raising=False)

    async def scenario() -> None:
        app = web.Application()
        app.router.add_get("/link", endpoint.handler)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", endpoint.port).start()
        app_ = create_app(load_settings(), load_server_settings(), socket_mode=True)
        # Started from a thread: this loop must stay free to serve the WebSocket.
        server = await asyncio.to_thread(ServedInThread, app_)
        try:
            await asyncio.wait_for(endpoint.connected.wait(), timeout=60)
            await endpoint.send(
                {
                    "envelope_id": "env-1",
                    "type": "slash_commands",
                    "accepts_response_payload": True,
                    "payload": {
                        "team_id": "T0IRBOT01",
                        "channel_id": "C0INCIDENTS",
                        "user_id": "U01",
                        "command": "/incident",
                        "text": "run gated target=db-9",
                        "api_app_id": "A0IRBOT01",
                        "response_url": f"{fake_slack.url}response/1",
                        "trigger_id": "1.1.trigger",
                    },
                }
            )
            ack = await asyncio.wait_for(endpoint.acks.get(), timeout=30)
            assert ack["envelope_id"] == "env-1"
            text = json.dumps(ack.get("payload", {}))
            assert "run-" in text, ack
            opened: list[Call] = fake_slack.calls("apps.connections.open")
            assert opened
            assert opened[0].token == APP_TOKEN
        finally:
            await asyncio.to_thread(server.stop)
            await runner.cleanup()
        runs = h.irbot("runs", "--json")
        assert json.loads(runs.stdout)[0]["playbook"] == "gated"

    asyncio.run(scenario())


class ServedInThread:
    """uvicorn running ``app`` (lifespan on) in a thread with its own event loop."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
