"""Crash safety with real processes: `irbot worker` is killed with SIGKILL at every step
boundary of a run and once in the middle of a destructive call, and a new worker is
started each time. The run still finishes, finished steps never run again, the call that
was in flight runs again with the same idempotency key (and is deduplicated), and the
approval gate keeps its votes across a crash.

The test process watches the timeline store and kills a worker as soon as the k-th
``step.succeeded`` event of the run appears. After each kill it notes which destructive
calls were in flight: recorded by ``test.destructive`` but not checkpointed by DBOS as a
finished step (read through ``DBOSClient.list_workflow_steps``, the engine's own record of
what is done). Only those may be called again, exactly once per crash that caught them.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.actions.testing import read_records
from bot.core import inputs as input_rules
from bot.core import library
from bot.core.config import load_config
from bot.engine import client
from bot.engine.fanout import chunks
from bot.store import TimelineStore
from tests.engine_support import Harness

T = TypeVar("T")

CRASHY = """
name: crashy
version: 1
inputs:
  targets: {type: list, default: [a, b, c]}
steps:
  - id: prep
    action: test.noop
    with: {note: "crash drill for {{ run.requester }}"}
  - id: gate
    approval: {from: [group:sre], ttl: 1h}
  - id: first
    action: test.destructive
    with: {target: first}
  - id: settle
    action: test.sleep
    with: {seconds: 0.5}
  - id: fan
    action: test.destructive
    for_each: "{{ inputs.targets }}"
    concurrency: 1
    with: {target: "{{ item }}"}
  - id: last
    action: test.destructive
    with: {target: last}
"""
"""Every step after the gate is slow (destructive calls pause in the boundary workers,
``settle`` sleeps), so a kill right after the k-th ``step.succeeded`` lands before the
(k+1)-th: each boundary is hit in turn."""

ACTION_STEPS = [
    ("prep", None),
    ("first", None),
    ("settle", None),
    ("fan", 0),
    ("fan", 1),
    ("fan", 2),
    ("last", None),
]
BOUNDARY_PAUSE = "0.5"
"""IRBOT_TEST_DESTRUCTIVE_PAUSE of the workers killed at step boundaries."""
IN_FLIGHT_PAUSE = "60"
"""… of the worker killed inside a destructive call (it never gets to finish it)."""


class Drill:
    """One crash drill: the harness, a view of the store, and the workers started so far."""

    def __init__(self, h: Harness, store: TimelineStore, dbos: Any) -> None:
        self.h = h
        self.store = store
        self.dbos = dbos
        self.workers: list[subprocess.Popen[str]] = []
        self.logs: list[str] = []
        self.run_id = ""
        self.in_flight: Counter[str] = Counter()
        """Destructive keys that were recorded but not finished, once per kill."""

    def submit(self, name: str, user: str) -> str:
        lib = library.read([self.h.settings.playbooks_dir])
        loaded = lib.get(name)
        done = client.submit(
            self.h.settings,
            self.store,
            loaded,
            input_rules.resolve({}, loaded.playbook),
            requester=user,
            library=lib.loaded(),
            config=load_config(self.h.settings.config_path),
        )
        self.run_id = done.run_id
        return done.run_id

    # ----------------------------------------------------------------- workers

    def spawn(self, pause: str | None = None) -> subprocess.Popen[str]:
        extra = {"IRBOT_TEST_DESTRUCTIVE_PAUSE": pause} if pause else {}
        worker = self.h.spawn_worker(**extra)
        self.workers.append(worker)
        return worker

    def kill(self, worker: subprocess.Popen[str]) -> None:
        """SIGKILL, then note which destructive calls the dead worker left in flight."""
        worker.kill()
        out, _ = worker.communicate(timeout=30)
        self.logs.append(out or "")
        time.sleep(0.1)  # a commit sent just before the kill lands on the server
        finished = self.finished_keys()
        recorded = {r["key"] for r in read_records("destructive")}
        self.in_flight.update(recorded - finished)

    def kill_all(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.kill()
            out, _ = worker.communicate(timeout=30)
            self.logs.append(out or "")

    # ----------------------------------------------------------------- views

    def events(self, kind: str | None = None) -> list[Any]:
        events = self.store.events(run_id=self.run_id)
        return [e for e in events if kind is None or e.kind == kind]

    def succeeded(self) -> int:
        return len(self.events("step.succeeded"))

    def key(self, target: str) -> str:
        items = {"a": 0, "b": 1, "c": 2}
        if target in items:
            return f"{self.run_id}:fan:{items[target]}"
        return f"{self.run_id}:{target}"

    def finished_keys(self) -> set[str]:
        """Destructive calls DBOS has checkpointed as finished steps."""
        done = set()
        fan = f"{self.run_id}:fan"
        chunked = [f"{fan}:{part.start}-{part.stop - 1}" for part in chunks(3, 1)]
        workflows = [self.run_id, *chunked]  # the fan-out's items go in chunks
        for workflow_id in workflows:
            for step in self.dbos.list_workflow_steps(workflow_id) or []:
                output = step["output"]
                if step["function_name"] != "irbot.action" or not isinstance(output, dict):
                    continue
                target = output.get("outputs", {}).get("target")
                if output.get("status") == "succeeded" and target:
                    done.add(self.key(target))
        return done

    def wait(self, what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
        """Poll ``probe`` until it gives something; fail with the evidence otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            alive = [w for w in self.workers if w.poll() is None]
            if not alive or time.monotonic() > deadline:
                self.kill_all()
                kinds = [f"{e.kind} {e.step_id or ''}" for e in self.events()]
                logs = "\n".join(self.logs)[-3000:]
                raise AssertionError(f"timed out waiting for {what}; events {kinds}\n{logs}")
            time.sleep(0.01)


