"""The test actions: make the engine fully testable without any cloud service.

State that must survive a crash (attempt counts, destructive calls) lives in JSON
lines under ``$IRBOT_DATA_DIR/test-actions/``, written under an exclusive file lock
so that several worker processes can share it.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bot.engine.actions import ActionContext, ActionError, Registry
from bot.settings import load_settings


def state_dir() -> Path:
    path = load_settings().data_dir / "test-actions"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_records(name: str) -> list[dict[str, Any]]:
    """Every record an action wrote (``destructive``, ``attempts``), for tests."""
    path = state_dir() / f"{name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _append(name: str, record: Mapping[str, Any]) -> None:
    path = state_dir() / f"{name}.jsonl"
    with open(path, "a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


async def noop(inputs: Any, ctx: ActionContext) -> Mapping[str, Any]:
    return dict(inputs)


async def sleep(inputs: Any, ctx: ActionContext) -> Mapping[str, Any]:
    await asyncio.sleep(inputs.seconds)
    return {"slept": inputs.seconds}


async def fail_times(inputs: Any, ctx: ActionContext) -> Mapping[str, Any]:
    """Fail the first ``times`` calls for this idempotency key, then succeed."""
    path = state_dir() / "attempts.jsonl"
    with _locked(path):
        seen = sum(1 for r in read_records("attempts") if r["key"] == ctx.idempotency_key)
        _append("attempts", {"key": ctx.idempotency_key, "attempt": seen + 1})
    if seen < inputs.times:
        raise ActionError(
            f"{inputs.message} ({seen + 1} of {inputs.times})", retryable=inputs.retryable
        )
    return {"attempts": seen + 1}


def _pause(spec: str) -> float:
    """Seconds to linger: ``"0.2"``, or ``"0.05-0.5"`` for a random span, which spreads
    the ends of concurrent calls over time (so several workers take turns picking up)."""
    low, _, high = spec.partition("-")
    if not high:
        return float(low or 0)
    return random.uniform(float(low), float(high))  # noqa: S311 - test timing, not secrets


async def destructive(inputs: Any, ctx: ActionContext) -> Mapping[str, Any]:
    """Record the call with its idempotency key; a repeat of a key is a no-op (dedup)."""
    path = state_dir() / "destructive.jsonl"
    with _locked(path):
        done = any(r["key"] == ctx.idempotency_key for r in read_records("destructive"))
        _append(
            "destructive",
            {"key": ctx.idempotency_key, "with": dict(inputs), "pid": os.getpid(), "dedup": done},
        )
    pause = _pause(os.environ.get("IRBOT_TEST_DESTRUCTIVE_PAUSE", ""))
    if pause:  # lets crash tests kill a worker while the call is in flight
        await asyncio.sleep(pause)
    return {**dict(inputs), "deduplicated": done}


async def secret(inputs: Any, ctx: ActionContext) -> Mapping[str, Any]:
    """Handle a secret the careless way, on purpose: read it by reference and mark it (as
    every real action does), then log it, log an exception carrying it, and return, fail
    or crash with it. Nothing of it may reach a sink (tests/test_canaries.py)."""
    value = os.environ.get(inputs.from_env, "")
    if not value:
        raise ActionError(f"{inputs.from_env} is not set", retryable=False)
    ctx.mark_secret(value)
    ctx.logger().warning("test.secret.read", detail=f"read {value}")
    logging.getLogger(__name__).warning("a library line with the value: %s", value)
    try:
        raise LookupError(f"lookup failed for {value}")
    except LookupError:
        ctx.logger().exception("test.secret.traceback")
    if inputs.then == "fail":
        raise ActionError(f"the backend refused {value}", retryable=False)
    if inputs.then == "crash":
        raise RuntimeError(f"unexpected answer carrying {value}")
    return {"value": value, "ref": f"env:{inputs.from_env}"}


def register(registry: Registry) -> None:
    registry.function("test.noop")(noop)
    registry.function("test.sleep")(sleep)
    registry.function("test.fail_times")(fail_times)
    registry.function("test.destructive")(destructive)
    registry.function("test.secret")(secret)
