"""The incident threads as Slack would show them, followed from the timeline.

:class:`ThreadView` turns an event into the lines the notifier would post for it, using
the same Block Kit renderers (:mod:`bot.slack.blocks`): the root message when an
incident opens, the approval request and task with their plan and a hint saying what to
type instead of clicking, each answer as the update Slack would make in place, and the
short lines for failures, endings and notes. Events Slack does not show print nothing.
:class:`Follower` polls the store for new events and hands the lines to the screen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.core.errors import IrbotError, NotFoundError
from bot.core.timeline import (
    APPROVAL_BREAKGLASS,
    APPROVAL_COUNTED,
    APPROVAL_EXPIRED,
    APPROVAL_GRANTED,
    APPROVAL_REJECTED,
    APPROVAL_REQUESTED,
    INCIDENT_OPENED,
    MANUAL_COMPLETED,
    MANUAL_REQUESTED,
    StoredEvent,
)
from bot.slack import blocks
from bot.store import TimelineStore

POLL_SECONDS = 0.3
BATCH = 200

_APPROVAL_ANSWERS = frozenset(
    {APPROVAL_COUNTED, APPROVAL_GRANTED, APPROVAL_REJECTED, APPROVAL_EXPIRED, APPROVAL_BREAKGLASS}
)


@dataclass(frozen=True)
class ThreadLine:
    """One printed line of an incident's thread (its text is mrkdwn)."""

    incident_id: str
    text: str
    root: bool = False
    """The incident's root message, not a reply in its thread."""
    detail: bool = False
    """A continuation of the message above (its plan, its progress)."""
    hint: bool = False
    """What to type in the shell instead of clicking."""


def block_lines(message: list[dict[str, Any]]) -> list[str]:
    """The text of a message's blocks, line by line, as Slack lays it out (buttons and
    dividers left out: the shell has its own way to press them)."""
    found: list[str] = []
    for block in message:
        kind = block.get("type")
        if kind in ("section", "header"):
            found += str(block.get("text", {}).get("text") or "").splitlines()
        elif kind == "context":
            parts = [str(e.get("text") or "") for e in block.get("elements") or []]
            found.append(" · ".join(p for p in parts if p))
    return [line for line in found if line.strip()]


class ThreadView:
    """Renders events; remembers open requests so their answers can be drawn as updates.
    Reads the store (incidents, a request it has not seen): call it off the event loop."""

    def __init__(self, store: TimelineStore) -> None:
        self.store = store
        self._requests: dict[tuple[str, str | None, object], StoredEvent] = {}

    def render(self, event: StoredEvent) -> list[ThreadLine]:
        kind = event.kind
        incident = event.incident_id
        if kind == INCIDENT_OPENED:
            root = blocks.root_message(
                self.store.get_incident(incident),
                status=blocks.status_text(event) or "opened",
                run_id=event.run_id,
                requester=event.actor,
            )
            return [ThreadLine(incident, root.text, root=True)]
        if kind == APPROVAL_REQUESTED:
            self._requests[_key(kind, event)] = event
            return self._approval_request(event)
        if kind == MANUAL_REQUESTED:
            self._requests[_key(kind, event)] = event
            return self._task_request(event)
        if kind in _APPROVAL_ANSWERS or kind == MANUAL_COMPLETED:
            return self._update(event)
        line = blocks.run_line(event)
        return [] if line is None else [ThreadLine(incident, line.text)]

    def _approval_request(self, event: StoredEvent) -> list[ThreadLine]:
        rendered = blocks.approval_request(event)
        run = str(event.run_id)
        digest = blocks.short_digest(str(event.payload.get("digest") or ""))
        hint = f"type `approve {run}` to approve plan `{digest}`, or `reject {run} reason…`"
        return self._message(event, rendered, hint)

    def _task_request(self, event: StoredEvent) -> list[ThreadLine]:
        rendered = blocks.task_request(event)
        run, step = str(event.run_id), str(event.step_id)
        assignees = [a.strip() for a in str(event.payload.get("assignee") or "").split(",")]
        who = ", ".join(blocks.mention(a) for a in assignees if a) or "the requester"
        secret = " --secret-file FILE" if event.payload.get("secret_input") else ""
        hint = f"for {who}: type `done {run} {step}{secret}` or `failed {run} {step} reason…`"
        return self._message(event, rendered, hint)

    def _message(
        self, event: StoredEvent, rendered: blocks.Rendered, hint: str
    ) -> list[ThreadLine]:
        """The fallback text, then the blocks' lines (the first repeats the text)."""
        incident = event.incident_id
        lines = [ThreadLine(incident, rendered.text)]
        lines += [
            ThreadLine(incident, text, detail=True) for text in block_lines(rendered.blocks)[1:]
        ]
        lines.append(ThreadLine(incident, hint, detail=True, hint=True))
        return lines

    def _update(self, event: StoredEvent) -> list[ThreadLine]:
        """An answer: the message as Slack edits it, shown as its text and new last part."""
        incident = event.incident_id
        if event.kind == MANUAL_COMPLETED:
            requested = self._request(event, MANUAL_REQUESTED)
            rendered = None if requested is None else blocks.task_state(requested, event)
        else:
            requested = self._request(event, APPROVAL_REQUESTED)
            rendered = None if requested is None else blocks.approval_state(requested, event)
        if rendered is None:  # its request is not on the timeline: say what happened
            return [ThreadLine(incident, f"{event.kind} in run `{event.run_id}`")]
        last = [b for b in rendered.blocks if b.get("type") != "actions"][-1:]
        return [ThreadLine(incident, rendered.text)] + [
            ThreadLine(incident, text, detail=True) for text in block_lines(last)
        ]

    def _request(self, event: StoredEvent, kind: str) -> StoredEvent | None:
        """The request ``event`` answers: remembered, or the newest one before it."""
        key = _key(kind, event)
        if key in self._requests:
            return self._requests[key]
        found = None
        for earlier in self.store.events(run_id=event.run_id):
            if earlier.seq >= event.seq:
                break
            if earlier.kind == kind and _key(kind, earlier) == key:
                found = earlier
        if found is not None:
            self._requests[key] = found
        return found


