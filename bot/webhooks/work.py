"""What a delivery does after it has been answered: start a run, or add a note.

Both run as the response's background task, so the sender's deadline only covers
verify, dedupe and record. Their failures have nobody left to answer: they are logged
(redacted), and a group claimed for a run that could not start is released, so the
group's next firing tries again.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from bot.core.errors import IrbotError
from bot.core.redaction import Redactor
from bot.core.webhooks import Match
from bot.service import Service

log = structlog.get_logger("irbot.webhooks")
_redact = Redactor()


STARTS_IN_FLIGHT = 4
"""Runs being started at once from webhook deliveries (the rest wait their turn after
their answer); a burst's answers then do not queue behind its starts."""


Slots = AbstractAsyncContextManager[Any]
"""What a start holds while it is made: :class:`bot.turns.Turns`, or any semaphore."""


@dataclass(frozen=True)
class Claim:
    """An alert group (or PagerDuty incident) held for this start."""

    source: str
    group_key: str
    generation: int


@dataclass(frozen=True)
class StartRun:
    """Start the run a delivery was answered for. Recorded in the store's outbox before
    the answer (with the delivery's dedupe and group claim, ``Service.accept_delivery``)
    and removed once started or refused for good, so a crash in between leaves it for
    :func:`restart_pending` (starting twice is harmless: the key makes a start
    idempotent)."""

    service: Service
    source: str
    playbook: str
    inputs: Mapping[str, Any]
    route: str
    key: str
    requester: str
    trigger: Mapping[str, Any]
    slots: Slots
    """Bounds the starts in flight: under a burst, 200 starts at once would hold the
    database and the thread pool while the next deliveries wait for their answers."""
    claim: Claim | None = None

    @classmethod
    def of(
        cls,
        service: Service,
        source: str,
        match: Match,
        key: str,
        trigger: Mapping[str, Any],
        *,
        slots: Slots,
        claim: Claim | None = None,
    ) -> StartRun:
        return cls(
            service,
            source,
            match.playbook,
            dict(match.inputs),
            match.route,
            key,
            f"webhook:{source}",
            dict(trigger),
            slots,
            claim,
        )

    def request(self) -> dict[str, Any]:
        """What the outbox keeps to make this start again."""
        claim = None if self.claim is None else asdict(self.claim)
        return {
            "source": self.source,
            "playbook": self.playbook,
            "inputs": dict(self.inputs),
            "route": self.route,
            "requester": self.requester,
            "trigger": dict(self.trigger),
            "claim": claim,
        }

    @classmethod
    def from_request(
        cls, service: Service, key: str, request: Mapping[str, Any], slots: Slots
    ) -> StartRun:
        claim = request.get("claim")
        return cls(
            service,
            str(request["source"]),
            str(request["playbook"]),
            dict(request["inputs"]),
            str(request["route"]),
            key,
            str(request["requester"]),
            dict(request["trigger"]),
            slots,
            Claim(**claim) if claim else None,
        )

    async def __call__(self) -> None:
        """Start the run. The last-resort boundary of a webhook: the answer is sent, so
        an error of any kind is logged and swallowed instead of reaching the server; only
        an unexpected one leaves the start in the outbox, to be tried again."""
        try:
            async with self.slots:
                started = await self.service.astart(
                    self.playbook,
                    self.inputs,
                    requester=self.requester,
                    trigger=dict(self.trigger),
                    key=self.key,
                )
        except IrbotError as exc:
            await self._failed(exc.show())
            await self._done()
            return
        except Exception as exc:  # noqa: BLE001 - documented last-resort boundary (above)
            await self._failed(f"unexpected {type(exc).__name__}", release=False)
            return
        await self._done()
        log.info(
            "webhook.run_started",
            source=self.source,
            playbook=started.playbook,
            run=started.run_id,
            incident=started.incident_id,
            route=self.route,
        )

    async def _done(self) -> None:
        try:
            await self.service.aforget_start(self.key)
        except IrbotError as exc:  # left in the outbox: restarted later, harmlessly
            log.warning("webhook.outbox_not_cleared", run=f"run-{self.key}", error=exc.show())

    async def _failed(self, reason: str, *, release: bool = True) -> None:
        log.warning(
            "webhook.start_failed",
            source=self.source,
            playbook=self.playbook,
            run=f"run-{self.key}",
            route=self.route,
            error=_redact.text(reason),
        )
        if self.claim is None or not release:
            return
        try:
            await self.service.arelease_alert_group(
                self.claim.source, self.claim.group_key, self.claim.generation
            )
        except IrbotError as exc:
            log.error("webhook.release_failed", source=self.claim.source, error=exc.show())


@dataclass(frozen=True)
class NoteRun:
    service: Service
    run_id: str
    user: str
    text: str

    async def __call__(self) -> None:
        """Add the note; same boundary as :class:`StartRun`."""
        try:
            event = await self.service.anote_run(self.run_id, user=self.user, text=self.text)
        except IrbotError as exc:
            reason = exc.show()
        except Exception as exc:  # noqa: BLE001 - documented last-resort boundary (above)
            reason = f"unexpected {type(exc).__name__}"
        else:
            log.info("webhook.noted", run=self.run_id, incident=event.incident_id, by=self.user)
            return
        log.warning(
            "webhook.note_failed", run=self.run_id, by=self.user, error=_redact.text(reason)
        )


RESTART_AFTER = timedelta(seconds=60)
"""A start still in the outbox this long after its answer was lost (a crash, or a failure
of an unexpected kind): the server starts it again."""


async def restart_pending(service: Service, slots: Slots) -> int:
    """Start again what the outbox still holds from more than :data:`RESTART_AFTER` ago;
    how many were tried."""
    before = datetime.now(UTC) - RESTART_AFTER
    stuck = await service.apending_starts(before)
    for key, request in stuck:
        try:
            start = StartRun.from_request(service, key, request, slots)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("webhook.outbox_unreadable", run=f"run-{key}", error=repr(exc))
            await service.aforget_start(key)
            continue
        log.info("webhook.restarting", run=f"run-{key}", source=start.source)
        await start()
    return len(stuck)
