"""The run commands through the real `irbot` executable: run, worker, approve, runs,
cancel, timeline and audit verify, as an operator types them.

Each `irbot` call is a new process (about two seconds here), so a test walks a whole
story through one installation instead of starting one per assertion.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.actions.testing import read_records
from bot.core.timeline import NewEvent, event_id, seal
from bot.store import RunRecord, TimelineStore
from bot.store.database import normalize_url
from bot.store.models import EventRow
from tests.engine_support import GATED, Harness, drop_append_only_triggers

QUICK = """
name: quick
version: 1
steps:
  - id: one
    action: test.noop
    with: {n: 1}
  - id: two
    action: test.sleep
    with: {seconds: 0.1}
  - id: three
    action: test.noop
    with: {n: 3}
"""


def ok(result: subprocess.CompletedProcess[str], code: int = 0) -> subprocess.CompletedProcess[str]:
    """Check the exit code, showing what the command said if it is wrong."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Callable[[Harness], TimelineStore]]:
    """Opens the harness's timeline store in the test process (closed at the end)."""
    opened: list[TimelineStore] = []

    def open_(h: Harness) -> TimelineStore:
        s = TimelineStore(h.settings.store_url())
        s.migrate()
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.close()


def until(
    what: str,
    probe: Callable[[], Any],
    worker: subprocess.Popen[str] | None = None,
    timeout: float = 60,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if worker is not None and worker.poll() is not None:
            raise AssertionError(f"the worker died waiting for {what}: {worker.communicate()[0]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start(h: Harness, *args: str) -> dict[str, Any]:
    result = ok(h.irbot("run", *args, "--json"))
    data: dict[str, Any] = json.loads(result.stdout)
    return data


# --------------------------------------------------------------------------- no worker


def test_run_json_returns_at_once_and_runs_lists_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run --json` queues the run and returns: no worker, so it stays pending; `runs
    --json` lists it with its incident, requester and inputs."""
    h = Harness(tmp_path, None, monkeypatch)
    h.add_playbook(GATED)
    started = start(h, "gated", "-i", "target=db-7", "--as", "U01")
    assert set(started) == {"run_id", "incident_id"}
    assert started["run_id"].startswith("run-")
    assert started["incident_id"] == "INC-1"
    listed = json.loads(ok(h.irbot("runs", "--json")).stdout)
    assert [(r["id"], r["status"]) for r in listed] == [(started["run_id"], "pending")]
    run = listed[0]
    assert run["incident_id"] == "INC-1"
    assert run["playbook"] == "gated"
    assert run["requester"] == "U01"
    assert run["inputs"] == {"target": "db-7"}
    assert run["finished_at"] is None


def test_approve_unknown_run_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown run id is a usage error (exit 2) in one line, not a traceback."""
    h = Harness(tmp_path, None, monkeypatch)
    h.add_playbook(GATED)
    result = ok(h.irbot("approve", "run-doesnotexist", "--as", "U02"), 2)
    line = one_line(result.stderr)
    assert "unknown run 'run-doesnotexist'" in line
    assert "irbot runs" in line


def test_approve_needs_local_approvals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without IRBOT_LOCAL_APPROVALS `approve` refuses (exit 2) before it looks at the
    run, in one line naming the variable."""
    h = Harness(tmp_path, None, monkeypatch)
    del h.env["IRBOT_LOCAL_APPROVALS"]
    monkeypatch.delenv("IRBOT_LOCAL_APPROVALS")
    result = ok(h.irbot("approve", "run-0123456789ab", "--as", "U02"), 2)
    line = one_line(result.stderr)
    assert "local approvals are off" in line
    assert "IRBOT_LOCAL_APPROVALS=1" in line


def test_run_refuses_malformed_input_and_unlisted_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: Callable[[Harness], TimelineStore]
) -> None:
    """A malformed --input and a user irbot.yaml does not let start the playbook are
    usage errors (exit 2) that name the problem; no run or incident is created."""
    h = Harness(tmp_path, None, monkeypatch)
    h.add_playbook(GATED)
    malformed = ok(h.irbot("run", "gated", "-i", "target", "-i", "nope=1", "--as", "U01"), 2)
    assert "'target' is not key=value" in malformed.stderr
    assert "unknown input 'nope'" in malformed.stderr
    refused = ok(h.irbot("run", "gated", "--as", "U09", "--json"), 2)
    error = json.loads(refused.stdout)
    assert error["error"] == "UsageError"
    assert "U09 may not start 'gated'" in error["message"]
    assert "sre, security" in error["message"]
    s = store(h)
    assert s.list_runs() == []
    assert s.list_incidents() == []


# --------------------------------------------------------------------------- with a worker


def test_gated_runs_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: Callable[[Harness], TimelineStore]
) -> None:
    """run -> worker -> gate; the requester cannot approve (exit 1, says why); two
    others can (exit 0) and the run finishes; a second run is cancelled at its gate and
    stays cancelled; a vote on the finished run is refused (exit 2) and recorded; the
    timeline reads in md, json and text. SQLite only: a dozen `irbot` processes per
    backend cost too much, and the crash and multi-worker tests already vote from
    another process to a worker on PostgreSQL."""
    h = Harness(tmp_path, None, monkeypatch)
    h.add_playbook(GATED)
    first = start(h, "gated", "-i", "target=db-7", "--as", "U01")
    second = start(h, "gated", "--as", "U02")
    run_id, other = first["run_id"], second["run_id"]
    s = store(h)
    worker = h.spawn_worker()
    try:
        for rid in (run_id, other):
            until(f"{rid} at its gate", lambda rid=rid: s.get_run(rid).status == "waiting", worker)

        listed = json.loads(ok(h.irbot("runs", "--json")).stdout)
        assert {r["id"]: r["status"] for r in listed} == {run_id: "waiting", other: "waiting"}

        # The requester's own vote is refused and says why.
        mine = ok(h.irbot("approve", run_id, "--as", "U01"), 1)
        assert "refused" in mine.stdout
        assert "U01 requested this run and cannot approve it" in mine.stdout
        counted = ok(h.irbot("approve", run_id, "--as", "U02"))
        assert "counted" in counted.stdout
        assert "1 of 2: U02" in counted.stdout
        granted = ok(h.irbot("approve", run_id, "--as", "U03", "--json"))
        answer = json.loads(granted.stdout)["answer"]
        assert answer["outcome"] == "granted"
        assert answer["approvers"] == ["U02", "U03"]
        done = until(
            "the run to finish",
            lambda: (r := s.get_run(run_id)).status not in ("running", "waiting") and r,
            worker,
        )
        assert done.status == "succeeded", done.detail

        # Cancel the other run while it waits at its gate; a second cancel is refused.
        cancelled = ok(h.irbot("cancel", other, "--as", "U03", "--json"))
        assert json.loads(cancelled.stdout)["status"] == "cancelled"
        again = ok(h.irbot("cancel", other, "--as", "U03"), 2)
        assert "already finished (cancelled)" in one_line(again.stderr)
        stopped = [e for e in s.events(run_id=other) if e.kind == "run.cancelled"]
        assert [(e.actor, e.payload) for e in stopped] == [("user:U03", {"by": "U03"})]

        # A vote on a finished run: exit 2, and the attempt is on the timeline.
        late = ok(h.irbot("approve", run_id, "--as", "U04"), 2)
        assert "already finished (succeeded)" in one_line(late.stderr)
        refused = [e for e in s.events(run_id=run_id) if e.kind == "approval.refused"]
        assert [(e.actor, e.payload["code"]) for e in refused] == [
            ("user:U01", "self_approval"),
            ("user:U04", "run_finished"),
        ]
        # Seconds later the worker has not brought the cancelled run back to life.
        assert s.get_run(other).status == "cancelled"
        assert s.get_run(other).detail == "cancelled by U03"
    finally:
        worker.kill()
        worker.communicate(timeout=30)

    assert [r["key"] for r in read_records("destructive")] == [f"{run_id}:boom"]
    kinds = [e.kind for e in s.events(run_id=run_id)]
    assert kinds.count("step.succeeded") == 2
    assert kinds[-2:] == ["run.finished", "approval.refused"]
    incident = first["incident_id"]

    md = ok(h.irbot("timeline", incident, "--format", "md")).stdout
    assert md.startswith(f"# {incident}: gated: target=db-7")
    assert f"- `{run_id}` gated v1, requested by U01: **succeeded** in " in md
    assert "| # | time (UTC) | event | step | actor | result | took | detail |" in md
    assert "| approval.granted | gate | user:U03 | granted |" in md
    assert "| gate | U01 | approve | refused | `" in md  # the approvals table keeps refusals
    assert "- **Audit chain:** verified (" in md
    assert "| run.cancelled |" not in md  # that was another incident

    exported = json.loads(ok(h.irbot("timeline", incident, "--format", "json")).stdout)
    assert exported["incident"]["id"] == incident
    assert [r["id"] for r in exported["runs"]] == [run_id]
    assert [e["kind"] for e in exported["events"]] == kinds
    assert kinds[:2] == ["incident.opened", "run.started"]
    seqs = [e["seq"] for e in exported["events"]]
    assert seqs == sorted(seqs)
    assert all(len(e["hash"]) == 64 for e in exported["events"])

    text = ok(h.irbot("timeline", incident, "--format", "text")).stdout.splitlines()
    assert text[0].startswith(f"{incident}: gated: target=db-7")
    assert any("approval.refused gate (user:U01): U01 requested this run" in line for line in text)
    assert any("step.succeeded boom (irbot)" in line for line in text)
    assert "run.finished (irbot): all steps done" in text[-3]
    assert "approval.refused (user:U04)" in text[-2]
    assert text[-1].startswith("audit chain verified (")


def test_run_wait_works_the_run_and_prints_progress(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    store: Callable[[Harness], TimelineStore],
) -> None:
    """`run --wait` for a playbook without gates is its own worker: it prints one line
    per event as the run goes and exits 0 once the run succeeded."""
    h = Harness(tmp_path, database_url, monkeypatch)
    h.add_playbook(QUICK)
    result = ok(h.irbot("run", "quick", "--as", "U01", "--wait"))
    lines = result.stdout.splitlines()
    assert lines[0].startswith("run run-")
    assert "started for incident INC-1 (quick)" in lines[0]
    run_id = lines[0].split()[1]
    progress = [line.split(" ", 1)[1] for line in lines[1:]]
    assert progress == [
        "incident.opened (user:U01)",
        "run.started (user:U01)",
        "step.succeeded one (irbot)",
        "step.succeeded two (irbot)",
        "step.succeeded three (irbot)",
        "run.finished (irbot): all steps done",
    ]
    run: RunRecord = store(h).get_run(run_id)
    assert run.status == "succeeded"
    assert run.finished_at is not None


# --------------------------------------------------------------------------- audit


FIELDS = (
    "seq",
    "id",
    "incident_id",
    "run_id",
    "step_id",
    "kind",
    "actor",
    "at",
    "prev_hash",
    "hash",
)


def test_audit_verify_names_edited_deleted_and_forged_events(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    store: Callable[[Harness], TimelineStore],
) -> None:
    """`audit verify` exits 0 on an intact store; after raw SQL forges an event at the
    end, edits one and deletes one (each earlier than the last, so each becomes the
    first break) it exits 1 naming the bad event's seq and id."""
    h = Harness(tmp_path, database_url, monkeypatch)
    s = store(h)
    at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    incident = s.open_incident(key="audit", title="audit drill", at=at)
    for n in range(5):
        s.append(
            NewEvent(
                id=event_id("audit", n),
                incident_id=incident.id,
                kind="note",
                actor="user:U01",
                at=at,
                payload={"text": f"note {n}"},
            )
        )
    clean = ok(h.irbot("audit", "verify"))
    assert "audit chain verified: 5 events" in clean.stdout

    engine = sa.create_engine(normalize_url(h.settings.store_url()))
    events = EventRow.__table__
    try:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(sa.update(events).where(events.c.seq == 4).values(actor="user:U66"))
        drop_append_only_triggers(engine)

        # A forged event, correctly chained onto the last one: only the head gives it away.
        last = s.events()[-1]
        forged = seal(
            NewEvent(
                id="ev_forged",
                incident_id=incident.id,
                kind="note",
                actor="user:U02",
                at=at,
                payload={"text": "forged"},
            ),
            last.seq + 1,
            last.hash,
        )
        row = {name: getattr(forged, name) for name in FIELDS} | {"payload": {"text": "forged"}}
        with engine.begin() as conn:
            conn.execute(sa.insert(events).values(row))
        broken = ok(h.irbot("audit", "verify"), 1)
        line = one_line(broken.stderr)
        assert f"seq {forged.seq} (id ev_forged)" in line
        assert "row added" in line

        # An edited payload.
        edited = s.events()[3]
        assert edited.seq == 4
        with engine.begin() as conn:
            conn.execute(
                sa.update(events)
                .where(events.c.seq == edited.seq)
                .values(payload={"text": "nothing to see"})
            )
        broken = ok(h.irbot("audit", "verify"), 1)
        line = one_line(broken.stderr)
        assert f"seq 4 (id {edited.id})" in line
        assert "hash mismatch (row edited)" in line

        # A deleted event: the gap is named by its seq (the row, and its id, are gone).
        with engine.begin() as conn:
            conn.execute(sa.delete(events).where(events.c.seq == 2))
        report = json.loads(ok(h.irbot("audit", "verify", "--json"), 1).stdout)
        assert report["ok"] is False
        assert report["first_bad_seq"] == 2
        assert "row removed" in report["reason"]
        assert report["checked"] == 1
    finally:
        engine.dispose()
    assert s.verify().first_bad_seq == 2
