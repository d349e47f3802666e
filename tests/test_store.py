"""The timeline store: incidents, runs, and a hash chain that shows any tampering.

Tamper tests act as an attacker with database admin rights would: raw SQL on the real
file or server, dropping the append-only triggers first.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import multiprocessing
import re
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from bot.core.errors import ConfigError, NotFoundError
from bot.core.timeline import (
    GENESIS,
    KINDS,
    NOTE,
    STEP_STARTED,
    NewEvent,
    StoredEvent,
    canonical,
    chain_hash,
    event_id,
    seal,
    verify_chain,
)
from bot.store import RunRecord, TimelineStore
from bot.store.database import normalize_url
from bot.store.errors import AppendOnlyViolation, EventIdCollision, StoreError
from bot.store.migrate import VERSION_TABLE
from bot.store.models import EventRow

STORE_DIR = Path(__file__).resolve().parents[1] / "bot" / "store"
T0 = datetime(2025, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[TimelineStore]:
    with TimelineStore(database_url) as opened:
        opened.migrate()
        yield opened


def note(n: int, *, incident: str = "INC-1", run: str | None = "run-1", **payload: Any) -> NewEvent:
    return NewEvent(
        id=event_id(run or "-", "step", n),
        incident_id=incident,
        kind=NOTE,
        actor="irbot",
        at=T0 + timedelta(seconds=n),
        run_id=run,
        step_id=f"step-{n}",
        payload={"n": n, **payload},
    )


def filled(store: TimelineStore, count: int = 5) -> list[StoredEvent]:
    store.open_incident(key="run-1", title="Leaked key", at=T0)
    return [store.append(note(n)) for n in range(1, count + 1)]


def raw(url: str, *statements: str, **params: Any) -> None:
    """Run SQL as the database owner would, outside irbot."""
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement), params)
    finally:
        engine.dispose()


def drop_protection(url: str) -> None:
    if url.startswith("sqlite"):
        raw(url, "DROP TRIGGER events_no_update", "DROP TRIGGER events_no_delete")
    else:
        raw(url, "DROP TRIGGER events_no_update_or_delete ON events")


def run_record(run_id: str = "run-1", incident: str = "INC-1", **changes: Any) -> RunRecord:
    values: dict[str, Any] = {
        "id": run_id,
        "incident_id": incident,
        "playbook": "leak-response",
        "version": 1,
        "sha256": "ab" * 32,
        "inputs": {"secret_id": "prod/db", "deployments": ("api", "worker")},
        "requester": "user:U1",
        "status": "running",
        "created_at": T0,
        "updated_at": T0,
    }
    return RunRecord(**{**values, **changes})


# --- the pure chain (bot/core/timeline.py) -------------------------------------------


def test_event_id_is_deterministic_and_part_sensitive() -> None:
    """A replayed step derives the same id; different parts (or splits) do not collide."""
    assert event_id("run-1", "rotate", 2) == event_id("run-1", "rotate", "2")
    assert re.fullmatch(r"ev_[0-9a-f]{32}", event_id("run-1", "rotate", 2))
    assert event_id("run-1", "rotate") != event_id("run-1rotate")
    assert event_id("a", "bc") != event_id("ab", "c")


def test_new_event_rejects_naive_times_and_normalises_to_utc() -> None:
    """Naive times are ambiguous in an audit record; other zones become UTC."""
    with pytest.raises(ValueError, match="naive"):
        NewEvent(id="ev_1", incident_id="INC-1", kind=NOTE, actor="irbot", at=datetime(2025, 1, 1))  # noqa: DTZ001
    cet = timezone(timedelta(hours=1))
    event = NewEvent(
        id="ev_1", incident_id="INC-1", kind=NOTE, actor="irbot", at=T0.astimezone(cet)
    )
    assert event.at == T0
    assert event.at.tzinfo is UTC


def test_new_event_payload_must_be_json_safe() -> None:
    """Only JSON can be hashed the same way after a round trip through the database."""
    with pytest.raises(ValueError, match="JSON-safe"):
        NewEvent(id="e", incident_id="I", kind=NOTE, actor="irbot", at=T0, payload={"t": T0})
    with pytest.raises(ValueError, match="JSON-safe"):
        NewEvent(
            id="e", incident_id="I", kind=NOTE, actor="irbot", at=T0, payload={"x": float("nan")}
        )
    event = NewEvent(id="e", incident_id="I", kind=NOTE, actor="irbot", at=T0, payload={"t": (1,)})
    assert event.payload == {"t": [1]}


def test_canonical_form_is_sorted_compact_utc_with_microseconds() -> None:
    """The hashed bytes are stable: sorted keys, no spaces, times ending in Z, UTF-8."""
    event = NewEvent(
        id="ev_1",
        incident_id="INC-1",
        kind=NOTE,
        actor="user:U1",
        at=datetime(2025, 3, 1, 9, 30, tzinfo=UTC),
        payload={"b": "é", "a": 1},
    )
    body = canonical(event, 7, GENESIS)
    assert body.startswith(b'{"actor":"user:U1","at":"2025-03-01T09:30:00.000000Z","id":"ev_1"')
    assert '"payload":{"a":1,"b":"é"}'.encode() in body
    assert b" " not in body
    assert chain_hash(GENESIS, body) == seal(event, 7, GENESIS).hash


def test_engine_kinds_are_all_defined() -> None:
    """The engine's event kinds are plain dotted strings."""
    assert {"incident.opened", "approval.breakglass", "wait.finished", "note"} <= KINDS
    assert len(KINDS) == 24  # 23 + manual.refused


