"""Talking to runs from outside a worker: submit, vote, complete a task, cancel.

These calls never launch DBOS (a process that does becomes a worker and starts
resuming runs); they write the timeline store and use :class:`dbos.DBOSClient` to
enqueue workflows and deliver messages. Every refusal that concerns an existing run
is recorded on its timeline before it is reported.
"""

from __future__ import annotations

import atexit
import secrets
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.core.config import Config
from bot.core.errors import NotFoundError, UsageError
from bot.core.redaction import Redactor
from bot.core.timeline import (
    APPROVAL_BREAKGLASS,
    APPROVAL_EXPIRED,
    APPROVAL_GRANTED,
    APPROVAL_REFUSED,
    APPROVAL_REJECTED,
    APPROVAL_REQUESTED,
    INCIDENT_OPENED,
    MANUAL_COMPLETED,
    MANUAL_REQUESTED,
    RUN_CANCELLED,
    NewEvent,
    StoredEvent,
    event_id,
)
from bot.core.validate import LoadedPlaybook
from bot.engine.gates import gate_topic
from bot.engine.runtime import ENGINE_VERSION, QUEUE_POLL_SECONDS, RUN_QUEUE
from bot.engine.spec import RunSpec, remember
from bot.engine.workflow import manual_topic
from bot.settings import Settings
from bot.store import RunRecord, TimelineStore

VOTE_POLL_SECONDS = 0.05

FINISHED = frozenset({"succeeded", "failed", "rejected", "expired", "cancelled"})
_CLOSING = frozenset({APPROVAL_GRANTED, APPROVAL_REJECTED, APPROVAL_EXPIRED, APPROVAL_BREAKGLASS})


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_run_id() -> str:
    return f"run-{secrets.token_hex(6)}"


_CLIENTS: dict[str, Any] = {}
_CLIENTS_LOCK = threading.Lock()


@contextmanager
def dbos_client(settings: Settings) -> Iterator[Any]:
    """The process's DBOS client on the system database (created and migrated on first
    use, then shared: a new one cost ~55 ms on PostgreSQL, a third of a vote's time)."""
    yield _shared_client(settings)


def _shared_client(settings: Settings) -> Any:
    from dbos import DBOS, DBOSClient

    url = settings.dbos_url()
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(url)
        if client is not None:
            return client
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        DBOS.migrate(url)
        client = DBOSClient(system_database_url=url, application_name="irbot")
        # A client has no notification listener, so get_event re-reads the database at
        # this interval (default 1 s, not configurable through DBOSClient): poll faster
        # so a vote is answered as soon as the worker has decided.
        sys_db = getattr(client, "_sys_db", None)
        if sys_db is not None and hasattr(sys_db, "_notification_listener_polling_interval_sec"):
            sys_db._notification_listener_polling_interval_sec = VOTE_POLL_SECONDS
        client.register_queue(RUN_QUEUE, polling_interval_sec=QUEUE_POLL_SECONDS)
        _CLIENTS[url] = client
        return client


def close_clients() -> None:
    """Destroy the shared DBOS clients (at exit; tests call it between databases)."""
    with _CLIENTS_LOCK:
        clients = list(_CLIENTS.values())
        _CLIENTS.clear()
    for client in clients:
        client.destroy()


atexit.register(close_clients)


@dataclass(frozen=True)
class Submitted:
    run_id: str
    incident_id: str


