"""The two-person gate as pure functions: one vote in, one decision out.

The engine re-checks every vote inside its workflow and Slack calls the same rules to
answer the clicker, so both must agree; hence no I/O, no clock and no config here.
Everything the rules depend on (group membership, the current plan digest, ``now``)
is passed in at decision time, so a user removed from a group cannot vote with a
membership they no longer have.

Rules, in the order they are checked (the first that applies wins):

1. a gate that is no longer pending refuses every vote (``gate_closed``);
2. at or after ``expires_at`` the gate expires: it fails closed and the vote is not counted;
3. a vote for another plan digest is refused (``digest_mismatch``);
4. a break-glass approval from a member of the break-glass group with a written reason
   grants the gate alone (even from the requester) and is flagged; the flag means
   nothing on a reject, which follows the ordinary rules;
5. the requester never counts, neither to approve nor to reject (``self_approval``);
6. the voter must be allowed by the gate's principals (``not_allowed``);
7. a reject needs a reason and closes the gate as rejected;
8. one person counts once (``already_counted``); ``min`` distinct approvers grant the gate.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from bot.core.errors import UsageError

Groups = Mapping[str, Collection[str]]
"""Group name -> member ids, as read at decision time (see ``Config.group_map``)."""

State = Literal["pending", "granted", "rejected", "expired"]

RefusalCode = Literal[
    "malformed",  # never from decide: for messages that do not even make a Vote
    "gate_closed",
    "expired",
    "digest_mismatch",
    "self_approval",
    "not_allowed",
    "already_counted",
    "reason_required",
    "not_breakglass",
]


class VoteError(UsageError, ValueError):
    """A malformed vote or gate. Also a ValueError, so code that parses untrusted
    messages and catches ValueError treats it as bad input rather than crashing."""


def _utc(value: object, what: str) -> datetime:
    """Naive datetimes are ambiguous about the expiry instant, so they are refused."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise VoteError(f"{what} must be a timezone-aware datetime (UTC), got {value!r}")
    return value.astimezone(UTC)


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


@dataclass(frozen=True)
class Vote:
    """One click or command; ``user`` comes from the verified request, never from a payload."""

    user: str
    decision: Literal["approve", "reject"]
    plan_digest: str
    reason: str | None = None
    breakglass: bool = False
    at: datetime = field(kw_only=True)
    """When the vote arrived (for the timeline); expiry is judged by ``now`` in :func:`decide`."""

    def __post_init__(self) -> None:
        # Votes are built from messages; check the types the rules rely on.
        if not isinstance(self.user, str) or not self.user:
            raise VoteError(f"a vote needs a user id, got {self.user!r}")
        if self.decision not in ("approve", "reject"):
            raise VoteError(f"a vote is 'approve' or 'reject', not {self.decision!r}")
        if not isinstance(self.plan_digest, str):
            raise VoteError(f"plan_digest must be a string, got {self.plan_digest!r}")
        if self.reason is not None and not isinstance(self.reason, str):
            raise VoteError(f"reason must be text, got {self.reason!r}")
        if not isinstance(self.breakglass, bool):
            raise VoteError(f"breakglass must be true or false, got {self.breakglass!r}")
        object.__setattr__(self, "at", _utc(self.at, "Vote.at"))


@dataclass(frozen=True)
class Gate:
    """What a gate asks for, fixed when the run reaches it."""

    gate_id: str
    min: int
    allowed: tuple[str, ...]
    requester: str
    digest: str
    expires_at: datetime
    breakglass_group: str = "breakglass"

    def __post_init__(self) -> None:
        if self.min < 1:
            raise VoteError(f"gate {self.gate_id!r}: min must be at least 1, got {self.min}")
        allowed: object = self.allowed
        if isinstance(allowed, str):  # a lone "group:sre" would become its characters
            raise VoteError(f"gate {self.gate_id!r}: allowed is a list of principals")
        object.__setattr__(self, "allowed", tuple(self.allowed))
        object.__setattr__(self, "expires_at", _utc(self.expires_at, "Gate.expires_at"))


@dataclass(frozen=True)
class Tally:
    """The gate's state after the votes so far; decisions return a new one."""

    approvers: tuple[str, ...]
    state: State
    breakglass_by: str | None = None
    rejected_by: str | None = None
    reason: str | None = None

    @classmethod
    def pending(cls) -> Tally:
        return cls(approvers=(), state="pending")


class Outcome(StrEnum):
    COUNTED = "counted"
    GRANTED = "granted"
    REFUSED = "refused"
    REJECTED = "rejected"
    EXPIRED = "expired"
    BREAKGLASS = "breakglass"