def _key(kind: str, event: StoredEvent) -> tuple[str, str | None, object]:
    """A request of ``kind`` and its answers meet on the run and the gate (approvals) or
    the step (tasks)."""
    if kind == APPROVAL_REQUESTED:
        return (kind, event.run_id, event.payload.get("gate"))
    return (kind, event.run_id, event.step_id)


class Follower:
    """Polls the timeline after ``after`` and shows each new event's lines, in order."""

    def __init__(
        self,
        store: TimelineStore,
        show: Callable[[list[ThreadLine]], None],
        on_error: Callable[[IrbotError], None],
        *,
        after: int,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.view = ThreadView(store)
        self.store = store
        self.show = show
        self.on_error = on_error
        self.cursor = after
        self.poll_seconds = poll_seconds
        self._lock = asyncio.Lock()

    def _poll(self) -> tuple[list[ThreadLine], int]:
        """New events' lines. The cursor passes an event only once its lines are made; a
        read that fails midway keeps what came before it and retries the rest later."""
        events = self.store.events_after(self.cursor, BATCH)
        lines: list[ThreadLine] = []
        for event in events:
            try:
                lines += self.view.render(event)
            except NotFoundError:
                pass  # a record the event names is gone: no later read can draw it
            except IrbotError:
                if not lines:
                    raise
                return lines, 0
            self.cursor = event.seq
        return lines, len(events)

    async def catch_up(self) -> None:
        """Show everything on the timeline now (also the last thing before leaving).
        The lock keeps the background loop and a caller from showing an event twice."""
        async with self._lock:
            while True:
                lines, count = await asyncio.to_thread(self._poll)
                if lines:
                    self.show(lines)
                if count < BATCH:
                    return

    async def refresh(self) -> None:
        """:meth:`catch_up`, with a store error shown rather than raised."""
        try:
            await self.catch_up()
        except IrbotError as exc:
            self.on_error(exc)

    async def run(self) -> None:
        """Follow until cancelled; a store error is shown and retried, growing the pause."""
        failures = 0
        while True:
            try:
                await self.catch_up()
                failures = 0
            except IrbotError as exc:
                failures += 1
                if failures == 1:
                    self.on_error(exc)
            await asyncio.sleep(min(self.poll_seconds * 2**failures, 10.0))
