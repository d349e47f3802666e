"""Typed lines, read without blocking the event loop (the engine runs in that loop).

A daemon thread does the blocking read, one line per request, so the loop keeps
working runs and printing threads meanwhile, and leaving never waits for a read that
will not come (a worker thread of ``asyncio.to_thread`` would be joined at exit until
someone pressed Enter). On a terminal the read is ``input()`` with readline's line
editing and history; from a pipe it is a plain ``readline()``. End of input is None.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import TextIO


class LineReader:
    def __init__(self, stream: TextIO, *, interactive: bool) -> None:
        self.stream = stream
        self.interactive = interactive
        self._loop = asyncio.get_running_loop()
        self._asks: queue.Queue[tuple[str, asyncio.Future[str | None]]] = queue.Queue()
        self._editing = False
        self._ended = False
        if interactive:
            try:
                import readline  # noqa: F401 - importing it gives input() line editing

                self._editing = True
            except ImportError:  # pragma: no cover - platforms without GNU readline
                pass
        threading.Thread(target=self._work, name="irbot-shell-stdin", daemon=True).start()

    async def read(self, prompt: str) -> str | None:
        """The next line (without its newline), or None at the end of input."""
        future: asyncio.Future[str | None] = self._loop.create_future()
        self._asks.put((prompt, future))
        return await future

    def typed(self) -> str:
        """What has been typed after the prompt so far (for redrawing it)."""
        if not self._editing:
            return ""
        import readline

        return readline.get_line_buffer()

    def _work(self) -> None:
        while True:
            prompt, future = self._asks.get()
            line = self._read_one(prompt)
            self._ended = self._ended or line is None
            try:
                self._loop.call_soon_threadsafe(_settle, future, line)
            except RuntimeError:  # the loop is closed: the session is over
                return

    def _read_one(self, prompt: str) -> str | None:
        if self._ended:
            return None
        if self.interactive:
            try:
                return input(prompt)
            except EOFError:
                return None
        line = self.stream.readline()
        return line.rstrip("\r\n") if line else None


def _settle(future: asyncio.Future[str | None], line: str | None) -> None:
    if not future.done():
        future.set_result(line)
