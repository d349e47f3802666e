"""The DBOS steps of a run: every side effect and every non-deterministic read.

DBOS records each step's result; after a crash a finished step is not run again and
its recorded result is replayed. A step that was in flight runs again, so each one is
idempotent: timeline events have deterministic ids, actions get a stable idempotency
key. Step results are plain JSON-safe data and never hold a secret value.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
from dbos import DBOS
from pydantic import ValidationError

from bot import logs
from bot.core import inputs as input_rules
from bot.core.catalog import default_catalog
from bot.core.errors import ConfigError, InputError, NotFoundError, PlaybookInvalid
from bot.core.timeline import (
    RUN_STARTED,
    STEP_FAILED,
    STEP_RETRYING,
    STEP_SKIPPED,
    STEP_SUCCEEDED,
    NewEvent,
    event_id,
)
from bot.core.validate import load
from bot.engine import runtime
from bot.engine.actions import ActionContext, ActionError
from bot.engine.spec import RunSpec

log = structlog.get_logger("irbot.engine")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _append(
    run_id: str,
    incident_id: str,
    step_id: str | None,
    kind: str,
    payload: Mapping[str, Any],
    *,
    actor: str = "irbot",
    discriminator: str | int | None = None,
) -> None:
    rt = runtime.current()
    parts: list[str | int] = [run_id, step_id or "-", kind]
    if discriminator is not None:
        parts.append(discriminator)
    rt.store.append(
        NewEvent(
            id=event_id(*parts),
            incident_id=incident_id,
            kind=kind,
            actor=actor,
            at=utcnow(),
            run_id=run_id,
            step_id=step_id,
            payload=rt.redactor(dict(payload)),
        )
    )


@DBOS.step(name="irbot.now")
async def now() -> str:
    """The current UTC time, recorded so that a replay sees the same clock."""
    return utcnow().isoformat()


@DBOS.step(name="irbot.record")
async def record(
    run_id: str,
    incident_id: str,
    step_id: str | None,
    kind: str,
    payload: dict[str, Any],
    *,
    actor: str = "irbot",
    discriminator: str | int | None = None,
    run_status: str | None = None,
) -> None:
    """Append one timeline event (idempotent) and optionally move the run's status."""
    _append(run_id, incident_id, step_id, kind, payload, actor=actor, discriminator=discriminator)
    if run_status is not None:
        runtime.current().store.set_run_status(run_id, run_status, utcnow())


@DBOS.step(name="irbot.run_status")
async def set_run_status(run_id: str, status: str, *, breakglass: bool | None = None) -> None:
    runtime.current().store.set_run_status(run_id, status, utcnow(), breakglass=breakglass)


@DBOS.step(name="irbot.start")
async def start_run(spec_data: dict[str, Any]) -> str:
    """Mark the run as running and record ``run.started``; returns the start time."""
    spec = RunSpec.from_dict(spec_data)
    at = utcnow()
    store = runtime.current().store
    store.set_run_status(spec.run_id, "running", at)
    _append(
        spec.run_id,
        spec.incident_id,
        None,
        RUN_STARTED,
        {
            "playbook": spec.playbook,
            "sha256": spec.sha256,
            "inputs": spec.inputs,
            "requester": spec.requester,
            "parent_run": spec.parent_run,
        },
        actor=f"user:{spec.requester}",
    )
    return at.isoformat()


@DBOS.step(name="irbot.finish")
async def finish_run(run_id: str, incident_id: str, status: str, detail: str, kind: str) -> None:
    _append(run_id, incident_id, None, kind, {"status": status, "detail": detail})
    runtime.current().store.set_run_status(run_id, status, utcnow(), detail=detail)


@DBOS.step(name="irbot.groups")
async def group_map() -> dict[str, Any]:
    """Group membership from irbot.yaml as it is now; an unreadable file fails closed
    (no one is a member of anything) and says why in the log."""
    try:
        config = runtime.current().config()
    except ConfigError as exc:
        log.error("config.unreadable", error=exc.message)
        return {"groups": {}, "breakglass_group": "breakglass", "error": exc.message}
    groups = {name: sorted(members) for name, members in config.group_map().items()}
    return {"groups": groups, "breakglass_group": config.breakglass_group, "error": None}