def test_verify_chain_without_head_checks_links_only() -> None:
    """An export carries no head: links and hashes are still checked."""
    first = seal(note(1), 1, GENESIS)
    second = seal(note(2), 2, first.hash)
    assert verify_chain([first, second], None).ok
    assert verify_chain([], (0, GENESIS)).ok
    swapped = verify_chain([second, first], None)
    assert (swapped.ok, swapped.first_bad_seq) == (False, 1)


# --- appending ----------------------------------------------------------------------


def test_append_forms_a_chain_that_verifies(store: TimelineStore) -> None:
    """Each event links to the one before; the first to GENESIS."""
    stored = filled(store, 5)
    assert [e.seq for e in stored] == [1, 2, 3, 4, 5]
    assert stored[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(stored))
    assert store.events() == stored
    result = store.verify()
    assert (result.ok, result.checked, result.first_bad_seq, result.reason) == (True, 5, None, None)


def test_append_is_idempotent_on_event_id(store: TimelineStore) -> None:
    """A replayed step appends the same id: it gets the stored row back, nothing written."""
    filled(store, 2)
    first = store.append(note(3, detail="first"))
    replay = dataclasses.replace(note(3, detail="second attempt"), at=T0 + timedelta(hours=1))
    again = store.append(replay)
    assert again == first
    assert again.payload == {"n": 3, "detail": "first"}
    assert [e.seq for e in store.events()] == [1, 2, 3]
    assert store.verify().ok


def test_reusing_an_event_id_for_a_different_event_is_refused(store: TimelineStore) -> None:
    """Keeping only the first of two different events would lose a record silently."""
    stored = filled(store, 1)[0]
    clash = NewEvent(
        id=stored.id,
        incident_id="INC-1",
        kind=STEP_STARTED,
        actor="irbot",
        at=T0,
        run_id="run-1",
        step_id="step-1",
    )
    with pytest.raises(EventIdCollision, match="different kind"):
        store.append(clash)
    assert len(store.events()) == 1


def test_events_filter_by_incident_and_run_in_seq_order(store: TimelineStore) -> None:
    """The incident page reads one incident's events; the run view one run's."""
    store.open_incident(key="a", title="A", at=T0)
    store.open_incident(key="b", title="B", at=T0)
    store.append(note(1, incident="INC-1", run="r1"))
    store.append(note(2, incident="INC-2", run="r2"))
    store.append(note(3, incident="INC-1", run=None))
    store.append(note(4, incident="INC-1", run="r1"))
    assert [e.seq for e in store.events(incident_id="INC-1")] == [1, 3, 4]
    assert [e.seq for e in store.events(run_id="r1")] == [1, 4]
    assert [e.seq for e in store.events(incident_id="INC-2", run_id="r1")] == []