@dataclass(frozen=True)
class Decision:
    """What a vote did. ``reason`` is the sentence shown to people; ``code`` is set when
    the vote was not counted (a refusal, or ``expired``)."""

    outcome: Outcome
    tally: Tally
    reason: str
    code: RefusalCode | None = None

    @property
    def refused(self) -> bool:
        return self.outcome is Outcome.REFUSED


def is_allowed(user: str, principals: Collection[str], groups: Groups) -> bool:
    """Whether ``user`` is named by any ``user:ID`` or is in any ``group:NAME``.

    Unknown groups and malformed principals match nobody: fail closed.
    """
    for principal in principals:
        kind, sep, name = principal.partition(":")
        if not sep or not name:
            continue
        if kind == "user" and name == user:
            return True
        if kind == "group" and user in groups.get(name, ()):
            return True
    return False


def _refuse(tally: Tally, code: RefusalCode, reason: str) -> Decision:
    return Decision(Outcome.REFUSED, tally, reason, code)


def _expired(gate: Gate, tally: Tally) -> Decision:
    closed = replace(tally, state="expired")
    when = gate.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    reason = f"gate {gate.gate_id} expired at {when} with {summary(gate, tally)}; the run stops"
    return Decision(Outcome.EXPIRED, closed, reason, "expired")


def decide(gate: Gate, tally: Tally, vote: Vote, groups: Groups, now: datetime) -> Decision:
    """Apply one vote to the gate (rules in the module docstring, in order)."""
    now = _utc(now, "now")
    user = vote.user
    if tally.state != "pending":
        return _refuse(tally, "gate_closed", f"gate {gate.gate_id} is already {tally.state}")
    if now >= gate.expires_at:
        return _expired(gate, tally)
    if vote.plan_digest != gate.digest:
        return _refuse(
            tally, "digest_mismatch", "the plan changed since you saw it; review it and vote again"
        )
    if vote.breakglass and vote.decision == "approve":
        return _breakglass(gate, tally, vote, groups)
    if user == gate.requester:
        return _refuse(
            tally, "self_approval", f"{user} requested this run and cannot {vote.decision} it"
        )
    if not is_allowed(user, gate.allowed, groups):
        allowed = ", ".join(gate.allowed) or "nobody"
        return _refuse(tally, "not_allowed", f"{user} is not allowed to vote here ({allowed})")
    if vote.decision == "reject":
        if _blank(vote.reason):
            return _refuse(tally, "reason_required", "a rejection needs a reason")
        reason = (vote.reason or "").strip()
        closed = replace(tally, state="rejected", rejected_by=user, reason=reason)
        return Decision(Outcome.REJECTED, closed, f"{user} rejected gate {gate.gate_id}: {reason}")
    if user in tally.approvers:
        return _refuse(
            tally, "already_counted", f"{user} has already approved; one person counts once"
        )
    counted = replace(tally, approvers=(*tally.approvers, user))
    if len(counted.approvers) >= gate.min:
        granted = replace(counted, state="granted")
        return Decision(
            Outcome.GRANTED, granted, f"gate {gate.gate_id} granted: {summary(gate, granted)}"
        )
    return Decision(Outcome.COUNTED, counted, f"{user} approved: {summary(gate, counted)}")


def _breakglass(gate: Gate, tally: Tally, vote: Vote, groups: Groups) -> Decision:
    """Break-glass bypasses the requester and ``min`` rules, so it is loud and needs a reason."""
    if vote.user not in groups.get(gate.breakglass_group, ()):
        return _refuse(
            tally,
            "not_breakglass",
            f"{vote.user} is not in the {gate.breakglass_group} group and cannot break glass",
        )
    if _blank(vote.reason):
        return _refuse(tally, "reason_required", "break-glass needs a written reason")
    reason = (vote.reason or "").strip()
    granted = replace(tally, state="granted", breakglass_by=vote.user, reason=reason)
    return Decision(
        Outcome.BREAKGLASS,
        granted,
        f"BREAK-GLASS: {vote.user} passed gate {gate.gate_id} alone: {reason}",
    )


def expire(gate: Gate, tally: Tally, now: datetime) -> Decision | None:
    """The expired decision once the ttl has passed on a still pending gate, else None."""
    if tally.state == "pending" and _utc(now, "now") >= gate.expires_at:
        return _expired(gate, tally)
    return None


def summary(gate: Gate, tally: Tally) -> str:
    """A one-line status for the Slack message, e.g. ``1 of 2: U02``."""
    if tally.breakglass_by is not None:
        return f"BREAK-GLASS by {tally.breakglass_by}: {tally.reason}"
    if tally.state == "rejected":
        return f"rejected by {tally.rejected_by}: {tally.reason}"
    count = f"{len(tally.approvers)} of {gate.min}"
    text = f"{count}: {', '.join(tally.approvers)}" if tally.approvers else count
    return text if tally.state == "pending" else f"{text} ({tally.state})"