@DBOS.step(name="irbot.fanout_queue")
async def fanout_queue(concurrency: int, action: str) -> str:
    """The queue of a fan-out's items, recorded with how they are run (a recorded
    name without the CHUNKED mark, from before chunks existed, keeps a run in flight
    across an upgrade on one child workflow per item)."""
    from bot.engine.fanout import CHUNKED, RATE_LIMITS, ensure_fanout_queue

    name = await ensure_fanout_queue(concurrency, action)
    return name if action in RATE_LIMITS else name + CHUNKED


@DBOS.step(name="irbot.prepare_child")
async def prepare_child(
    parent: dict[str, Any], child_id: str, name: str, raw_inputs: dict[str, Any]
) -> dict[str, Any]:
    """Check a sub-playbook's inputs and record its run; returns its spec (or an error)."""
    spec = RunSpec.from_dict(parent)
    source = spec.library[name]
    try:
        loaded = load(source, f"{name}.yaml")
        values = input_rules.resolve(raw_inputs, loaded.playbook)
    except (InputError, PlaybookInvalid) as exc:
        return {"error": exc.show()}
    child = RunSpec(
        run_id=child_id,
        incident_id=spec.incident_id,
        requester=spec.requester,
        playbook=name,
        source=source,
        sha256=loaded.sha256,
        file=f"{name}.yaml",
        inputs=values,
        library=spec.library,
        incident=spec.incident,
        trigger=spec.trigger,
        parent_run=spec.run_id,
    )
    runtime.current().store.record_run(
        child.record(
            version=loaded.playbook.version,
            inputs=runtime.current().redactor(values),
            at=utcnow(),
        )
    )
    return child.to_dict()


_ITEM_FAILED = frozenset({"ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"})


@DBOS.step(name="irbot.await_items")
async def await_items(workflow_ids: list[str], poll_seconds: float) -> list[dict[str, Any]]:
    """Wait for every item workflow of a fan-out; their results in the given order.

    One recorded step for the whole fan-out (waiting item by item cost two recorded
    steps per item, which dominated fan-out time in bench/fanout.py).
    """
    results: dict[str, dict[str, Any]] = {}
    pending = list(workflow_ids)
    while pending:
        rows = await DBOS.list_workflows_async(
            workflow_ids=pending, load_input=False, load_output=True
        )
        for row in rows:
            if row.status == "SUCCESS":
                results[row.workflow_id] = dict(row.output or {})
            elif row.status in _ITEM_FAILED:
                results[row.workflow_id] = _failure(
                    f"item workflow ended {row.status}: {row.error}", retryable=False, code="item"
                )
        pending = [wid for wid in pending if wid not in results]
        if pending:
            await asyncio.sleep(poll_seconds)
    return [results[wid] for wid in workflow_ids]


def _failure(message: str, *, retryable: bool, code: str) -> dict[str, Any]:
    return {"status": "failed", "error": message, "retryable": retryable, "code": code}


def _json_safe(outputs: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(outputs), default=str))  # type: ignore[no-any-return]


async def _invoke(call: Mapping[str, Any]) -> dict[str, Any]:
    rt = runtime.current()
    name = call["action"]
    spec = default_catalog()[name]
    try:
        action = rt.registry.get(name)
    except NotFoundError as exc:
        return _failure(exc.message, retryable=False, code="not_implemented")
    reason = action.not_configured()
    if reason is not None:
        if call.get("optional"):
            return {"status": "skipped", "note": f"{name} skipped: {reason}"}
        return _failure(f"{name} is not configured: {reason}", retryable=False, code="config")
    try:
        inputs = spec.inputs.model_validate(call["args"]) if spec.inputs else dict(call["args"])
    except (ValidationError, TypeError) as exc:
        return _failure(f"invalid arguments for {name}: {exc}", retryable=False, code="input")
    ctx = ActionContext(
        run_id=call["run_id"],
        step_id=call["step_id"],
        item_index=call["item_index"],
        attempt=call["attempt"],
        incident_id=call["incident_id"],
        redactor=rt.redactor,
        trigger=call.get("trigger") or {},
        incident=StoreIncidentLink(call["incident_id"]),
    )
    with logs.masking(ctx.secrets):  # what the action marks secret is masked in its logs too
        result = await _attempt(action, inputs, ctx, call)
    # Whatever the action touched that is secret is masked before DBOS checkpoints it.
    return rt.redactor.with_values(ctx.secrets)(result)  # type: ignore[no-any-return]