def test_times_come_back_utc_aware_with_microseconds(store: TimelineStore) -> None:
    """Whatever zone goes in, the same instant comes out in UTC, to the microsecond."""
    plus_five = timezone(timedelta(hours=5, minutes=30))
    at = datetime(2025, 6, 1, 23, 59, 59, 999999, tzinfo=plus_five)
    incident = store.open_incident(key="k", title="t", at=at)
    event = store.append(
        NewEvent(id="ev_t", incident_id=incident.id, kind=NOTE, actor="irbot", at=at)
    )
    store.record_run(run_record(created_at=at, updated_at=at))
    loaded = [
        store.get_incident(incident.id).opened_at,
        store.events()[0].at,
        store.get_run("run-1").created_at,
        store.set_run_status("run-1", "succeeded", at).finished_at,
    ]
    for value in loaded:
        assert value == at
        assert value is not None
        assert value.tzinfo == UTC
    assert event.at.tzinfo == UTC
    assert store.verify().ok


def test_naive_times_are_rejected_everywhere(store: TimelineStore) -> None:
    """No naive datetime reaches the database."""
    naive = datetime(2025, 1, 1, 12, 0)  # noqa: DTZ001
    with pytest.raises(ValueError, match="naive"):
        store.open_incident(key="k", title="t", at=naive)
    with pytest.raises(ValueError, match="naive"):
        run_record(created_at=naive)
    store.open_incident(key="k", title="t", at=T0)
    with pytest.raises(ValueError, match="naive"):
        store.set_incident_status("INC-1", "closed", naive)


# --- tampering ----------------------------------------------------------------------


def test_database_triggers_refuse_update_and_delete_of_events(database_url: str) -> None:
    """Even raw SQL from a stray session cannot change history while the triggers stand."""
    with TimelineStore(database_url) as store:
        store.migrate()
        filled(store, 3)
        for statement in (
            "UPDATE events SET actor = 'user:mallory' WHERE seq = 2",
            "DELETE FROM events WHERE seq = 3",
            "DELETE FROM events",
            "DELETE FROM chain_head",
        ):
            with pytest.raises(DBAPIError, match="append-only"):
                raw(database_url, statement)
        if store.backend == "postgresql":
            with pytest.raises(DBAPIError, match="append-only"):
                raw(database_url, "TRUNCATE events")
        assert len(store.events()) == 3
        assert store.verify().ok


def test_orm_refuses_to_flush_changes_to_an_event(database_url: str) -> None:
    """The mapper itself refuses, before the database is asked."""
    with TimelineStore(database_url) as store:
        store.migrate()
        filled(store, 1)
    engine = sa.create_engine(normalize_url(database_url))
    try:
        with Session(engine) as session:
            row = session.scalars(sa.select(EventRow)).one()
            row.actor = "user:mallory"
            with pytest.raises(AppendOnlyViolation):
                session.flush()
            session.rollback()
            session.delete(session.scalars(sa.select(EventRow)).one())
            with pytest.raises(AppendOnlyViolation):
                session.flush()
    finally:
        engine.dispose()


def test_edited_payload_is_detected(store: TimelineStore, database_url: str) -> None:
    """Rewriting what an event says breaks its own hash."""
    stored = filled(store, 5)
    drop_protection(database_url)
    raw(database_url, "UPDATE events SET payload = :p WHERE seq = 3", p='{"n": 3, "ok": true}')
    assert store.events()[2].payload == {"n": 3, "ok": True}
    result = store.verify()
    assert not result.ok
    assert (result.first_bad_seq, result.first_bad_id) == (3, stored[2].id)
    assert result.reason == "hash mismatch (row edited)"
    assert result.checked == 2


def test_edited_time_is_detected(store: TimelineStore, database_url: str) -> None:
    """Moving an event in time is an edit too."""
    stored = filled(store, 3)
    drop_protection(database_url)
    new_time = "2020-01-01T00:00:00.000000Z" if store.backend == "sqlite" else "2020-01-01Z"
    raw(database_url, "UPDATE events SET at = :t WHERE seq = 1", t=new_time)
    result = store.verify()
    assert (result.ok, result.first_bad_seq, result.first_bad_id) == (False, 1, stored[0].id)


