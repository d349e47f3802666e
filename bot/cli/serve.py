"""``irbot serve``: Slack (HTTP or Socket Mode), webhooks, health and metrics, one process."""

from __future__ import annotations

import sys

import click

from bot.cli.output import console, fail
from bot.core.errors import IrbotError


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--socket-mode",
    is_flag=True,
    help="Talk to Slack over Socket Mode (SLACK_APP_TOKEN): no public URL needed; "
    "webhooks, health and metrics are still served on --host/--port.",
)
@click.option(
    "--no-worker",
    is_flag=True,
    help="Serve only; runs are worked by separate `irbot worker` processes.",
)
def serve(host: str, port: int, socket_mode: bool, no_worker: bool) -> None:
    """Run irbot: the Slack app, webhook triggers, /healthz, /readyz and /metrics.

    Settings come from the environment (see the README's configuration table); a
    missing or malformed one stops the server with a message naming it.
    """
    import uvicorn

    from bot.settings import load_settings
    from bot.web.app import create_app
    from bot.web.settings import load_server_settings

    try:
        settings = load_settings()
        server = load_server_settings()
        app = create_app(settings, server, socket_mode=socket_mode, worker=not no_worker)
    except IrbotError as exc:
        fail(exc, as_json=False)
    mode = "Socket Mode" if socket_mode else f"HTTP mode: POST http://{host}:{port}/slack/events"
    console().print(f"irbot serving on http://{host}:{port} (Slack {mode})", markup=False)
    # The engine's threads (DBOS queue pollers, steps) share the interpreter with the
    # event loop that answers Slack and webhooks; a 1 ms switch interval (default 5 ms)
    # hands the loop the GIL sooner. bench/server_ack.py: PagerDuty burst p99 ~1.6 ->
    # ~1.0 s and /incident status 266 -> 241 ms on the same code.
    sys.setswitchinterval(0.001)
    # log_config=None: uvicorn's lines go through irbot's handler (bot/logs.py), redacted.
    uvicorn.run(app, host=host, port=port, log_level="warning", log_config=None, lifespan="on")