def submit(
    settings: Settings,
    store: TimelineStore,
    loaded: LoadedPlaybook,
    inputs: Mapping[str, Any],
    *,
    requester: str,
    library: Mapping[str, LoadedPlaybook],
    config: Config,
    trigger: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    authorized: bool = False,
) -> Submitted:
    """Open the incident, record the run and queue it for a worker.

    ``authorized`` skips the starter check: a trigger route is its own permission.
    """
    name = loaded.playbook.name
    if not authorized and not config.can_start(requester, name):
        raise UsageError(
            f"{requester} may not start {name!r}: irbot.yaml allows "
            + (", ".join(config.playbooks[name].start) if name in config.playbooks else "no one")
        )
    run_id = run_id or new_run_id()
    now = utcnow()
    redact = Redactor()
    shown = redact(dict(inputs))  # by key name too (inputs.resolve refuses secrets first)
    title = f"{name}: " + ", ".join(f"{k}={v}" for k, v in shown.items() if v not in (None, []))
    incident = store.open_incident(
        key=run_id, title=redact.text(title)[:200], severity="high", playbook=name, at=now
    )
    remember(loaded)  # a worker in this process need not validate it again
    spec = RunSpec(
        run_id=run_id,
        incident_id=incident.id,
        requester=requester,
        playbook=name,
        source=loaded.source,
        sha256=loaded.sha256,
        file=loaded.file,
        inputs=dict(inputs),
        library={n: lp.source for n, lp in library.items() if n != name},
        incident={"title": incident.title, "severity": incident.severity},
        trigger=dict(trigger) if trigger else None,
    )
    store.record_run(
        spec.record(version=loaded.playbook.version, inputs=redact(dict(inputs)), at=now)
    )
    store.append(
        NewEvent(
            id=event_id(run_id, "-", INCIDENT_OPENED),
            incident_id=incident.id,
            kind=INCIDENT_OPENED,
            actor=f"user:{requester}",
            at=now,
            run_id=run_id,
            payload={"title": incident.title, "playbook": name, "trigger": dict(trigger or {})},
        )
    )
    with dbos_client(settings) as client:
        client.enqueue(
            {
                "workflow_name": "irbot.run",
                "queue_name": RUN_QUEUE,
                "workflow_id": run_id,
                "app_version": ENGINE_VERSION,
            },
            spec.to_dict(),
        )
    return Submitted(run_id, incident.id)


def _run_family(store: TimelineStore, run_id: str) -> list[RunRecord]:
    """The run and the sub-playbook runs it started (their ids extend its own)."""
    return [
        r for r in store.list_runs(limit=10_000) if r.id == run_id or r.id.startswith(f"{run_id}.")
    ]


def open_gate(store: TimelineStore, run_id: str) -> StoredEvent | None:
    """The ``approval.requested`` event of the gate the run (or a child) waits at."""
    for run in reversed(_run_family(store, run_id)):
        requested: dict[str, StoredEvent] = {}
        for event in store.events(run_id=run.id):
            gate = event.payload.get("gate") if event.kind.startswith("approval.") else None
            if event.kind == APPROVAL_REQUESTED and gate:
                requested[gate] = event
            elif event.kind in _CLOSING and gate in requested:
                del requested[gate]
        if requested:
            return list(requested.values())[-1]
    return None


def open_task(store: TimelineStore, run_id: str, step_id: str | None) -> StoredEvent | None:
    for run in reversed(_run_family(store, run_id)):
        waiting: dict[str, StoredEvent] = {}
        for event in store.events(run_id=run.id):
            if event.kind == MANUAL_REQUESTED and event.step_id:
                waiting[event.step_id] = event
            elif event.kind == MANUAL_COMPLETED and event.step_id:
                waiting.pop(event.step_id, None)
        if step_id is not None and step_id in waiting:
            return waiting[step_id]
        if step_id is None and waiting:
            return list(waiting.values())[-1]
    return None


def refuse(store: TimelineStore, run: RunRecord, user: str, code: str, reason: str) -> None:
    """Record a refused attempt on the run's timeline."""
    at = utcnow()
    store.append(
        NewEvent(
            id=event_id(run.id, "-", APPROVAL_REFUSED, user, at.isoformat()),
            incident_id=run.incident_id,
            kind=APPROVAL_REFUSED,
            actor=f"user:{user}",
            at=at,
            run_id=run.id,
            payload={"user": user, "code": code, "reason": reason},
        )
    )


@dataclass(frozen=True)
class VoteResult:
    run_id: str
    gate: str
    answer: dict[str, Any] | None
    """The engine's decision, or None if no worker answered in time."""


def vote(
    settings: Settings,
    store: TimelineStore,
    run_id: str,
    *,
    user: str,
    decision: str,
    reason: str | None = None,
    breakglass: bool = False,
    digest: str | None = None,
    wait_seconds: float = 15.0,
) -> VoteResult:
    """Deliver a vote to the gate a run waits at, and wait for the engine's decision."""
    run = store.get_run(run_id)
    if run.status in FINISHED:
        refuse(store, run, user, "run_finished", f"the run already finished ({run.status})")
        raise UsageError(f"run {run_id} already finished ({run.status}); nothing to approve")
    requested = open_gate(store, run_id)
    if requested is None or requested.run_id is None:
        refuse(store, run, user, "no_open_gate", "the run is not waiting for approval")
        raise UsageError(f"run {run_id} is not waiting for approval (status: {run.status})")
    current = str(requested.payload["digest"])
    if digest is None:
        signed = current
    elif len(digest) >= 12 and current.startswith(digest):
        signed = current  # a prefix of what the approver saw, as shown in Slack and plans
    else:
        signed = digest
    vote_id = secrets.token_hex(8)
    message = {
        "vote_id": vote_id,
        "user": user,
        "decision": decision,
        "plan_digest": signed,
        "reason": reason,
        "breakglass": breakglass,
    }
    gate = str(requested.payload["gate"])
    with dbos_client(settings) as client:
        client.send(requested.run_id, message, topic=gate_topic(gate))
        answer = client.get_event(requested.run_id, f"vote:{vote_id}", timeout_seconds=wait_seconds)
    return VoteResult(requested.run_id, gate, answer)


