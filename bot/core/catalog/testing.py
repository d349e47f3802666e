"""Test actions: make the engine fully testable without any cloud service."""

from __future__ import annotations

from pydantic import Field

from bot.core.catalog import ActionInput, ActionSpec


class Sleep(ActionInput):
    seconds: float = Field(ge=0, le=3600)


class FailTimes(ActionInput):
    times: int = Field(ge=0, le=100)
    """Fail this many attempts, then succeed."""
    retryable: bool = True
    message: str = "planned failure"


SPECS = (
    ActionSpec("test.noop", "Do nothing; return ``with`` as the outputs.", None, None),
    ActionSpec("test.sleep", "Sleep, then succeed.", Sleep, ("slept",)),
    ActionSpec("test.fail_times", "Fail N times, then succeed.", FailTimes, ("attempts",)),
    ActionSpec(
        "test.destructive",
        "Pretend to destroy something; record each call with its idempotency key.",
        None,
        None,
        destructive=True,
    ),
)
