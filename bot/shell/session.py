"""The shell's loop: an engine worker in this process, a line at a time from stdin, and
the incident threads printed as they change.

Each line is parsed (:mod:`bot.shell.lines`), answered by one service call
(:mod:`bot.shell.answers`) and the answer printed; meanwhile a :class:`Follower` prints
new timeline events as Slack would show them. Errors print in red and the session goes
on; the end of input or ``/quit`` leaves cleanly (exit 0) after a last look at the
timeline. Runs that are still going stay queued for the next worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TextIO

import structlog

from bot import __version__, logs
from bot.core.config import load_config
from bot.core.errors import IrbotError
from bot.core.redaction import Redactor
from bot.service import Service
from bot.settings import Settings
from bot.shell import answers, lines
from bot.shell.people import who
from bot.shell.reader import LineReader
from bot.shell.terminal import Terminal
from bot.shell.thread import Follower
from bot.slack import replies
from bot.slack.blocks import escape

log = structlog.get_logger("irbot.shell")

LOG_FILE = "shell.log"

_REDACT = Redactor()


class Session:
    """One person at the keyboard, who may be anyone from irbot.yaml (``/as``)."""

    def __init__(self, service: Service, terminal: Terminal, user: str) -> None:
        self.service = service
        self.terminal = terminal
        self.user = user

    @property
    def prompt(self) -> str:
        return f"{self.user}> "

    async def handle(self, line: str) -> bool:
        """Answer one typed line; False when the session should end."""
        try:
            command = lines.parse(line)
            if isinstance(command, lines.Quit):
                return False
            await self._answer(command)
        except IrbotError as exc:
            self.terminal.error(replies.error(exc))
        except Exception as exc:  # noqa: BLE001 - the shell's last-resort boundary
            # A bug must not end a session whose worker is carrying runs: log the type
            # and a redacted message (never the typed line) and answer as Slack would.
            log.error("shell.command_failed", error=type(exc).__name__, detail=_detail(exc))
            self.terminal.error(replies.failure())
        return True

    async def _answer(self, command: lines.Command) -> None:
        user = self.user
        if isinstance(command, lines.Empty):
            return
        if isinstance(command, lines.ShowHelp):
            self.terminal.notice(lines.HELP)
        elif isinstance(command, lines.SwitchUser):
            config = await asyncio.to_thread(self.service.config)
            if command.user is not None:
                self.user = command.user
                self.terminal.notice(f"you are now {who(config, self.user)}")
            else:
                self.terminal.notice(f"you are {who(config, self.user)}")
        elif isinstance(command, lines.Incident):
            self.terminal.reply(await answers.incident(self.service, command.text, user))
        elif isinstance(command, lines.Vote):
            self.terminal.reply(await answers.vote(self.service, command, user))
        elif isinstance(command, lines.TaskAnswer):
            self.terminal.reply(await answers.task(self.service, command, user))


def configure_logs(settings: Settings) -> TextIO:
    """Logs (redacted JSON lines, bot/logs.py) go to DATA_DIR/shell.log: on the screen they
    would break into the conversation. Returns the open file, for the caller to close."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    handle = (settings.data_dir / LOG_FILE).open("a", encoding="utf-8")
    logs.configure(json=True, stream=handle)
    return handle


def _detail(exc: BaseException | None) -> str:
    return _REDACT.text(str(exc))[:500]


async def run(
    settings: Settings,
    user: str,
    *,
    stdin: TextIO,
    terminal: Terminal,
    interactive: bool,
) -> int:
    """The whole session as ``user``; returns the exit code. Raises :class:`IrbotError`
    if it cannot start (irbot.yaml, the database)."""
    from bot.engine import runtime

    config = await asyncio.to_thread(load_config, settings.config_path)
    terminal.notice(f"irbot shell {__version__}: you are {who(config, user)}; starting the engine…")
    rt = await runtime.launch(settings)
    try:
        service = Service(settings, rt.store)
        session = Session(service, terminal, user)
        head = await asyncio.to_thread(rt.store.head_seq)
        follower = Follower(rt.store, terminal.thread, _store_trouble(terminal), after=head)
        following = asyncio.create_task(follower.run(), name="irbot-shell-thread")
        following.add_done_callback(_thread_stopped(terminal))
        approvals = (
            "on" if settings.local_approvals else "off (IRBOT_LOCAL_APPROVALS=1 turns them on)"
        )
        terminal.notice(f"ready. Buttons (approve, done…): {approvals}. Type /help, or /quit.")
        try:
            await _loop(
                session, terminal, follower, LineReader(stdin, interactive=interactive), interactive
            )
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
        await follower.refresh()
        terminal.notice("bye")
    finally:
        runtime.shutdown()
    return 0


async def _loop(
    session: Session,
    terminal: Terminal,
    follower: Follower,
    reader: LineReader,
    interactive: bool,
) -> None:
    terminal.typed = reader.typed
    while True:
        prompt = session.prompt
        terminal.prompt = prompt if interactive else None
        line = await reader.read(prompt)
        terminal.prompt = None
        if line is None:
            if interactive:
                terminal.newline()  # Ctrl-D leaves the cursor after the prompt
            return
        if not interactive:
            terminal.echo(prompt, line)
        if not await session.handle(line):
            return
        # What the command set off so far, before the next prompt: reads in order.
        await follower.refresh()


def _store_trouble(terminal: Terminal) -> Callable[[IrbotError], None]:
    def show(exc: IrbotError) -> None:
        terminal.error(f":warning: cannot read the timeline, retrying: {escape(exc.show())}")

    return show


def _thread_stopped(terminal: Terminal) -> Callable[[asyncio.Task[None]], None]:
    """A bug that stops the thread follower is logged and said; the session goes on."""

    def done(task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("shell.thread_failed", error=type(exc).__name__, detail=_detail(exc))
        terminal.error(replies.failure() + " Incident threads stop here; commands still work.")

    return done