def test_deleted_middle_row_is_detected(store: TimelineStore, database_url: str) -> None:
    """A hole in the sequence names the missing seq."""
    filled(store, 5)
    drop_protection(database_url)
    raw(database_url, "DELETE FROM events WHERE seq = 3")
    result = store.verify()
    assert (result.ok, result.first_bad_seq, result.first_bad_id) == (False, 3, None)
    assert result.reason == "sequence gap after seq 2 (row removed)"


def test_deleted_and_renumbered_rows_are_detected(store: TimelineStore, database_url: str) -> None:
    """Closing the hole by renumbering still breaks the next row's link."""
    stored = filled(store, 5)
    drop_protection(database_url)
    raw(
        database_url,
        "DELETE FROM events WHERE seq = 3",
        "UPDATE events SET seq = seq + 1000 WHERE seq > 3",
        "UPDATE events SET seq = seq - 1001 WHERE seq > 1000",
        "UPDATE chain_head SET seq = 4",
    )
    result = store.verify()
    assert (result.ok, result.first_bad_seq, result.first_bad_id) == (False, 3, stored[3].id)
    assert result.reason == "prev_hash does not match the previous event (row inserted or removed)"


def test_deleted_last_row_is_detected(store: TimelineStore, database_url: str) -> None:
    """Only the chain head knows the last row existed."""
    filled(store, 5)
    drop_protection(database_url)
    raw(database_url, "DELETE FROM events WHERE seq = 5")
    result = store.verify()
    assert (result.ok, result.first_bad_seq, result.first_bad_id) == (False, 5, None)
    assert result.reason == "chain head says 5 events but 4 found (last row removed)"
    assert result.checked == 4


def forged_row(after: StoredEvent, seq: int) -> dict[str, Any]:
    """A well-made forgery: correct seq, link and hash, as someone who read the code."""
    event = NewEvent(
        id="ev_forged",
        incident_id="INC-1",
        kind="approval.granted",
        actor="user:mallory",
        at=after.at + timedelta(seconds=1),
        payload={"approvers": ["mallory", "mallory2"]},
    )
    sealed = seal(event, seq, after.hash)
    return {
        "seq": seq,
        "id": sealed.id,
        "incident_id": sealed.incident_id,
        "kind": sealed.kind,
        "actor": sealed.actor,
        "at": sealed.at,
        "payload": '{"approvers": ["mallory", "mallory2"]}',
        "prev_hash": sealed.prev_hash,
        "hash": sealed.hash,
    }


INSERT_EVENT = (
    "INSERT INTO events (seq, id, incident_id, kind, actor, at, payload, prev_hash, hash) "
    "VALUES (:seq, :id, :incident_id, :kind, :actor, :at, :payload, :prev_hash, :hash)"
)


