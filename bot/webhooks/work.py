"""What a delivery does after it has been answered: start a run, or add a note.

Both run as the response's background task, so the sender's deadline only covers
verify, dedupe and record. Their failures have nobody left to answer: they are logged
(redacted), and a group claimed for a run that could not start is released, so the
group's next firing tries again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from bot.core.errors import IrbotError
from bot.core.redaction import Redactor
from bot.core.webhooks import Match
from bot.service import Service

log = structlog.get_logger("irbot.webhooks")
_redact = Redactor()


@dataclass(frozen=True)
class Claim:
    """An alert group (or PagerDuty incident) held for this start."""

    source: str
    group_key: str
    generation: int


@dataclass(frozen=True)
class StartRun:
    service: Service
    source: str
    match: Match
    key: str
    requester: str
    trigger: Mapping[str, Any]
    slots: asyncio.Semaphore
    """Bounds the starts in flight: under a burst, 200 starts at once would hold the
    database and the thread pool while the next deliveries wait for their answers."""
    claim: Claim | None = None

    async def __call__(self) -> None:
        """Start the run. The last-resort boundary of a webhook: the answer is sent, so
        an error of any kind is logged and swallowed instead of reaching the server."""
        try:
            async with self.slots:
                started = await self.service.astart(
                    self.match.playbook,
                    self.match.inputs,
                    requester=self.requester,
                    trigger=dict(self.trigger),
                    key=self.key,
                )
        except IrbotError as exc:
            await self._failed(exc.show())
            return
        except Exception as exc:  # noqa: BLE001 - documented last-resort boundary (above)
            await self._failed(f"unexpected {type(exc).__name__}")
            return
        log.info(
            "webhook.run_started",
            source=self.source,
            playbook=started.playbook,
            run=started.run_id,
            incident=started.incident_id,
            route=self.match.route,
        )

    async def _failed(self, reason: str) -> None:
        log.warning(
            "webhook.start_failed",
            source=self.source,
            playbook=self.match.playbook,
            run=f"run-{self.key}",
            route=self.match.route,
            error=_redact.text(reason),
        )
        if self.claim is None:
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
