"""The two-person gate rules (bot.core.approvals): one test per rule, then properties.

The property tests replay random vote sequences against random gates while group
membership changes between votes, and compare the result with an independent oracle
written from DESIGN.md ("Two-person gates") rather than from the implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.approvals import (
    Decision,
    Gate,
    Outcome,
    Tally,
    Vote,
    VoteError,
    decide,
    expire,
    is_allowed,
    summary,
)
from bot.core.errors import UsageError

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=15)
GROUPS: dict[str, frozenset[str]] = {
    "sre": frozenset({"U01", "U02", "U03"}),
    "security": frozenset({"U04"}),
    "breakglass": frozenset({"U09"}),
}


def gate(**changes: object) -> Gate:
    fields: dict[str, object] = {
        "gate_id": "approve",
        "min": 2,
        "allowed": ("group:sre", "group:security"),
        "requester": "U01",
        "digest": "d1",
        "expires_at": T0 + TTL,
    }
    fields.update(changes)
    return Gate(**fields)  # type: ignore[arg-type]


def vote(
    user: str,
    decision: str = "approve",
    *,
    digest: str = "d1",
    reason: str | None = None,
    breakglass: bool = False,
    minute: int = 1,
) -> Vote:
    return Vote(
        user,
        decision,  # type: ignore[arg-type]
        digest,
        reason,
        breakglass,
        at=T0 + timedelta(minutes=minute),
    )


def run(
    votes: Iterable[Vote],
    *,
    g: Gate | None = None,
    groups: Mapping[str, frozenset[str]] = GROUPS,
    tally: Tally | None = None,
) -> list[Decision]:
    """Feed votes in order, each decided at its own arrival time."""
    g = gate() if g is None else g
    current = Tally.pending() if tally is None else tally
    out = []
    for v in votes:
        decision = decide(g, current, v, groups, v.at)
        out.append(decision)
        current = decision.tally
    return out


# --------------------------------------------------------------------------- rules


def test_two_distinct_allowed_approvers_grant_the_gate() -> None:
    first, second = run([vote("U02"), vote("U04", minute=2)])
    assert (first.outcome, first.code, first.tally.approvers) == (Outcome.COUNTED, None, ("U02",))
    assert second.outcome is Outcome.GRANTED
    assert second.tally == Tally(("U02", "U04"), "granted")
    assert second.code is None


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_the_requester_never_counts(decision: str) -> None:
    (result,) = run([vote("U01", decision, reason="mine")])
    assert (result.outcome, result.code) == (Outcome.REFUSED, "self_approval")
    assert result.tally == Tally.pending()


def test_the_same_user_twice_counts_once() -> None:
    results = run([vote("U02"), vote("U02", minute=2), vote("U03", minute=3)])
    assert [r.outcome for r in results] == [Outcome.COUNTED, Outcome.REFUSED, Outcome.GRANTED]
    assert results[1].code == "already_counted"
    assert results[2].tally.approvers == ("U02", "U03")


def test_a_non_member_is_refused() -> None:
    (result,) = run([vote("U77")])
    assert (result.outcome, result.code) == (Outcome.REFUSED, "not_allowed")
    assert result.tally == Tally.pending()


def test_user_principals_and_unknown_groups() -> None:
    assert is_allowed("U77", ["user:U77"], GROUPS)
    assert not is_allowed("U77", ["group:ghost", "user:U78", "U77", "user:"], GROUPS)
    (result,) = run([vote("U77")], g=gate(min=1, allowed=("user:U77",)))
    assert result.outcome is Outcome.GRANTED


def test_membership_is_read_at_decision_time() -> None:
    g = gate(min=2)
    before = run([vote("U02")], g=g)[0]
    removed = {**GROUPS, "sre": frozenset({"U01", "U02"})}  # U03 left sre after the request
    (late,) = run([vote("U03", minute=2)], g=g, groups=removed, tally=before.tally)
    assert (late.outcome, late.code) == (Outcome.REFUSED, "not_allowed")
    added = {**GROUPS, "security": frozenset({"U04", "U05"})}
    (joined,) = run([vote("U05", minute=3)], g=g, groups=added, tally=before.tally)
    assert joined.outcome is Outcome.GRANTED


@pytest.mark.parametrize("reason", [None, "", "   \n"])
def test_a_reject_needs_a_reason(reason: str | None) -> None:
    (result,) = run([vote("U02", "reject", reason=reason)])
    assert (result.outcome, result.code) == (Outcome.REFUSED, "reason_required")
    assert result.tally == Tally.pending()


def test_a_reject_stops_the_gate() -> None:
    results = run([vote("U02"), vote("U03", "reject", reason=" wrong secret ", minute=2)])
    rejected = results[1]
    assert rejected.outcome is Outcome.REJECTED
    assert rejected.tally == Tally(("U02",), "rejected", rejected_by="U03", reason="wrong secret")
    (after,) = run([vote("U04", minute=3)], tally=rejected.tally)
    assert (after.outcome, after.code) == (Outcome.REFUSED, "gate_closed")


def test_a_reject_from_a_non_member_does_not_stop_the_gate() -> None:
    (result,) = run([vote("U77", "reject", reason="no")])
    assert (result.outcome, result.code) == (Outcome.REFUSED, "not_allowed")


def test_ttl_expiry_fails_closed() -> None:
    counted = run([vote("U02")])[0]
    (late,) = run([vote("U03", minute=15)], tally=counted.tally)  # exactly at expires_at
    assert (late.outcome, late.code) == (Outcome.EXPIRED, "expired")
    assert late.tally == Tally(("U02",), "expired")
    assert "expired" in late.reason
    (after,) = run([vote("U04", minute=16)], tally=late.tally)
    assert (after.outcome, after.code) == (Outcome.REFUSED, "gate_closed")


def test_expire_only_once_the_ttl_has_passed_on_a_pending_gate() -> None:
    g = gate()
    pending = Tally.pending()
    assert expire(g, pending, T0 + TTL - timedelta(seconds=1)) is None
    expired = expire(g, pending, T0 + TTL)
    assert expired is not None
    assert (expired.outcome, expired.tally.state) == (Outcome.EXPIRED, "expired")
    assert expire(g, Tally(("U02", "U03"), "granted"), T0 + 2 * TTL) is None
    assert expire(g, expired.tally, T0 + 2 * TTL) is None


def test_a_digest_mismatch_is_refused() -> None:
    (result,) = run([vote("U02", digest="d0")])
    assert (result.outcome, result.code) == (Outcome.REFUSED, "digest_mismatch")
    assert "plan changed" in result.reason
    assert result.tally == Tally.pending()


def test_breakglass_only_for_its_group() -> None:
    (result,) = run([vote("U02", reason="on fire", breakglass=True)])
    assert (result.outcome, result.code) == (Outcome.REFUSED, "not_breakglass")
    custom = gate(breakglass_group="oncall")
    groups = {**GROUPS, "oncall": frozenset({"U02"})}
    (allowed,) = run([vote("U02", reason="on fire", breakglass=True)], g=custom, groups=groups)
    assert allowed.outcome is Outcome.BREAKGLASS
    (other,) = run([vote("U09", reason="on fire", breakglass=True)], g=custom, groups=groups)
    assert other.code == "not_breakglass"


@pytest.mark.parametrize("reason", [None, "", "  "])
def test_breakglass_needs_a_reason(reason: str | None) -> None:
    (result,) = run([vote("U09", reason=reason, breakglass=True)])
    assert (result.outcome, result.code) == (Outcome.REFUSED, "reason_required")


def test_breakglass_passes_alone_even_for_the_requester_and_is_flagged() -> None:
    (result,) = run(
        [vote("U09", reason="prod is down", breakglass=True)], g=gate(min=4, requester="U09")
    )
    assert result.outcome is Outcome.BREAKGLASS
    assert result.tally == Tally((), "granted", breakglass_by="U09", reason="prod is down")
    assert "BREAK-GLASS" in result.reason
    assert summary(gate(), result.tally) == "BREAK-GLASS by U09: prod is down"


def test_a_breakglass_reject_follows_the_ordinary_rules() -> None:
    (result,) = run([vote("U09", "reject", reason="no", breakglass=True)])
    assert (result.outcome, result.code) == (Outcome.REFUSED, "not_allowed")


CLOSED = [
    Tally(("U02", "U03"), "granted"),
    Tally((), "granted", breakglass_by="U09", reason="fire"),
    Tally(("U02",), "rejected", rejected_by="U03", reason="no"),
    Tally(("U02",), "expired"),
]
EVERY_KIND_OF_VOTE = [
    vote("U04"),
    vote("U04", "reject", reason="no"),
    vote("U09", reason="fire", breakglass=True),
    vote("U01"),
    vote("U04", digest="d0", minute=30),
]


@pytest.mark.parametrize(
    "tally", CLOSED, ids=lambda t: t.state + ("-bg" if t.breakglass_by else "")
)
def test_a_closed_gate_refuses_everything(tally: Tally) -> None:
    for v in EVERY_KIND_OF_VOTE:
        (result,) = run([v], tally=tally)
        assert (result.outcome, result.code, result.tally) == (
            Outcome.REFUSED,
            "gate_closed",
            tally,
        )


def test_rule_order() -> None:
    """Closed before expired before digest before anything about the voter."""
    late_stale_self = vote("U01", digest="d0", minute=30)
    assert run([late_stale_self], tally=CLOSED[0])[0].code == "gate_closed"
    assert run([late_stale_self])[0].code == "expired"
    assert run([vote("U01", digest="d0")])[0].code == "digest_mismatch"
    assert run([vote("U77", digest="d0", breakglass=True)])[0].code == "digest_mismatch"


def test_times_must_be_timezone_aware_and_are_kept_in_utc() -> None:
    naive = datetime(2025, 3, 1, 12, 0)  # noqa: DTZ001 - the point of the test
    with pytest.raises(UsageError, match="timezone-aware"):
        Vote("U02", "approve", "d1", at=naive)
    with pytest.raises(UsageError, match="timezone-aware"):
        gate(expires_at=naive)
    with pytest.raises(UsageError, match="timezone-aware"):
        decide(gate(), Tally.pending(), vote("U02"), GROUPS, naive)
    paris = timezone(timedelta(hours=1))
    v = Vote("U02", "approve", "d1", at=datetime(2025, 3, 1, 13, 0, tzinfo=paris))
    assert v.at == T0
    assert v.at.tzinfo is UTC


def test_a_gate_needs_at_least_one_approver() -> None:
    with pytest.raises(UsageError, match="at least 1"):
        gate(min=0)
    with pytest.raises(UsageError, match="list of principals"):
        gate(allowed="group:sre")


@pytest.mark.parametrize(
    "fields",
    [
        {"user": ""},
        {"user": None},
        {"decision": "maybe"},
        {"plan_digest": None},
        {"reason": 42},
        {"breakglass": "yes"},
        {"at": "2025-03-01T12:00:00Z"},
    ],
)
def test_malformed_votes_are_refused_at_construction(fields: dict[str, object]) -> None:
    """Votes are built from untrusted messages: a bad one is a UsageError and a ValueError."""
    good: dict[str, object] = {
        "user": "U02",
        "decision": "approve",
        "plan_digest": "d1",
        "reason": None,
        "breakglass": False,
        "at": T0,
    }
    with pytest.raises(VoteError) as info:
        Vote(**{**good, **fields})  # type: ignore[arg-type]
    assert isinstance(info.value, UsageError)
    assert isinstance(info.value, ValueError)


def test_summary() -> None:
    g = gate()
    assert summary(g, Tally.pending()) == "0 of 2"
    assert summary(g, Tally(("U02",), "pending")) == "1 of 2: U02"
    assert summary(g, Tally(("U02", "U04"), "granted")) == "2 of 2: U02, U04 (granted)"
    assert summary(g, Tally(("U02",), "expired")) == "1 of 2: U02 (expired)"
    assert summary(g, CLOSED[2]) == "rejected by U03: no"


# --------------------------------------------------------------------------- properties

USERS = ("U1", "U2", "U3", "U4", "U5", "U6")
PRINCIPALS = ("group:sre", "group:security", "user:U5", "user:U6", "group:ghost")
EXPIRY_MINUTES = 40
PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Step:
    """One vote with the world it is decided in."""

    vote: Vote
    groups: dict[str, frozenset[str]]


members = st.frozensets(st.sampled_from(USERS), min_size=1)
snapshots = st.fixed_dictionaries({"sre": members, "security": members, "breakglass": members})

gates = st.builds(
    Gate,
    gate_id=st.just("g"),
    min=st.integers(1, 4),
    allowed=st.lists(st.sampled_from(PRINCIPALS), min_size=1, max_size=4, unique=True).map(tuple),
    requester=st.sampled_from(USERS),
    digest=st.just("current"),
    expires_at=st.just(T0 + timedelta(minutes=EXPIRY_MINUTES)),
    breakglass_group=st.just("breakglass"),
)


@st.composite
def sequences(draw: st.DrawFn) -> list[Step]:
    steps = []
    minute = 0
    for _ in range(draw(st.integers(1, 16))):
        minute += draw(st.integers(0, 6))
        v = Vote(
            draw(st.sampled_from(USERS)),
            draw(st.sampled_from(["approve"] * 4 + ["reject"])),
            draw(st.sampled_from(["current", "current", "current", "stale"])),
            draw(st.sampled_from([None, "", "  ", "a reason"])),
            draw(st.sampled_from([False] * 7 + [True])),
            at=T0 + timedelta(minutes=minute),
        )
        steps.append(Step(v, draw(snapshots)))
    return steps


def replay(g: Gate, steps: Sequence[Step]) -> list[Decision]:
    tally = Tally.pending()
    out = []
    for step in steps:
        decision = decide(g, tally, step.vote, step.groups, step.vote.at)
        out.append(decision)
        tally = decision.tally
    return out


# The oracle, written from the design's wording (not from decide's code).


def _member(user: str, g: Gate, groups: Mapping[str, frozenset[str]]) -> bool:
    named = {p.removeprefix("user:") for p in g.allowed if p.startswith("user:")}
    in_groups = set().union(*(groups.get(p.removeprefix("group:"), frozenset()) for p in g.allowed))
    return user in named or user in in_groups


def _live(g: Gate, step: Step) -> bool:
    """Before expiry and for the plan currently proposed."""
    return step.vote.at < g.expires_at and step.vote.plan_digest == g.digest


def valid_approval(g: Gate, step: Step) -> bool:
    v = step.vote
    return (
        _live(g, step)
        and v.decision == "approve"
        and not v.breakglass
        and v.user != g.requester
        and _member(v.user, g, step.groups)
    )


def valid_breakglass(g: Gate, step: Step) -> bool:
    v = step.vote
    return (
        _live(g, step)
        and v.decision == "approve"
        and v.breakglass
        and v.user in step.groups["breakglass"]
        and bool((v.reason or "").strip())
    )


def valid_reject(g: Gate, step: Step) -> bool:
    v = step.vote
    return (
        _live(g, step)
        and v.decision == "reject"
        and v.user != g.requester
        and _member(v.user, g, step.groups)
        and bool((v.reason or "").strip())
    )


def expected_end(g: Gate, steps: Sequence[Step]) -> tuple[int | None, str]:
    """The index of the vote that closes the gate and how, or (None, "pending")."""
    distinct: set[str] = set()
    for index, step in enumerate(steps):
        if step.vote.at >= g.expires_at:
            return index, "expired"
        if valid_breakglass(g, step):
            return index, "breakglass"
        if valid_reject(g, step):
            return index, "rejected"
        if valid_approval(g, step):
            distinct.add(step.vote.user)
            if len(distinct) >= g.min:
                return index, "granted"
    return None, "pending"


@PROPERTY
@given(gates, sequences())
def test_granted_only_by_min_distinct_valid_approvers_or_breakglass(
    g: Gate, steps: list[Step]
) -> None:
    decisions = replay(g, steps)
    granting = [i for i, d in enumerate(decisions) if d.tally.state == "granted"]
    if not granting:
        return
    at = granting[0]
    before = steps[: at + 1]
    tally = decisions[at].tally
    assert decisions[at].outcome in (Outcome.GRANTED, Outcome.BREAKGLASS)
    # never after a reject or an expiry
    assert not any(valid_reject(g, s) for s in before)
    assert all(s.vote.at < g.expires_at for s in before)
    if tally.breakglass_by is not None:
        # (b) a break-glass member with a reason did
        assert valid_breakglass(g, steps[at])
        assert steps[at].vote.user == tally.breakglass_by
        assert tally.reason
    else:
        # (a) at least min distinct users, none the requester, each allowed and current
        assert len(set(tally.approvers)) == len(tally.approvers) >= g.min
        assert g.requester not in tally.approvers
        for user in tally.approvers:
            assert any(s.vote.user == user and valid_approval(g, s) for s in before)


@PROPERTY
@given(gates, sequences())
def test_replay_matches_the_oracle(g: Gate, steps: list[Step]) -> None:
    decisions = replay(g, steps)
    end, how = expected_end(g, steps)
    final = decisions[-1].tally
    assert final.state == {"breakglass": "granted"}.get(how, how)
    if end is None:
        assert all(d.outcome in (Outcome.COUNTED, Outcome.REFUSED) for d in decisions)
        assert expire(g, final, g.expires_at) is not None
        return
    assert decisions[end].outcome == Outcome(how)
    assert all(d.outcome in (Outcome.COUNTED, Outcome.REFUSED) for d in decisions[:end])
    # once closed, nothing changes: every later vote is refused and the tally stays put
    for later in decisions[end + 1 :]:
        assert (later.outcome, later.code, later.tally) == (
            Outcome.REFUSED,
            "gate_closed",
            decisions[end].tally,
        )
    assert expire(g, final, g.expires_at + TTL) is None


@PROPERTY
@given(gates, sequences())
def test_refusals_carry_a_code_and_leave_the_tally_alone(g: Gate, steps: list[Step]) -> None:
    tally = Tally.pending()
    for step, decision in zip(steps, replay(g, steps), strict=True):
        assert decision.reason
        if decision.outcome is Outcome.REFUSED:
            assert decision.code is not None
            assert decision.tally == tally
        elif decision.outcome is Outcome.EXPIRED:
            assert decision.code == "expired"
        else:
            assert decision.code is None
            assert valid_approval(g, step) or valid_reject(g, step) or valid_breakglass(g, step)
        tally = decision.tally