async def _attempt(
    action: Any, inputs: Any, ctx: ActionContext, call: Mapping[str, Any]
) -> dict[str, Any]:
    name = call["action"]
    timeout = call.get("timeout")
    try:
        outputs = await asyncio.wait_for(action.run(inputs, ctx), timeout)
    except TimeoutError:
        return _failure(f"{name} timed out after {timeout:g}s", retryable=True, code="timeout")
    except ActionError as exc:
        return _failure(exc.message, retryable=exc.retryable, code=exc.code)
    except Exception as exc:  # noqa: BLE001 - a bug in one action must fail its step, not the run
        log.error(
            "action.crashed",
            action=name,
            run_id=call["run_id"],
            error=ctx.redactor.with_values(ctx.secrets).text(f"{type(exc).__name__}: {exc}"),
        )
        return _failure(
            f"{name} crashed: {type(exc).__name__}: {exc}", retryable=False, code="crash"
        )
    return {"status": "succeeded", "outputs": _json_safe(outputs)}


class StoreIncidentLink:
    """:class:`IncidentLink` over the timeline store and irbot.yaml."""

    def __init__(self, incident_id: str) -> None:
        self.incident_id = incident_id

    def slack_thread(self) -> tuple[str, str] | None:
        incident = runtime.current().store.get_incident(self.incident_id)
        if incident.slack_channel and incident.slack_thread_ts:
            return incident.slack_channel, incident.slack_thread_ts
        return None

    def set_slack_thread(self, channel: str, ts: str) -> tuple[str, str]:
        won = runtime.current().store.claim_incident_slack(self.incident_id, channel, ts)
        if won.slack_channel and won.slack_thread_ts:
            return won.slack_channel, won.slack_thread_ts
        return channel, ts

    def notification_channel(self) -> str | None:
        try:
            return runtime.current().config().slack.channel
        except ConfigError:
            return None


_KINDS = {"succeeded": STEP_SUCCEEDED, "skipped": STEP_SKIPPED}


@DBOS.step(name="irbot.action")
async def call_action(call: dict[str, Any]) -> dict[str, Any]:
    """One attempt of one action (for one item), and its timeline event; every line logged
    meanwhile carries the call's ids (:func:`log_ids`)."""
    with structlog.contextvars.bound_contextvars(**log_ids(call)):
        return await _call_action(call)


async def _call_action(call: dict[str, Any]) -> dict[str, Any]:
    rt = runtime.current()
    began = time.perf_counter()
    result: dict[str, Any] = rt.redactor(await _invoke(call))
    result["duration_ms"] = round((time.perf_counter() - began) * 1000, 1)
    if result["status"] == "failed":
        more = result["retryable"] and call["attempt"] < call["attempts"]
        kind = STEP_RETRYING if more else STEP_FAILED
    else:
        kind = _KINDS[result["status"]]
    payload = {
        "action": call["action"],
        "item": call["item_index"],
        "attempt": call["attempt"],
        "attempts": call["attempts"],
        "args": call["args"],
        **{k: v for k, v in result.items() if k != "status"},
    }
    _append(
        call["run_id"],
        call["incident_id"],
        call["step_id"],
        kind,
        payload,
        discriminator=f"{call['item_index']}#{call['attempt']}",
    )
    return result


def log_ids(call: Mapping[str, Any]) -> dict[str, Any]:
    """What every line logged during an action call carries, the action's own lines and
    its libraries' included (bot/logs.py merges them in)."""
    ids = {
        "incident_id": call["incident_id"],
        "run_id": call["run_id"],
        "step": call["step_id"],
        "action": call["action"],
    }
    if call["item_index"] is not None:
        ids["item"] = call["item_index"]
    return ids
