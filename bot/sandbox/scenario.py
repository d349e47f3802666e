"""leak-response, played end to end by the cast on the real engine.

alice (sre, on call) starts the run; the engine works it in this process. At the gate
alice tries to approve her own run and is refused; bob (sre) and carol (security)
approve. The rotation, the restarts and the checks run against the sandbox; at each
manual task alice, its assignee, reports it done. Everyone speaks through
:class:`bot.service.Service`, exactly as the Slack handlers do.

The script is also a check: a step that does not go as written (the self-approval
counted, a vote unanswered, the run stuck) raises :class:`SandboxError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.core.timeline import StoredEvent
from bot.engine import client, runtime
from bot.sandbox import SandboxError, cast
from bot.sandbox.environment import DEPLOYMENTS, NAMESPACE, PLAYBOOK, SECRET_ID
from bot.service import Service
from bot.settings import Settings
from bot.store import RunRecord

RUN_DEADLINE_SECONDS = 50.0
POLL_SECONDS = 0.05
FINISHED = frozenset(client.FINISHED)

INPUTS = {
    "secret_id": SECRET_ID,
    "deployments": ",".join(DEPLOYMENTS),
    "namespace": NAMESPACE,
}

_TASK_NOTES = {
    "revoke_at_source": "simulated: removed from the pasted CI log; it was valid only in AWS",
    "scrub_history": "simulated: no commit held it; nothing to rewrite",
}


@dataclass(frozen=True)
class CastAction:
    """Something a simulated person did, and what irbot answered."""

    person: str
    doing: str
    outcome: str
    """refused | counted | granted | accepted (the engine's word)."""
    reason: str


@dataclass
class Played:
    run: RunRecord
    actions: list[CastAction] = field(default_factory=list)
    events: list[StoredEvent] = field(default_factory=list)


OnEvent = Callable[[StoredEvent], None]
OnCast = Callable[[CastAction], None]
OnTick = Callable[[], None]


async def play(
    settings: Settings, *, on_event: OnEvent, on_cast: OnCast, on_tick: OnTick | None = None
) -> Played:
    """Start the engine, run the story, stop the engine; returns what happened.

    ``on_tick`` is called at every look at the timeline (to report the world outside it,
    such as a rollout in progress).
    """
    rt = await runtime.launch(settings)
    try:
        service = Service(settings, rt.store)
        started = await service.astart(PLAYBOOK, INPUTS, requester=cast.REQUESTER.id)
        director = _Director(service, started.run_id, started.incident_id, on_event, on_cast)
        director.on_tick = on_tick
        return await director.until_finished()
    finally:
        runtime.shutdown()


class _Director:
    """Follows the timeline and gives each person their cue."""

    def __init__(
        self, service: Service, run_id: str, incident_id: str, on_event: OnEvent, on_cast: OnCast
    ) -> None:
        self.service = service
        self.store = service.store
        self.run_id = run_id
        self.incident_id = incident_id
        self.on_event = on_event
        self.on_cast = on_cast
        self.events: list[StoredEvent] = []
        self.actions: list[CastAction] = []
        self.answered: set[str] = set()
        self.on_tick: OnTick | None = None

    async def until_finished(self) -> Played:
        deadline = time.monotonic() + RUN_DEADLINE_SECONDS
        while True:
            await self._flush()
            run = await asyncio.to_thread(self.store.get_run, self.run_id)
            if run.status in FINISHED:
                await self._flush()
                return Played(run, self.actions, self.events)
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"the run did not finish within {RUN_DEADLINE_SECONDS:.0f} s "
                    f"(status {run.status}); see the timeline above"
                )
            if not await self._cue():
                await asyncio.sleep(POLL_SECONDS)

    async def _flush(self) -> None:
        """Report the events appended since the last look, in chain order."""
        if self.on_tick is not None:
            self.on_tick()
        events = await asyncio.to_thread(self.store.events, self.incident_id)
        for event in events[len(self.events) :]:
            self.events.append(event)
            self.on_event(event)

    async def _cue(self) -> bool:
        """Answer the open gate or task, if there is one not answered yet."""
        gate = await asyncio.to_thread(client.open_gate, self.store, self.run_id)
        if gate is not None and gate.id not in self.answered:
            self.answered.add(gate.id)
            await self._approvals(str(gate.payload.get("gate")))
            return True
        task = await asyncio.to_thread(client.open_task, self.store, self.run_id, None)
        if task is not None and task.id not in self.answered:
            self.answered.add(task.id)
            await self._task(str(task.step_id))
            return True
        return False

    async def _approvals(self, gate: str) -> None:
        await self._flush()
        me = cast.REQUESTER.id
        await self._vote(me, f"clicks Approve at gate {gate} of her own run", expect="refused")
        *firsts, last = cast.APPROVERS
        for person in firsts:
            await self._vote(person.id, f"clicks Approve at gate {gate}", expect="counted")
        await self._vote(last.id, f"clicks Approve at gate {gate}", expect="granted")

    async def _vote(self, user: str, doing: str, *, expect: str) -> None:
        result = await self.service.avote(self.run_id, user=user, decision="approve")
        answer = self._answered(result.answer, f"{user}'s vote")
        action = CastAction(user, doing, str(answer["outcome"]), _because(answer))
        await self._act(action, expect)

    async def _task(self, step: str) -> None:
        await self._flush()
        user = cast.REQUESTER.id  # the tasks have no assignee: the requester does them
        result = await self.service.atask(
            self.run_id, user=user, status="done", step_id=step, note=_TASK_NOTES.get(step)
        )
        answer = self._answered(result.answer, f"{user}'s answer to task {step}")
        doing = f"does the manual task {step} by hand and clicks Done"
        action = CastAction(user, doing, str(answer["outcome"]), _because(answer))
        await self._act(action, "accepted")

    def _answered(self, answer: dict[str, Any] | None, what: str) -> dict[str, Any]:
        if answer is None:
            raise SandboxError(f"the engine did not answer {what} in time")
        return answer

    async def _act(self, action: CastAction, expect: str) -> None:
        self.actions.append(action)
        self.on_cast(action)
        await self._flush()  # the event the answer appended, right under it
        if action.outcome != expect:
            raise SandboxError(
                f"{action.person} {action.doing}: expected {expect}, irbot answered "
                f"{action.outcome} ({action.reason})"
            )


def _because(answer: dict[str, Any]) -> str:
    reason = str(answer.get("reason") or "")
    summary = str(answer.get("summary") or "")
    return reason if not summary or summary in reason else f"{reason} ({summary})"