def _at_param(store: TimelineStore, row: dict[str, Any]) -> dict[str, Any]:
    if store.backend == "sqlite":
        return {**row, "at": row["at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    return row


def test_forged_row_appended_behind_the_store_is_detected(
    store: TimelineStore, database_url: str
) -> None:
    """A forged last row with a valid hash still disagrees with the chain head."""
    stored = filled(store, 5)
    raw(database_url, INSERT_EVENT, **_at_param(store, forged_row(stored[-1], 6)))
    result = store.verify()
    assert (result.ok, result.first_bad_seq, result.first_bad_id) == (False, 6, "ev_forged")
    assert result.reason == "chain head says 5 events but seq 6 found (row added)"


def test_forged_row_inserted_in_the_middle_is_detected(
    store: TimelineStore, database_url: str
) -> None:
    """Making room for a forged approval breaks the link of the row after it."""
    stored = filled(store, 5)
    drop_protection(database_url)
    raw(
        database_url,
        "UPDATE events SET seq = seq + 1000 WHERE seq > 2",
        "UPDATE events SET seq = seq - 999 WHERE seq > 1000",
        "UPDATE chain_head SET seq = 6",
    )
    raw(database_url, INSERT_EVENT, **_at_param(store, forged_row(stored[1], 3)))
    result = store.verify()
    assert (result.ok, result.first_bad_seq, result.first_bad_id) == (False, 4, stored[2].id)
    assert result.reason == "prev_hash does not match the previous event (row inserted or removed)"


def test_garbage_forged_row_is_detected(store: TimelineStore, database_url: str) -> None:
    """A forged row whose hash was not recomputed fails its own hash."""
    stored = filled(store, 2)
    row = forged_row(stored[-1], 3)
    raw(
        database_url,
        INSERT_EVENT,
        "UPDATE chain_head SET seq = 3, hash = :hash",
        **_at_param(store, {**row, "actor": "user:someone-else"}),
    )
    result = store.verify()
    assert (result.ok, result.first_bad_seq, result.reason) == (
        False,
        3,
        "hash mismatch (row edited)",
    )


# --- concurrency --------------------------------------------------------------------


def _append_worker(url: str, name: str, count: int, barrier: Any) -> None:
    try:
        with TimelineStore(url) as store:
            barrier.wait(timeout=60)
            for n in range(count):
                store.append(
                    NewEvent(
                        id=event_id(name, n),
                        incident_id="INC-1",
                        kind=NOTE,
                        actor=f"user:{name}",
                        at=datetime.now(UTC),
                        payload={"n": n},
                    )
                )
                if n % 10 == 0:
                    store.open_incident(key=f"shared-{n}", title="shared", at=datetime.now(UTC))
                    store.open_incident(key=f"{name}-{n}", title=name, at=datetime.now(UTC))
                # SQLite's busy wait sleeps while the other process re-takes the lock at
                # once; a short pause between appends lets the two actually interleave.
                time.sleep(0.002)
    except BaseException:
        traceback.print_exc()
        raise


def _migrate_worker(url: str, barrier: Any) -> None:
    try:
        with TimelineStore(url) as store:
            barrier.wait(timeout=60)
            store.migrate()
    except BaseException:
        traceback.print_exc()
        raise


def _run_together(target: Any, *args_per_process: tuple[Any, ...]) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(args_per_process))
    processes = [ctx.Process(target=target, args=(*a, barrier)) for a in args_per_process]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=90)
    assert [p.exitcode for p in processes] == [0] * len(processes)


@pytest.mark.slow
def test_concurrent_appends_from_two_processes_form_one_chain(
    store: TimelineStore, database_url: str
) -> None:
    """Two OS processes appending 100 events each: 200 events, one valid chain, and
    incident numbers without gaps or duplicates."""
    store.open_incident(key="first", title="first", at=T0)
    _run_together(_append_worker, (database_url, "alice", 100), (database_url, "bob", 100))
    stored = store.events()
    assert [e.seq for e in stored] == list(range(1, 201))
    assert [e.actor for e in stored].count("user:alice") == 100
    switches = sum(a.actor != b.actor for a, b in itertools.pairwise(stored))
    assert switches > 5, "the two processes did not interleave; the test proves nothing"
    result = store.verify()
    assert (result.ok, result.checked) == (True, 200)
    numbers = sorted(i.number for i in store.list_incidents(limit=1000))
    assert numbers == list(range(1, 32))  # first + 10 shared + 2 x 10 own


@pytest.mark.slow
def test_concurrent_migrations_from_two_processes(database_url: str) -> None:
    """Two replicas starting at once: one migrates, the other waits and finds nothing to do."""
    _run_together(_migrate_worker, (database_url,), (database_url,))
    with TimelineStore(database_url) as store:
        store.migrate()
        filled(store, 2)
        assert store.verify().ok


# --- incidents and runs -------------------------------------------------------------


def test_incident_numbers_are_sequential_and_idempotent_on_key(store: TimelineStore) -> None:
    """A webhook delivered twice opens one incident; numbers count up without gaps."""
    first = store.open_incident(key="run-a", title="A", severity="critical", at=T0)
    second = store.open_incident(key="run-b", title="B", playbook="leak-response", at=T0)
    again = store.open_incident(key="run-a", title="different title", at=T0 + timedelta(hours=1))
    third = store.open_incident(key="run-c", title="C", pagerduty_incident="PD123", at=T0)
    assert [first.id, second.id, third.id] == ["INC-1", "INC-2", "INC-3"]
    assert [first.number, second.number, third.number] == [1, 2, 3]
    assert again == first
    assert (first.severity, first.status, second.playbook) == ("critical", "open", "leak-response")
    assert store.get_incident("INC-3").pagerduty_incident == "PD123"


