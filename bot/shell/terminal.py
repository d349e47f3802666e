"""The shell's screen: replies to you, incident threads, notices; rich colour on a
terminal, plain text otherwise (pipes, scripts, tests).

Plain lines, one per printed line::

    -> :rocket: Started gated as run-1a2b… for INC-1. …    a reply to you alone
    INC-1 # INC-1: gated: target=db-1 (opened, starting)    an incident's root message
    INC-1   > Approval needed at gate gate of run run-1a2b…   a message in its thread
    INC-1   >   Plan: boom                                   …and the rest of it
    -- you are U02 (sre)                                     the shell itself

Everything is printed from the event loop's thread. While a prompt waits for input the
prompt line is cleared before printing and drawn again after (with what was typed so
far), so a thread update never scrambles a half-typed command.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from bot.shell import mrkdwn
from bot.shell.thread import ThreadLine, block_lines

if TYPE_CHECKING:
    from rich.console import Console

    from bot.slack.dispatch import Reply

_PLAIN = {"reply": "-> ", "more": "   ", "notice": "-- ", "root": " # ", "line": "   > "}
_RICH = {"reply": "→ ", "more": "  ", "notice": "· ", "root": " ┃ ", "line": "   ↳ "}
_DETAIL = "  "


class Terminal:
    def __init__(self, stream: TextIO, *, color: bool) -> None:
        self.stream = stream
        self.color = color
        self.marks = _RICH if color else _PLAIN
        self._console: Console | None = None
        if color:
            from rich.console import Console

            # Forced: --color asks for colour even where rich would not guess it.
            self._console = Console(
                file=stream,
                force_terminal=True,
                highlight=False,
                emoji=False,
                soft_wrap=True,
                markup=False,
            )
        self.prompt: str | None = None
        """The prompt shown while input is awaited (None: nothing to redraw)."""
        self.typed: Callable[[], str] = lambda: ""
        """What has been typed after the prompt so far (readline's buffer)."""

    # ------------------------------------------------------------------ what is printed

    def reply(self, reply: Reply) -> None:
        """An answer to you alone: its blocks when Slack would show them, else its text."""
        texts = block_lines(reply.blocks) if reply.blocks else reply.text.splitlines()
        self._lines(self.marks["reply"], texts, "yellow" if reply.refused else None)

    def error(self, text: str) -> None:
        """An error (IrbotError.show(), in Slack's words): red, and the session goes on."""
        self._lines(self.marks["reply"], text.splitlines(), "red")

    def notice(self, text: str) -> None:
        """The shell speaking for itself (start, who you are, help, goodbye)."""
        self._lines(self.marks["notice"], text.splitlines(), "dim")

    def newline(self) -> None:
        self._write("\n")
        self.stream.flush()

    def interrupted(self) -> None:
        """Ctrl-C: leave the prompt line and say goodbye."""
        if self.prompt is not None:
            self.prompt = None
            self._write("\n")
        self.notice("bye")

    def echo(self, prompt: str, line: str) -> None:
        """A line read from a pipe, shown as if typed, so a transcript reads in order."""
        self._print([("", prompt + line, "bold")], markdown=False)

    def thread(self, lines: Sequence[ThreadLine]) -> None:
        rows = []
        for line in lines:
            if line.root:
                mark = line.incident_id + self.marks["root"]
            else:
                mark = line.incident_id + self.marks["line"] + (_DETAIL if line.detail else "")
            rows.append((mark, line.text, "yellow" if line.hint else None))
        self._print(rows)

    # ------------------------------------------------------------------ how

    def _lines(self, first: str, texts: Sequence[str], style: str | None) -> None:
        """A message of several lines: the mark on the first, the rest indented."""
        marks = [first] + [self.marks["more"]] * (max(len(texts), 1) - 1)
        self._print(list(zip(marks, texts or [""], [style] * len(marks), strict=True)))

    def _print(self, rows: Sequence[tuple[str, str, str | None]], *, markdown: bool = True) -> None:
        redraw = self.prompt is not None
        if redraw:
            self._write("\r\x1b[2K")  # the prompt line goes; it is drawn again below
        for mark, text, style in rows:
            if self._console is not None:
                self._console.print(self._rich(mark, text, style, markdown))
            else:
                self._write(mark + (mrkdwn.plain(text) if markdown else text) + "\n")
        if redraw and self.prompt is not None:
            self._write(self.prompt + self.typed())
        self.stream.flush()

    def _rich(self, mark: str, text: str, style: str | None, markdown: bool) -> object:
        from rich.text import Text

        out = Text()
        if mark.startswith("INC-"):
            incident, _, rest = mark.partition(" ")
            out.append(incident, style="bold magenta")
            out.append(" " + rest, style="dim")
        else:
            out.append(mark, style="dim")
        pieces = mrkdwn.segments(text) if markdown else [mrkdwn.Segment(text)]
        for piece in pieces:
            combined = " ".join(s for s in (style, piece.style) if s) or None
            out.append(mrkdwn.emoji(piece.text), style=combined or "")
        return out

    def _write(self, text: str) -> None:
        self.stream.write(text)


def wants_color(stream: TextIO = sys.stdout) -> bool:
    """Colour for a terminal, plain text for a pipe or a file."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