@contextmanager
def drill(h: Harness) -> Iterator[Drill]:
    settings = h.settings
    store = TimelineStore(settings.store_url())
    store.migrate()
    try:
        with client.dbos_client(settings) as dbos:
            d = Drill(h, store, dbos)
            try:
                yield d
            finally:
                d.kill_all()
    finally:
        store.close()


def _vote(d: Drill, user: str) -> dict[str, Any]:
    result = client.vote(d.h.settings, d.store, d.run_id, user=user, decision="approve")
    assert result.answer is not None, f"no worker decided on the vote of {user}"
    return result.answer


@pytest.mark.slow
@pytest.mark.timeout(300)  # nine kill -9 and restart cycles of a real worker process
def test_killed_workers_resume_without_repeating_finished_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """kill -9 at every step boundary, inside a destructive call and between two votes:
    the run succeeds, each step succeeds once, only in-flight calls repeat (deduplicated
    by their idempotency key), and the gate is granted with both approvers."""
    h = Harness(tmp_path, database_url, monkeypatch)
    h.add_playbook(CRASHY)
    with drill(h) as d:
        run_id = d.submit("crashy", "U01")
        killed_at: list[int] = []

        # Boundary 1: right after `prep` succeeded, before the gate opens.
        worker = d.spawn()
        d.wait("prep to succeed", lambda: d.succeeded() >= 1)
        d.kill(worker)
        killed_at.append(d.succeeded())

        # The gate: one approval, a crash, a new worker, the second approval.
        worker = d.spawn()
        d.wait("the gate to open", lambda: d.events("approval.requested"))
        first_vote = _vote(d, "U02")
        assert first_vote["outcome"] == "counted", first_vote
        d.kill(worker)

        worker = d.spawn(pause=IN_FLIGHT_PAUSE)
        second_vote = _vote(d, "U03")
        assert second_vote["outcome"] == "granted", second_vote
        assert second_vote["approvers"] == ["U02", "U03"]

        # Inside a destructive call: `first` is recorded and pausing when the worker dies.
        first_key = d.key("first")
        d.wait(
            "the first destructive call",
            lambda: [r for r in read_records("destructive") if r["key"] == first_key],
        )
        d.kill(worker)
        in_flight_worker = worker
        assert not [e for e in d.events("step.succeeded") if e.step_id == "first"]
        assert d.in_flight[first_key] == 1

        # Boundaries 2..7: kill as soon as the k-th step.succeeded appears.
        boundary_workers = []
        for k in range(2, len(ACTION_STEPS) + 1):
            worker = d.spawn(pause=BOUNDARY_PAUSE)
            boundary_workers.append(worker)
            d.wait(f"step.succeeded #{k}", lambda k=k: d.succeeded() >= k)
            d.kill(worker)
            killed_at.append(d.succeeded())
        assert killed_at == list(range(1, len(ACTION_STEPS) + 1))

        # A last worker finishes whatever the last kill interrupted.
        d.spawn()
        run = d.wait(
            "the run to finish",
            lambda: (r := d.store.get_run(run_id)).status not in ("running", "waiting") and r,
        )
        assert run.status == "succeeded", run.detail

        # Every action step (and every fan-out item) succeeded exactly once.
        per_step = Counter((e.step_id, e.payload.get("item")) for e in d.events("step.succeeded"))
        assert per_step == Counter(dict.fromkeys(ACTION_STEPS, 1))
        assert not d.events("step.failed")
        assert not d.events("step.retrying")

        # Destructive calls: one per key, plus one deduplicated repeat per crash that
        # caught the call in flight. A call DBOS had finished was never made again.
        records: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in read_records("destructive"):
            records[record["key"]].append(record)
        keys = {d.key(t) for t in ("first", "a", "b", "c", "last")}
        assert set(records) == keys
        assert set(d.in_flight) <= keys
        for key in sorted(keys):
            calls = records[key]
            expected = 1 + d.in_flight[key]
            assert len(calls) == expected, (key, calls, dict(d.in_flight))
            assert [c["dedup"] for c in calls] == [False] + [True] * (expected - 1), calls
            assert all(c["with"] == calls[0]["with"] for c in calls)
        # The call killed mid-flight was made again by the next worker with the same key,
        # as a dedup no-op. (That worker may itself die before DBOS checkpoints the
        # repeat, even after its step.succeeded is stored: then there is one more.)
        repeat = records[first_key][:2]
        assert [(c["pid"], c["dedup"]) for c in repeat] == [
            (in_flight_worker.pid, False),
            (boundary_workers[0].pid, True),
        ]

        # The gate opened once and kept the first vote across the crash.
        assert len(d.events("approval.requested")) == 1
        counted = d.events("approval.counted")
        assert [(e.actor, e.payload["approvers"]) for e in counted] == [("user:U02", ["U02"])]
        granted = d.events("approval.granted")
        assert len(granted) == 1
        assert granted[0].actor == "user:U03"
        assert granted[0].payload["approvers"] == ["U02", "U03"]
        assert len(d.events("run.started")) == 1
        assert len(d.events("run.finished")) == 1
        assert d.store.verify().ok
