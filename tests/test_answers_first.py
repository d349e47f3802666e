"""Under a burst the answers go first: Slack acks do not wait for queued work, and
webhook starts wait while deliveries are being answered (bench/server_ack.py has the
figures; these tests pin the behaviour, not the timing)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot import turns
from bot.slack import commands
from bot.slack.answer import Reply
from bot.turns import Turns


def test_a_queued_command_is_acked_at_once_without_waiting_its_budget() -> None:
    """With every work slot taken, the ack says "working" straight away, even with an
    hour of budget; the answer follows through the response_url once a slot frees."""

    async def scenario() -> tuple[list[str], list[str]]:
        acked: list[str] = []
        followed: list[str] = []
        slots = asyncio.Semaphore(1)
        await slots.acquire()  # another command holds the only slot

        async def ack(**kw: Any) -> None:
            acked.append(kw["text"])

        async def respond(**kw: Any) -> None:
            followed.append(kw["text"])

        async def answer() -> Reply:
            return Reply("the answer")

        call = commands._in_time(
            ack,  # type: ignore[arg-type]
            respond,  # type: ignore[arg-type]
            answer(),
            pending="working on it",
            budget=3600,
            slots=slots,
        )
        await asyncio.wait_for(call, timeout=10)  # returns once acked, not after 1 h
        assert acked == ["working on it"]
        assert followed == []
        slots.release()
        for _ in range(100):
            if followed:
                break
            await asyncio.sleep(0.01)
        return acked, followed

    acked, followed = asyncio.run(scenario())
    assert (acked, followed) == (["working on it"], ["the answer"])


def test_a_free_slot_still_answers_in_the_ack() -> None:
    async def scenario() -> list[str]:
        acked: list[str] = []

        async def ack(**kw: Any) -> None:
            acked.append(kw["text"])

        async def respond(**kw: Any) -> None:
            raise AssertionError("no follow-up: the answer was the ack")

        async def answer() -> Reply:
            return Reply("the answer")

        await commands._in_time(
            ack,  # type: ignore[arg-type]
            respond,  # type: ignore[arg-type]
            answer(),
            pending="working on it",
            budget=5,
            slots=asyncio.Semaphore(1),
        )
        return acked

    assert asyncio.run(scenario()) == ["the answer"]


def test_a_start_waits_while_a_delivery_is_answered() -> None:
    """A start taken while a delivery is in its handler begins only after that answer;
    with no delivery in flight (and none just arrived) it begins at once."""

    async def scenario() -> list[str]:
        order: list[str] = []
        starts = Turns(in_flight=4, defer=30)
        answered = asyncio.Event()

        async def delivery() -> None:
            with starts.answering():
                await answered.wait()
                order.append("answered")

        async def start() -> None:
            async with starts:
                order.append("started")

        handler = asyncio.create_task(delivery())
        await asyncio.sleep(0)  # the delivery is in its handler
        starting = asyncio.create_task(start())
        await asyncio.sleep(0.05)
        order.append("still answering")
        answered.set()
        await asyncio.wait_for(asyncio.gather(handler, starting), timeout=10)
        await asyncio.sleep(turns.QUIET)
        await asyncio.wait_for(start(), timeout=10)  # quiet now: no wait
        return order

    assert asyncio.run(scenario()) == ["still answering", "answered", "started", "started"]


def test_a_steady_stream_of_deliveries_cannot_hold_a_start_back_for_good() -> None:
    async def scenario() -> bool:
        starts = Turns(in_flight=1, defer=0.05)
        with starts.answering():  # a delivery that never finishes
            async with starts:
                return True

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=10)) is True


def test_a_start_cancelled_while_waiting_gives_its_slot_back() -> None:
    async def scenario() -> bool:
        starts = Turns(in_flight=1, defer=30)
        with starts.answering():
            waiting = asyncio.create_task(starts.__aenter__())
            await asyncio.sleep(0.02)  # it holds the only slot and waits for the answer
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
        await asyncio.sleep(turns.QUIET)
        async with starts:  # the slot is free again
            return True

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=10)) is True


def test_work_waits_until_requests_stop_arriving(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slack commands ack at once and only mark their arrival: the work of earlier ones
    starts once no command has arrived for QUIET seconds (here 1 s, so timing noise on
    a loaded machine cannot reorder the test)."""
    monkeypatch.setattr(turns, "QUIET", 1.0)

    async def scenario() -> list[str]:
        queue = Turns(4, defer=30)
        order: list[str] = []

        async def arrivals() -> None:
            for _ in range(5):
                queue.arrived()
                order.append("arrived")
                await asyncio.sleep(0.05)

        async def work() -> None:
            async with queue:
                order.append("work")

        queue.arrived()
        await asyncio.wait_for(asyncio.gather(work(), arrivals()), timeout=10)
        return order

    assert asyncio.run(scenario()) == ["arrived"] * 5 + ["work"]
