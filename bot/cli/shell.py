"""``irbot shell``: chat with irbot in the terminal, as in Slack (see :mod:`bot.shell`)."""

from __future__ import annotations

import asyncio
import sys

import click

from bot.cli.output import fail
from bot.core.errors import IrbotError


@click.command()
@click.option(
    "--as",
    "user",
    metavar="USER",
    help="Who you are at first (a member id from irbot.yaml; default: the first member "
    "of its first group). `/as USER` switches later.",
)
@click.option(
    "--color/--no-color",
    default=None,
    help="Colour and symbols (default: when the output is a terminal).",
)
def shell(user: str | None, color: bool | None) -> None:
    """Chat with irbot here: type /incident commands as in Slack, press buttons by
    typing them (approve RUN, reject RUN reason, done RUN, failed RUN reason), and
    see each incident's thread as Slack shows it.

    \b
    This process is an engine worker, so runs go on while you type. Reads lines from
    stdin (a pipe works too); end of input or /quit leaves. Logs go to
    $IRBOT_DATA_DIR/shell.log.
    """
    from bot.core.config import load_config
    from bot.settings import load_settings
    from bot.shell import lines, people

    # Settings, irbot.yaml and --as are checked before the engine is even imported.
    try:
        settings = load_settings()
        if user is not None:
            lines.member(user)  # the check /as makes
        config = load_config(settings.config_path)
        me = user or people.default_user(config)
    except IrbotError as exc:
        fail(exc, as_json=False)
    from bot.shell import session
    from bot.shell.terminal import Terminal, wants_color

    terminal = Terminal(sys.stdout, color=wants_color(sys.stdout) if color is None else color)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    logs = session.configure_logs(settings)
    try:
        code = asyncio.run(
            session.run(settings, me, stdin=sys.stdin, terminal=terminal, interactive=interactive)
        )
    except IrbotError as exc:
        fail(exc, as_json=False)
    except KeyboardInterrupt:
        terminal.interrupted()
        code = 130
    finally:
        logs.close()
    raise SystemExit(code)
