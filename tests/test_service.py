"""The service façade's own rules (the ones every front door shares)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.core.errors import UsageError
from bot.service import Service
from tests.engine_support import Harness

WAITS = """
name: waits
version: 1
steps:
  - id: gate
    approval: {min: 2, from: [group:sre], ttl: 10m}
  - id: after
    action: test.noop
    with: {x: 1}
"""


@pytest.fixture
def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    harness = Harness(tmp_path, None, monkeypatch)
    harness.add_playbook(WAITS)
    return harness


def test_only_requester_starters_and_breakglass_may_cancel(h: Harness) -> None:
    """U05 (in no group) cannot cancel someone's run; U02 (may start it) can; the
    refusal changes nothing."""

    async def scenario() -> None:
        await h.start()
        try:
            service = Service(h.settings, h.store)
            started = service.start("waits", {}, requester="U01")
            await h.wait_for(started.run_id, {"waiting"})
            with pytest.raises(UsageError, match="may not cancel"):
                await service.acancel(started.run_id, user="U05")
            assert h.store.get_run(started.run_id).status == "waiting"
            await service.acancel(started.run_id, user="U02")
            run = await h.wait_for(started.run_id)
            assert run.status == "cancelled"
        finally:
            h.stop()

    asyncio.run(scenario())


def test_note_is_redacted_and_bounded(h: Harness) -> None:
    """A note lands on the timeline with credentials masked; empty or huge notes are
    refused with a message saying what to do."""

    async def scenario() -> None:
        await h.start()
        try:
            service = Service(h.settings, h.store)
            started = service.start("waits", {}, requester="U01")
            token = "xoxb-" + "1234567890-abcdefghij"
            event = service.note(started.incident_id, user="U02", text=f"leaked {token} in CI")
            assert token not in event.payload["text"]
            assert "[REDACTED]" in event.payload["text"]
            with pytest.raises(UsageError, match="needs some text"):
                service.note(started.incident_id, user="U02", text="   ")
            with pytest.raises(UsageError, match="at most"):
                service.note(started.incident_id, user="U02", text="x" * 5000)
            service.cancel(started.run_id, user="U01")
        finally:
            h.stop()

    asyncio.run(scenario())
