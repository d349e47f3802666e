"""Test actions: make the engine fully testable without any cloud service."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bot.core.catalog import ActionInput, ActionSpec


class Sleep(ActionInput):
    seconds: float = Field(ge=0, le=3600)


class FailTimes(ActionInput):
    times: int = Field(ge=0, le=100)
    """Fail this many attempts, then succeed."""
    retryable: bool = True
    message: str = "planned failure"


class Secret(ActionInput):
    from_env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    """The environment variable that holds the secret: a reference, as real actions get."""
    then: Literal["return", "fail", "crash"] = "return"
    """Return the value in the outputs, fail with it in the message, or crash with it."""


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
    ActionSpec(
        "test.secret",
        "Read a secret by reference, mark it, log it, then return, fail or crash with it: "
        "the canary tests prove the engine masks it everywhere.",
        Secret,
        ("value", "ref"),
    ),
)
