"""Timeline events and the hash chain that makes edits to them detectable.

The timeline is the record people read after an incident. Every event carries the hash
of the one before it, so changing, removing or inserting a stored event breaks the chain
at that point and ``verify_chain`` names where. Storage lives in ``bot.store``; this
module only defines what an event is and how it is hashed, so an exported timeline can be
checked without a database.

::

    hash(n) = sha256(hash(n-1) + canonical(event n, seq n, hash(n-1)))   hash(0) = GENESIS

The chain is not keyed: someone who can rewrite every later row *and* the chain head can
forge a consistent history. Publishing the head hash elsewhere (Slack, an export) is what
turns "tamper-evident for edits" into "tamper-evident against the database owner".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
"""The ``prev_hash`` of the first event."""

INCIDENT_OPENED = "incident.opened"
RUN_STARTED = "run.started"
RUN_FINISHED = "run.finished"
RUN_FAILED = "run.failed"
RUN_CANCELLED = "run.cancelled"
RUN_EXPIRED = "run.expired"
STEP_STARTED = "step.started"
STEP_SUCCEEDED = "step.succeeded"
STEP_FAILED = "step.failed"
STEP_SKIPPED = "step.skipped"
STEP_RETRYING = "step.retrying"
APPROVAL_REQUESTED = "approval.requested"
APPROVAL_COUNTED = "approval.counted"
APPROVAL_REFUSED = "approval.refused"
APPROVAL_GRANTED = "approval.granted"
APPROVAL_REJECTED = "approval.rejected"
APPROVAL_EXPIRED = "approval.expired"
APPROVAL_BREAKGLASS = "approval.breakglass"
MANUAL_REQUESTED = "manual.requested"
MANUAL_COMPLETED = "manual.completed"
MANUAL_REFUSED = "manual.refused"
WAIT_STARTED = "wait.started"
WAIT_FINISHED = "wait.finished"
NOTE = "note"

KINDS = frozenset(
    {
        INCIDENT_OPENED,
        RUN_STARTED,
        RUN_FINISHED,
        RUN_FAILED,
        RUN_CANCELLED,
        RUN_EXPIRED,
        STEP_STARTED,
        STEP_SUCCEEDED,
        STEP_FAILED,
        STEP_SKIPPED,
        STEP_RETRYING,
        APPROVAL_REQUESTED,
        APPROVAL_COUNTED,
        APPROVAL_REFUSED,
        APPROVAL_GRANTED,
        APPROVAL_REJECTED,
        APPROVAL_EXPIRED,
        APPROVAL_BREAKGLASS,
        MANUAL_REQUESTED,
        MANUAL_COMPLETED,
        MANUAL_REFUSED,
        WAIT_STARTED,
        WAIT_FINISHED,
        NOTE,
    }
)
"""The kinds the engine writes; others (webhook sources) may add their own."""


def event_id(*parts: str | int) -> str:
    """A deterministic id, so a replayed step appends the same event and the store
    ignores the repeat: ``event_id(run_id, step_id, "step.started", attempt)``."""
    if not parts:
        raise ValueError("event_id needs at least one part")
    joined = "\x1f".join(str(p) for p in parts)
    return "ev_" + hashlib.sha256(joined.encode()).hexdigest()[:32]


def _json_safe(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload as it will read back from JSON (tuples become lists), so the bytes
    hashed at append are the bytes recomputed at verify."""
    try:
        text = json.dumps(dict(payload), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"event payload is not JSON-safe: {exc}") from exc
    result: dict[str, Any] = json.loads(text)
    return result