def test_unknown_ids_raise_not_found_naming_them(store: TimelineStore) -> None:
    """A typo in an id is the user's problem to see, named in the message."""
    with pytest.raises(NotFoundError, match="INC-42"):
        store.get_incident("INC-42")
    with pytest.raises(NotFoundError, match="INC-42"):
        store.set_incident_status("INC-42", "closed", T0)
    with pytest.raises(NotFoundError, match="INC-42"):
        store.set_incident_slack("INC-42", "C1", "1.2")
    with pytest.raises(NotFoundError, match="run-x"):
        store.get_run("run-x")
    with pytest.raises(NotFoundError, match="run-x"):
        store.set_run_status("run-x", "failed", T0)
    with pytest.raises(NotFoundError, match="INC-42"):
        store.record_run(run_record(incident="INC-42"))


def test_list_incidents_filters_and_pages(store: TimelineStore) -> None:
    """Newest first; status and case-insensitive text filters; % is not a wildcard."""
    store.open_incident(key="1", title="Leaked AWS key", playbook="leak-response", at=T0)
    store.open_incident(key="2", title="Lost laptop", playbook="lost-access", at=T0)
    store.open_incident(key="3", title="100% CPU", at=T0)
    store.set_incident_status("INC-2", "resolved", T0)
    assert [i.id for i in store.list_incidents()] == ["INC-3", "INC-2", "INC-1"]
    assert [i.id for i in store.list_incidents(status="open")] == ["INC-3", "INC-1"]
    assert [i.id for i in store.list_incidents(text="LEAK")] == ["INC-1"]
    assert [i.id for i in store.list_incidents(text="lost-access")] == ["INC-2"]
    assert [i.id for i in store.list_incidents(text="%")] == ["INC-3"]
    assert [i.id for i in store.list_incidents(text="inc-2")] == ["INC-2"]
    assert [i.id for i in store.list_incidents(limit=1, offset=1)] == ["INC-2"]
    with pytest.raises(ValueError, match="status"):
        store.list_incidents(status="gone")


def test_incident_status_and_slack_thread(store: TimelineStore) -> None:
    """closed_at is when the incident stopped being open; reopening clears it."""
    store.open_incident(key="k", title="t", at=T0)
    resolved = store.set_incident_status("INC-1", "resolved", T0 + timedelta(hours=1))
    closed = store.set_incident_status("INC-1", "closed", T0 + timedelta(hours=2))
    assert resolved.closed_at == closed.closed_at == T0 + timedelta(hours=1)
    assert closed.status == "closed"
    assert store.set_incident_status("INC-1", "open", T0 + timedelta(hours=3)).closed_at is None
    with pytest.raises(ValueError, match="status"):
        store.set_incident_status("INC-1", "deleted", T0)
    thread = store.set_incident_slack("INC-1", "C0123", "1700000000.000100")
    assert (thread.slack_channel, thread.slack_thread_ts) == ("C0123", "1700000000.000100")
    assert store.get_incident("INC-1") == thread


def test_runs_are_recorded_once_and_move_through_statuses(store: TimelineStore) -> None:
    """record_run inserts once; status changes stamp updated_at and finished_at."""
    store.open_incident(key="k", title="t", at=T0)
    stored = store.record_run(run_record())
    assert stored.inputs == {"secret_id": "prod/db", "deployments": ["api", "worker"]}
    assert store.record_run(run_record(requester="user:U2")) == stored
    later = T0 + timedelta(minutes=5)
    waiting = store.set_run_status("run-1", "waiting", later, detail="gate approve")
    assert (waiting.status, waiting.updated_at, waiting.finished_at) == ("waiting", later, None)
    done = store.set_run_status("run-1", "succeeded", later + timedelta(minutes=1), breakglass=True)
    assert (done.finished_at, done.detail, done.breakglass) == (
        later + timedelta(minutes=1),
        "gate approve",
        True,
    )
    assert store.get_run("run-1") == done
    store.record_run(run_record("run-2", status="pending", created_at=later, updated_at=later))
    assert [r.id for r in store.list_runs()] == ["run-2", "run-1"]
    assert [r.id for r in store.list_runs(status="succeeded")] == ["run-1"]
    assert [r.id for r in store.list_runs(incident_id="INC-9")] == []
    rejected = store.set_run_status("run-2", "rejected", later, detail="rejected at gate")
    assert rejected.finished_at == later
    with pytest.raises(ValueError, match="status"):
        store.set_run_status("run-1", "done", later)