@dataclass(frozen=True)
class TaskResult:
    run_id: str
    step_id: str
    answer: dict[str, Any] | None
    """The engine's decision (accepted or refused, with the reason), or None if no
    worker answered in time."""


def complete_task(
    settings: Settings,
    store: TimelineStore,
    run_id: str,
    *,
    user: str,
    status: str,
    step_id: str | None = None,
    note: str | None = None,
    secret: str | None = None,
    wait_seconds: float = 15.0,
) -> TaskResult:
    """Mark a manual task done or failed, handing over ``secret`` if the task asks for one.

    The secret goes straight into AWS Secrets Manager (see
    :mod:`bot.actions.aws.handover`); the engine receives only its reference.
    """
    run = store.get_run(run_id)
    if run.status in FINISHED:
        raise UsageError(f"run {run_id} already finished ({run.status})")
    task = open_task(store, run_id, step_id)
    if task is None or task.run_id is None or task.step_id is None:
        raise UsageError(
            f"run {run_id} has no open manual task" + (f" {step_id!r}" if step_id else "")
        )
    wants_secret = bool(task.payload.get("secret_input"))
    if secret is not None and not wants_secret:
        raise UsageError(f"task {task.step_id!r} does not ask for a secret; nothing was sent")
    if wants_secret and status == "done" and secret is None:
        raise UsageError(
            f"task {task.step_id!r} asks for {task.payload.get('secret_label') or 'a secret'}: "
            "hand it over with --secret-file FILE (the file's content is stored, never shown)"
        )
    answer_id = secrets.token_hex(8)
    secret_ref = None
    if secret is not None and status == "done":
        from bot.actions.aws.handover import hand_over

        secret_ref = hand_over(task.run_id, task.step_id, run.incident_id, secret, answer_id)
    message = {
        "vote_id": answer_id,
        "user": user,
        "status": status,
        "note": note,
        "secret_ref": secret_ref,
    }
    with dbos_client(settings) as client:
        client.send(task.run_id, message, topic=manual_topic(task.step_id))
        answer = client.get_event(task.run_id, f"vote:{answer_id}", timeout_seconds=wait_seconds)
    return TaskResult(task.run_id, task.step_id, answer)


def cancel(settings: Settings, store: TimelineStore, run_id: str, *, user: str) -> RunRecord:
    """Stop a run between steps and record who did it."""
    run = store.get_run(run_id)
    if run.status in FINISHED:
        raise UsageError(f"run {run_id} already finished ({run.status})")
    at = utcnow()
    family = _run_family(store, run_id)
    with dbos_client(settings) as client:
        for member in family:
            client.cancel_workflow(member.id)
        # for_each items are workflows of their own (<run>:<step>:<n>): stop those not
        # started yet, or a cancelled run would keep working through its fan-out.
        items = client.list_workflows(
            workflow_id_prefix=[f"{m.id}:" for m in family],
            status=["PENDING", "ENQUEUED", "DELAYED"],
            load_input=False,
            load_output=False,
        )
        for item in items:
            client.cancel_workflow(item.workflow_id)
    for member in family:
        if member.status in FINISHED:
            continue
        store.append(
            NewEvent(
                id=event_id(member.id, "-", RUN_CANCELLED),
                incident_id=member.incident_id,
                kind=RUN_CANCELLED,
                actor=f"user:{user}",
                at=at,
                run_id=member.id,
                payload={"by": user},
            )
        )
        store.set_run_status(member.id, "cancelled", at, detail=f"cancelled by {user}")
    return store.get_run(run_id)


def get_run(store: TimelineStore, run_id: str) -> RunRecord:
    try:
        return store.get_run(run_id)
    except NotFoundError:
        raise NotFoundError(f"unknown run {run_id!r} (see `irbot runs`)") from None