def _required(name: str, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"event {name} must be a non-empty string, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class NewEvent:
    """An event to append. ``payload`` must already be redacted: the timeline is read by
    people and exported, and an appended secret can never be removed again."""

    id: str
    incident_id: str
    kind: str
    actor: str
    """``irbot``, ``user:U123``, ``webhook:pagerduty``."""
    at: datetime
    run_id: str | None = None
    step_id: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("id", "incident_id", "kind", "actor"):
            _required(name, getattr(self, name))
        if not isinstance(self.at, datetime):
            raise TypeError(f"event time must be a datetime, got {type(self.at).__name__}")
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError(f"event time {self.at.isoformat()} is naive; give a UTC time")
        object.__setattr__(self, "at", self.at.astimezone(UTC))
        object.__setattr__(self, "payload", _json_safe(self.payload))


@dataclass(frozen=True, kw_only=True)
class StoredEvent(NewEvent):
    """An event as stored: its place in the chain and the hashes that pin it there."""

    seq: int
    prev_hash: str
    hash: str


def iso_utc(at: datetime) -> str:
    """``2024-05-01T12:00:00.000000Z``: fixed width, so it also sorts as text."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical(event: NewEvent, seq: int, prev_hash: str) -> bytes:
    """The exact bytes that are hashed for an event at position ``seq``."""
    body = {
        "id": event.id,
        "seq": seq,
        "prev_hash": prev_hash,
        "incident_id": event.incident_id,
        "run_id": event.run_id,
        "step_id": event.step_id,
        "kind": event.kind,
        "actor": event.actor,
        "at": iso_utc(event.at),
        "payload": event.payload,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode()


def chain_hash(prev_hash: str, body: bytes) -> str:
    """Link ``body`` to everything before it."""
    return hashlib.sha256(prev_hash.encode() + body).hexdigest()


def seal(event: NewEvent, seq: int, prev_hash: str) -> StoredEvent:
    """Give ``event`` its place after ``prev_hash``; what a store does at append."""
    digest = chain_hash(prev_hash, canonical(event, seq, prev_hash))
    return StoredEvent(
        id=event.id,
        incident_id=event.incident_id,
        kind=event.kind,
        actor=event.actor,
        at=event.at,
        run_id=event.run_id,
        step_id=event.step_id,
        payload=event.payload,
        seq=seq,
        prev_hash=prev_hash,
        hash=digest,
    )


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of a chain check; on failure, the first place it went wrong.

    ``first_bad_seq`` is the first position at which the stored chain differs from an
    intact one (for a removed row, the missing number); ``first_bad_id`` is the id of
    the row stored there, or None when there is none.
    """

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    first_bad_id: str | None = None
    reason: str | None = None


def verify_chain(events: Iterable[StoredEvent], head: tuple[int, str] | None) -> VerifyResult:
    """Recompute every link of ``events`` (the whole timeline, in seq order).

    ``head`` is the ``(seq, hash)`` the store recorded at its last append; it catches the
    removal of the last rows and rows added behind the store's back. Pass None to check
    an export that carries no head.
    """
    prev_seq, prev_hash, prev_id, checked = 0, GENESIS, None, 0

    def bad(seq: int, ident: str | None, reason: str) -> VerifyResult:
        return VerifyResult(False, checked, seq, ident, reason)

    for event in events:
        if event.seq != prev_seq + 1:
            if event.seq > prev_seq + 1:
                return bad(prev_seq + 1, None, f"sequence gap after seq {prev_seq} (row removed)")
            return bad(event.seq, event.id, f"seq {event.seq} out of order after seq {prev_seq}")
        if head is not None and event.seq > head[0]:
            reason = f"chain head says {head[0]} events but seq {event.seq} found (row added)"
            return bad(event.seq, event.id, reason)
        if event.prev_hash != prev_hash:
            reason = "prev_hash does not match the previous event (row inserted or removed)"
            return bad(event.seq, event.id, reason)
        if chain_hash(event.prev_hash, canonical(event, event.seq, event.prev_hash)) != event.hash:
            return bad(event.seq, event.id, "hash mismatch (row edited)")
        prev_seq, prev_hash, prev_id = event.seq, event.hash, event.id
        checked += 1
    if head is None:
        return VerifyResult(True, checked)
    head_seq, head_hash = head
    if head_seq > prev_seq:
        reason = f"chain head says {head_seq} events but {prev_seq} found (last row removed)"
        return bad(prev_seq + 1, None, reason)
    if head_hash != prev_hash:
        return bad(prev_seq, prev_id, "chain head hash does not match the last event")
    return VerifyResult(True, checked)