# --- schema and plumbing ------------------------------------------------------------


def test_migrations_run_twice_without_error(database_url: str) -> None:
    """Every process migrates at start; the second run finds nothing to do."""
    with TimelineStore(database_url) as store:
        store.migrate()
        store.migrate()
    with TimelineStore(database_url) as store:
        store.migrate()
        filled(store, 1)
    engine = sa.create_engine(normalize_url(database_url))
    try:
        with engine.connect() as conn:
            versions = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
            heads = conn.execute(sa.text("SELECT seq FROM chain_head")).all()
    finally:
        engine.dispose()
    from alembic.script import ScriptDirectory

    from bot.store.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert versions == [(head,)]
    assert heads == [(1,)]


def test_using_an_unmigrated_database_is_a_store_error(database_url: str) -> None:
    """A forgotten migrate() is a clear irbot error, not a SQLAlchemy traceback."""
    with TimelineStore(database_url) as store, pytest.raises(StoreError, match="database error"):
        store.append(note(1))


def test_sqlite_uses_wal_and_creates_its_directory(tmp_path: Path) -> None:
    """Several processes share the file: WAL lets readers run beside the writer."""
    path = tmp_path / "data" / "nested" / "irbot.sqlite"
    with TimelineStore(f"sqlite:///{path}") as store:
        store.migrate()
    assert path.exists()
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        engine.dispose()


def test_urls_users_write_are_accepted() -> None:
    """postgresql:// and postgres:// get the psycopg 3 driver; others are refused."""
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.sqlite").drivername == "sqlite+pysqlite"
    with pytest.raises(ConfigError, match="unsupported"):
        normalize_url("mysql://u@h/db")
    with pytest.raises(ConfigError, match="not a database URL"):
        normalize_url("nonsense")


# --- no code path changes an event --------------------------------------------------

_RAW_SQL = re.compile(
    r"\b(UPDATE\s+\"?events\b|DELETE\s+FROM\s+\"?events\b|TRUNCATE\s+(TABLE\s+)?\"?events\b"
    r"|DROP\s+TABLE\s+(IF\s+EXISTS\s+)?\"?events\b)",
    re.IGNORECASE,
)


def _event_writes(source: str) -> list[str]:
    """Statements in ``source`` that could change or remove a stored event."""
    found = [m.group(0) for m in _RAW_SQL.finditer(source)]
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        text = ast.unparse(node)
        if name in {"update", "delete"} and re.search(r"EventRow|\bevents\b", text):
            found.append(text)
        elif name == "delete" and isinstance(func, ast.Attribute):
            found.append(text)  # session.delete(row): the store deletes nothing at all
        elif name == "drop_table" and "events" in text:
            found.append(text)
    return found


def test_detector_finds_event_writes() -> None:
    """The scan below would notice the ways code could change an event."""
    samples = [
        "session.execute(update(EventRow).values(actor='x'))",
        "session.execute(sa.delete(EventRow))",
        "session.query(EventRow).delete()",
        "conn.execute(text('DELETE FROM events WHERE seq = 1'))",
        "conn.execute(text('update events set actor = 1'))",
        "EventRow.__table__.update()",
        "session.delete(row)",
        "op.drop_table('events')",
        "op.execute('DROP TABLE IF EXISTS events')",
    ]
    assert all(_event_writes(sample) for sample in samples)
    assert not _event_writes("session.execute(update(RunRow).values(status='x'))")


def test_store_code_never_updates_or_deletes_events() -> None:
    """No module of bot/store (migrations included) updates or deletes an event."""
    files = sorted(STORE_DIR.rglob("*.py"))
    assert len(files) >= 10
    offenders = {
        str(path.relative_to(STORE_DIR)): hits
        for path in files
        if (hits := _event_writes(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}
