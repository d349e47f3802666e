"""Webhook dedupe and alert-group state in the store, on SQLite and PostgreSQL.

The concurrency tests open several stores (several connection pools, as several
server processes would) and race them from threads: the database, not memory, must
make exactly one winner.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest

from bot.store import TimelineStore, pending

T = TypeVar("T")
AT = datetime(2026, 11, 20, 9, 15, tzinfo=UTC)
GROUP = '{}:{alertname="SecretLeakDetected"}'


@pytest.fixture
def stores(database_url: str) -> Iterator[list[TimelineStore]]:
    """Four stores on one migrated database."""
    opened = [TimelineStore(database_url) for _ in range(4)]
    opened[0].migrate()
    try:
        yield opened
    finally:
        for store in opened:
            store.close()


def race(stores: list[TimelineStore], n: int, fn: Callable[[TimelineStore], T]) -> list[T]:
    """Call ``fn`` ``n`` times at once (released together by a barrier), spread over the
    stores."""
    barrier = threading.Barrier(n)

    def one(i: int) -> T:
        barrier.wait()
        return fn(stores[i % len(stores)])

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


def test_a_delivery_is_new_once(stores: list[TimelineStore]) -> None:
    """The first record of an id is new; again, or under any of its aliases, it is a
    duplicate; the same id from another source is new."""
    store = stores[0]
    assert store.record_delivery("pagerduty", ["event:E1", "webhook:W1"], AT) is True
    assert store.record_delivery("pagerduty", ["event:E1", "webhook:W2"], AT) is False
    assert store.record_delivery("pagerduty", ["event:E9", "webhook:W1"], AT) is False
    assert store.record_delivery("github", ["event:E1"], AT) is True
    with pytest.raises(ValueError, match="naive"):
        store.record_delivery("github", ["x"], datetime(2026, 1, 1))  # noqa: DTZ001


def test_concurrent_copies_of_a_delivery_record_once(stores: list[TimelineStore]) -> None:
    """Sixteen copies of one delivery racing through four connection pools: one new."""
    results = race(stores, 16, lambda s: s.record_delivery("github", ["d-1"], AT))
    assert results.count(True) == 1


def test_group_lifecycle_firing_resolved_firing(stores: list[TimelineStore]) -> None:
    """Claimed once while firing; resolving returns the generation once; the next firing
    is generation 2; a failed start releases the group for the next firing."""
    store = stores[0]
    assert store.alert_group_state("alertmanager", GROUP) is None
    assert store.claim_alert_group("alertmanager", GROUP, AT) == 1
    assert store.claim_alert_group("alertmanager", GROUP, AT) is None
    assert store.alert_group_state("alertmanager", GROUP) == ("firing", 1)
    assert store.resolve_alert_group("alertmanager", GROUP, AT) == 1
    assert store.resolve_alert_group("alertmanager", GROUP, AT) is None
    assert store.claim_alert_group("alertmanager", GROUP, AT + timedelta(hours=1)) == 2
    store.release_alert_group("alertmanager", GROUP, 1, AT)  # stale generation: no effect
    assert store.alert_group_state("alertmanager", GROUP) == ("firing", 2)
    store.release_alert_group("alertmanager", GROUP, 2, AT)
    assert store.alert_group_state("alertmanager", GROUP) == ("failed", 2)
    assert store.resolve_alert_group("alertmanager", GROUP, AT) is None
    assert store.claim_alert_group("alertmanager", GROUP, AT) == 3
    assert store.claim_alert_group("pagerduty", GROUP, AT) == 1  # sources are apart


def test_concurrent_claims_of_a_new_group_have_one_winner(stores: list[TimelineStore]) -> None:
    """Twenty claims of a group never seen, at once: exactly one gets generation 1."""
    results = race(stores, 20, lambda s: s.claim_alert_group("alertmanager", GROUP, AT))
    assert sorted(results, key=str) == [1] + [None] * 19


def test_concurrent_claims_after_resolution_have_one_winner(stores: list[TimelineStore]) -> None:
    """A resolved group firing again through many deliveries at once: one generation 2,
    and concurrent resolutions resolve it once."""
    stores[0].claim_alert_group("alertmanager", GROUP, AT)
    stores[0].resolve_alert_group("alertmanager", GROUP, AT)
    results = race(stores, 20, lambda s: s.claim_alert_group("alertmanager", GROUP, AT))
    assert sorted(results, key=str) == [2] + [None] * 19
    resolved = race(stores, 10, lambda s: s.resolve_alert_group("alertmanager", GROUP, AT))
    assert sorted(resolved, key=str) == [2] + [None] * 9


def test_old_deliveries_are_pruned_and_recent_ones_kept(stores: list[TimelineStore]) -> None:
    """Pruning drops ids received before the cut-off (a redelivery of one is new again,
    which is why the server keeps 30 days); recent ids stay duplicates; alert groups are
    untouched (their generations name runs)."""
    store = stores[0]
    old, recent = AT - timedelta(days=40), AT - timedelta(days=1)
    assert store.record_delivery("pagerduty", ["event:OLD1", "webhook:OLD1"], old)
    assert store.record_delivery("github", ["delivery:RECENT"], recent)
    assert store.claim_alert_group("alertmanager", GROUP, old) == 1

    assert store.prune_deliveries(AT - timedelta(days=30)) == 2
    assert store.prune_deliveries(AT - timedelta(days=30)) == 0
    assert store.record_delivery("github", ["delivery:RECENT"], AT) is False
    assert store.record_delivery("pagerduty", ["event:OLD1"], AT) is True
    assert store.alert_group_state("alertmanager", GROUP) == ("firing", 1)
    with pytest.raises(ValueError, match="naive"):
        store.prune_deliveries(datetime(2026, 1, 1))  # noqa: DTZ001


def _outbox(store: TimelineStore) -> list[str]:
    return [key for key, _ in store.pending_starts(AT + timedelta(days=1))]


def test_accepting_a_delivery_is_one_transaction(stores: list[TimelineStore]) -> None:
    """Dedupe, group claim and outbox row are kept together or not at all: a repeat
    leaves no second start, a busy group no start, and a failure while building the
    start (after the ids and the claim were written) leaves neither ids nor claim."""
    store = stores[0]

    def start_for(group: str) -> pending.StartFor:
        return lambda generation: (f"pd-{group}-{generation}", {"generation": generation})

    start = start_for("Q1")
    first = store.accept_delivery("pagerduty", ["event:E1"], AT, group_key="Q1", start=start)
    assert (first.seen, first.generation, first.key) == (None, 1, "pd-Q1-1")
    again = store.accept_delivery("pagerduty", ["event:E1"], AT, group_key="Q1", start=start)
    busy = store.accept_delivery("pagerduty", ["event:E2"], AT, group_key="Q1", start=start)
    assert (again.seen, busy.seen) == ("delivery", "group")
    assert _outbox(store) == ["pd-Q1-1"]
    assert store.pending_starts(AT + timedelta(days=1))[0][1]["generation"] == 1

    def broken(generation: int | None) -> tuple[str, dict[str, object]]:
        raise RuntimeError("the start could not be described")

    with pytest.raises(RuntimeError):
        store.accept_delivery("pagerduty", ["event:E3"], AT, group_key="Q2", start=broken)
    assert store.alert_group_state("pagerduty", "Q2") is None  # the claim was rolled back
    retried = store.accept_delivery(
        "pagerduty", ["event:E3"], AT, group_key="Q2", start=start_for("Q2")
    )
    assert (retried.seen, retried.key) == (None, "pd-Q2-1")  # ... and so were the ids
    no_group = store.accept_delivery("github", ["d-9"], AT, start=lambda g: (f"gh-{g}", {}))
    assert (no_group.generation, no_group.key) == (None, "gh-None")
    assert sorted(_outbox(store)) == ["gh-None", "pd-Q1-1", "pd-Q2-1"]


def test_racing_copies_of_a_delivery_make_one_start(stores: list[TimelineStore]) -> None:
    """Twenty copies of one PagerDuty event through four stores at once: one acceptance,
    one outbox row."""
    results = race(
        stores,
        20,
        lambda s: (
            s.accept_delivery(
                "pagerduty", ["event:RACE"], AT, group_key="QR", start=lambda g: (f"pd-QR-{g}", {})
            ).seen
        ),
    )
    assert sorted(results, key=str) == [None] + ["delivery"] * 19
    assert _outbox(stores[0]) == ["pd-QR-1"]
