"""Answers first: whose turn it is to do the work behind an answer.

Slack and the webhook senders want their answer within a deadline; the work a request
asks for (a run start, a status) is done after the answer, in the same process. Under
a burst, work done while other requests still wait for their answer pushes those
answers towards the deadline (bench/server_ack.py). :class:`Turns` lets at most
``in_flight`` pieces of work run at once, and only when no request is being answered
or has arrived in the last :data:`QUIET` seconds — for at most ``defer`` seconds, so a
steady stream of requests cannot hold the work back for good.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

ANSWERS_FIRST = 1.0
"""Seconds a piece of work may wait for the requests being answered."""

QUIET = 0.01
"""A burst is over when no request has arrived for this long."""


class Turns:
    """``with turns.answering():`` around the handling of a request, up to its answer;
    ``async with turns:`` around the work done after it."""

    POLL = 0.005

    def __init__(self, in_flight: int, defer: float = ANSWERS_FIRST) -> None:
        self._slots = asyncio.Semaphore(in_flight)
        self._answering = 0
        self._arrived = float("-inf")
        self.defer = defer

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Around the handling of one request, up to its answer."""
        self._answering += 1
        self.arrived()
        try:
            yield
        finally:
            self._answering -= 1

    def arrived(self) -> None:
        """A request arrived whose answer needs no waiting (its handler acks at once)."""
        self._arrived = asyncio.get_running_loop().time()

    def locked(self) -> bool:
        """True if every slot is taken (new work would queue)."""
        return self._slots.locked()

    def _busy(self, now: float) -> bool:
        return self._answering > 0 or now - self._arrived < QUIET

    async def __aenter__(self) -> None:
        await self._slots.acquire()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.defer
        try:
            # A poll, not an Event: at most in_flight pieces of work wait here, and a
            # missed wake-up cannot keep one waiting past its deadline.
            while self._busy(now := loop.time()) and now < deadline:
                await asyncio.sleep(self.POLL)
        except BaseException:  # cancelled while waiting: __aexit__ will not run
            self._slots.release()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._slots.release()
