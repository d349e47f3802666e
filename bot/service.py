"""The typed commands every front door speaks: Slack, webhooks, the shell and the CLI.

Handlers translate a payload into one call here and render what comes back; this module
holds the rules that are the same whoever asks (who may start what, how inputs are
parsed, what a note or a status is). It wraps :mod:`bot.engine.client` (which never
launches DBOS) and the timeline store. Methods are synchronous, because the store and
the DBOS client are; async callers use the ``a*`` twins, which run them in a thread.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar

from bot.core import inputs as input_rules
from bot.core import library
from bot.core.config import Config, TriggerRoute, load_config
from bot.core.errors import IrbotError, NotFoundError, UsageError
from bot.core.playbook import Trigger
from bot.core.redaction import Redactor
from bot.core.timeline import NOTE, NewEvent, StoredEvent, event_id
from bot.engine import client
from bot.settings import Settings
from bot.store import Incident, RunRecord, TimelineStore
from bot.store.pending import Acceptance, StartFor

P = ParamSpec("P")
T = TypeVar("T")
K = TypeVar("K")

NOTE_MAX = 4000


@dataclass(frozen=True)
class Started:
    run_id: str
    incident_id: str
    playbook: str


@dataclass(frozen=True)
class IncidentStatus:
    incident: Incident
    runs: list[RunRecord]
    waiting: list[StoredEvent]
    """Open gates and tasks (``approval.requested`` / ``manual.requested`` events)."""


class Service:
    """One irbot installation as its users see it."""

    def __init__(self, settings: Settings, store: TimelineStore) -> None:
        self.settings = settings
        self.store = store
        self.redactor = Redactor()

    def config(self) -> Config:
        """irbot.yaml as it is now (membership counts at the time of each request)."""
        return load_config(self.settings.config_path)

    # ------------------------------------------------------------------ runs

    def start(
        self,
        playbook: str,
        raw_inputs: Mapping[str, Any],
        *,
        requester: str,
        trigger: Mapping[str, Any] | None = None,
        key: str | None = None,
    ) -> Started:
        """Validate inputs and queue a run of ``playbook`` for ``requester``.

        ``raw_inputs`` are strings as typed (``key=value``) or values from a webhook
        mapping; a trigger (``trigger`` given) needs no starter permission — the route in
        irbot.yaml or the playbook's own ``triggers`` is the permission. ``key`` makes
        the start idempotent (a webhook's delivery id): the same key, the same run.
        """
        lib = _library(self.settings.playbooks_dir)
        loaded = lib.get(playbook)
        values = input_rules.resolve(dict(raw_inputs), loaded.playbook)
        config = self.config()
        valid = {}
        for name in lib.names():
            try:
                valid[name] = lib.get(name)
            except IrbotError:
                continue  # a broken sub-playbook only matters to runs that call it
        run_id = None if key is None else f"run-{key}"
        if run_id is not None:
            try:
                existing = self.store.get_run(run_id)
            except NotFoundError:
                existing = None
            if existing is not None:
                return Started(existing.id, existing.incident_id, existing.playbook)
        submitted = client.submit(
            self.settings,
            self.store,
            loaded,
            values,
            requester=requester,
            library=valid,
            config=config,
            trigger=trigger,
            run_id=run_id,
            authorized=trigger is not None,
        )
        return Started(submitted.run_id, submitted.incident_id, playbook)

    def vote(
        self,
        run_id: str,
        *,
        user: str,
        decision: str,
        reason: str | None = None,
        digest: str | None = None,
        breakglass: bool = False,
    ) -> client.VoteResult:
        """Deliver a vote; the engine decides and answers (refusals carry the reason)."""
        return client.vote(
            self.settings,
            self.store,
            run_id,
            user=user,
            decision=decision,
            reason=reason,
            digest=digest,
            breakglass=breakglass,
        )

    def task(
        self,
        run_id: str,
        *,
        user: str,
        status: str,
        step_id: str | None = None,
        note: str | None = None,
        secret: str | None = None,
    ) -> client.TaskResult:
        """Mark a manual task done or failed (handing over a secret if it asks one)."""
        return client.complete_task(
            self.settings,
            self.store,
            run_id,
            user=user,
            status=status,
            step_id=step_id,
            note=note,
            secret=secret,
        )

    def cancel(self, run_id: str, *, user: str) -> RunRecord:
        """Stop a run between steps. Its requester, anyone irbot.yaml lets start its
        playbook, and the break-glass group may; everyone else is refused."""
        run = self.store.get_run(run_id)
        config = self.config()
        allowed = (
            user == run.requester
            or config.can_start(user, run.playbook)
            or user in config.members(config.breakglass_group)
        )
        if not allowed:
            raise UsageError(
                f"{user} may not cancel {run_id}: only its requester, people who may start "
                f"{run.playbook!r} (irbot.yaml) and the break-glass group can"
            )
        return client.cancel(self.settings, self.store, run_id, user=user)

    # ------------------------------------------------------------------ incidents

    def status(self, incident_id: str) -> IncidentStatus:
        incident = self.store.get_incident(incident_id)
        runs = self.store.list_runs(incident_id=incident_id, limit=100)
        waiting: list[StoredEvent] = []
        for run in runs:
            gate = client.open_gate(self.store, run.id)
            if gate is not None and run.status == "waiting":
                waiting.append(gate)
            task = client.open_task(self.store, run.id, None)
            if task is not None and run.status == "waiting":
                waiting.append(task)
        return IncidentStatus(incident, runs, waiting)

    def open_incidents(self, limit: int = 20) -> list[Incident]:
        return list(self.store.list_incidents(status="open", limit=limit))

    def note(self, incident_id: str, *, user: str, text: str) -> StoredEvent:
        """Add a person's note to the incident's timeline (redacted, at most 4000 chars)."""
        text = text.strip()
        if not text:
            raise UsageError("a note needs some text: /incident note INC-ID what happened")
        if len(text) > NOTE_MAX:
            raise UsageError(f"a note is at most {NOTE_MAX} characters (got {len(text)})")
        incident = self.store.get_incident(incident_id)
        at = datetime.now(UTC)
        return self.store.append(
            NewEvent(
                id=event_id(incident.id, "-", NOTE, user, at.isoformat()),
                incident_id=incident.id,
                kind=NOTE,
                actor=f"user:{user}",
                at=at,
                payload={"text": self.redactor.text(text)},
            )
        )

    def waiting_for(self, user: str) -> list[tuple[RunRecord, StoredEvent]]:
        """Open gates and tasks ``user`` may answer (for App Home)."""
        from bot.core.approvals import is_allowed
        from bot.core.tasks import assignee_principals

        groups = self.config().group_map()
        found = []
        for run in self.store.list_runs(status="waiting", limit=200):
            gate = client.open_gate(self.store, run.id)
            if gate is not None:
                allowed = [str(p) for p in gate.payload.get("from", [])]
                if user != run.requester and is_allowed(user, allowed, groups):
                    found.append((run, gate))
            task = client.open_task(self.store, run.id, None)
            if task is not None:
                principals = assignee_principals(
                    str(task.payload.get("assignee") or ""), run.requester
                )
                if is_allowed(user, principals, groups):
                    found.append((run, task))
        return found

    # ------------------------------------------------------------------ webhook triggers

    def record_delivery(self, source: str, delivery_ids: Sequence[str]) -> bool:
        """Remember a webhook delivery by its ids; False if any was seen (a redelivery)."""
        return self.store.record_delivery(source, delivery_ids, datetime.now(UTC))

    def accept_delivery(
        self,
        source: str,
        delivery_ids: Sequence[str],
        *,
        group_key: str | None,
        start: StartFor,
    ) -> Acceptance:
        """Before a delivery is answered, in one transaction: remember its ids (a
        redelivery is seen), open its group (an Alertmanager groupKey, a PagerDuty
        incident: one run per firing) and keep its start in the outbox until it is
        made."""
        return self.store.accept_delivery(
            source, delivery_ids, datetime.now(UTC), group_key=group_key, start=start
        )

    def forget_start(self, key: str) -> None:
        self.store.remove_pending_start(key)

    def pending_starts(self, before: datetime) -> list[tuple[str, dict[str, Any]]]:
        return self.store.pending_starts(before)

    def resolve_alert_group(self, source: str, group_key: str) -> int | None:
        """Close a firing group; the generation whose run it started, or None."""
        return self.store.resolve_alert_group(source, group_key, datetime.now(UTC))

    def release_alert_group(self, source: str, group_key: str, generation: int) -> None:
        """That firing's run could not start: let the group's next firing try again."""
        self.store.release_alert_group(source, group_key, generation, datetime.now(UTC))

    def note_run(self, run_id: str, *, user: str, text: str) -> StoredEvent:
        """A note on the incident ``run_id`` belongs to (a resolved alert knows its run)."""
        return self.note(self.store.get_run(run_id).incident_id, user=user, text=text)

    def playbook_triggers(self) -> dict[str, list[Trigger]]:
        """The ``triggers`` of every valid playbook, re-read when a file changes."""
        return _playbook_triggers(self.settings.playbooks_dir)

    def trigger_routes(self) -> tuple[list[TriggerRoute], dict[str, list[Trigger]]]:
        """What a webhook event may start: irbot.yaml's routes and the playbooks' own."""
        return list(self.config().triggers), self.playbook_triggers()

    # ------------------------------------------------------------------ async twins

    async def astart(self, *args: Any, **kwargs: Any) -> Started:
        return await _thread(self.start, *args, **kwargs)

    async def avote(self, *args: Any, **kwargs: Any) -> client.VoteResult:
        return await _thread(self.vote, *args, **kwargs)

    async def atask(self, *args: Any, **kwargs: Any) -> client.TaskResult:
        return await _thread(self.task, *args, **kwargs)

    async def acancel(self, *args: Any, **kwargs: Any) -> RunRecord:
        return await _thread(self.cancel, *args, **kwargs)

    async def astatus(self, incident_id: str) -> IncidentStatus:
        return await _thread(self.status, incident_id)

    async def aopen_incidents(self, limit: int = 20) -> list[Incident]:
        return await _thread(self.open_incidents, limit)

    async def anote(self, incident_id: str, *, user: str, text: str) -> StoredEvent:
        return await _thread(self.note, incident_id, user=user, text=text)

    async def awaiting_for(self, user: str) -> list[tuple[RunRecord, StoredEvent]]:
        return await _thread(self.waiting_for, user)

    async def arecord_delivery(self, source: str, delivery_ids: Sequence[str]) -> bool:
        return await _thread(self.record_delivery, source, delivery_ids)

    async def aaccept_delivery(
        self,
        source: str,
        delivery_ids: Sequence[str],
        *,
        group_key: str | None,
        start: StartFor,
    ) -> Acceptance:
        return await _thread(
            self.accept_delivery, source, delivery_ids, group_key=group_key, start=start
        )

    async def aforget_start(self, key: str) -> None:
        await _thread(self.forget_start, key)

    async def apending_starts(self, before: datetime) -> list[tuple[str, dict[str, Any]]]:
        return await _thread(self.pending_starts, before)

    async def aresolve_alert_group(self, source: str, group_key: str) -> int | None:
        return await _thread(self.resolve_alert_group, source, group_key)

    async def arelease_alert_group(self, source: str, group_key: str, generation: int) -> None:
        await _thread(self.release_alert_group, source, group_key, generation)

    async def anote_run(self, run_id: str, *, user: str, text: str) -> StoredEvent:
        return await _thread(self.note_run, run_id, user=user, text=text)

    async def atrigger_routes(self) -> tuple[list[TriggerRoute], dict[str, list[Trigger]]]:
        return await _thread(self.trigger_routes)


_THREADS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="irbot-service")
"""Threads of the front doors' calls. Not the loop's default executor: with the engine
in the process, DBOS makes its worker pool the default, and a delivery's dedupe then
queued behind the runs the engine was working."""


async def _thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_THREADS, functools.partial(fn, *args, **kwargs))


class _StampCache(Generic[K, T]):
    """Values read from files, kept until the files' stamps (name, mtime, size) change,
    so an edit is seen by the next call while an unchanged file is not parsed and
    validated again on every request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[K, tuple[tuple[tuple[str, int, int], ...], T]] = {}

    def get(self, key: K, stamp: tuple[tuple[str, int, int], ...], read: Callable[[], T]) -> T:
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        value = read()  # outside the lock: a slow read does not hold up other keys
        with self._lock:
            self._entries[key] = (stamp, value)
        return value


_library_cache: _StampCache[Path, library.Library] = _StampCache()


def _library(directory: Path) -> library.Library:
    """The playbooks of ``directory``, read and validated once per version of its files
    (~10-15 ms each time, paid per start and per webhook delivery without this cache)."""
    files = library.discover([directory])
    stamp = tuple(_stamp(f) for f in files)
    return _library_cache.get(directory, stamp, lambda: library.read(files))


def _playbook_triggers(directory: Path) -> dict[str, list[Trigger]]:
    found: dict[str, list[Trigger]] = {}
    for result in _library(directory).results:
        if result.ok and result.playbook is not None and result.playbook.triggers:
            found[result.playbook.name] = list(result.playbook.triggers)
    return found


def _stamp(path: Path) -> tuple[str, int, int]:
    try:
        stat = path.stat()
    except OSError:  # vanished since it was listed: never equal to a cached stamp
        return (str(path), -1, -1)
    return (str(path), stat.st_mtime_ns, stat.st_size)
