"""Which process runs a run: executor leases.

DBOS resumes, at launch, the pending workflows recorded under the launching process's
executor id. If every process used the same id, a second worker started on the same
database would resume the runs a live worker is in the middle of, and the step in
flight would run twice at once. Each worker therefore leases an id in the store
(``bot.store.executors``): a live holder keeps it, a dead one's (same host, pid gone;
or no heartbeat for ``dead_after``) is taken over with its runs.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.actions.testing import read_records
from bot.core import inputs as input_rules
from bot.core import library
from bot.core.config import load_config
from bot.engine import client, liveness
from bot.store import TimelineStore
from tests.engine_support import Harness

SLOW = """
name: slow
version: 1
steps:
  - id: gate
    approval: {from: [group:sre], ttl: 1h}
  - id: boom
    action: test.destructive
    with: {target: db-1}
"""


def _until(what: str, probe: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _ready(worker: subprocess.Popen[str]) -> None:
    assert worker.stdout is not None
    line = worker.stdout.readline()
    assert "irbot worker ready" in line, line


@pytest.mark.slow
def test_a_second_worker_leaves_a_live_workers_run_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """Worker A is inside a destructive step (it lingers 4 s) when worker B starts on
    the same database: the step is called once, by A, and the run succeeds."""
    h = Harness(tmp_path, database_url, monkeypatch)
    h.add_playbook(SLOW)
    settings = h.settings
    store = TimelineStore(settings.store_url())
    store.migrate()
    workers = [h.spawn_worker(IRBOT_TEST_DESTRUCTIVE_PAUSE="4")]
    try:
        _ready(workers[0])
        lib = library.read([settings.playbooks_dir])
        loaded = lib.get("slow")
        run_id = client.submit(
            settings,
            store,
            loaded,
            input_rules.resolve({}, loaded.playbook),
            requester="U01",
            library=lib.loaded(),
            config=load_config(settings.config_path),
        ).run_id
        _until("the gate", lambda: store.get_run(run_id).status == "waiting")
        for user in ("U02", "U03"):
            assert client.vote(settings, store, run_id, user=user, decision="approve").answer
        _until("A inside the step", lambda: read_records("destructive"))
        workers.append(h.spawn_worker(IRBOT_TEST_DESTRUCTIVE_PAUSE="4"))
        _ready(workers[1])
        run = _until(
            "the run to finish",
            lambda: (r := store.get_run(run_id)).status not in ("pending", "running") and r,
        )
        assert run.status == "succeeded", run.detail
        time.sleep(1.0)  # a duplicate started by B would have recorded by now
        records = read_records("destructive")
        assert [(r["key"], r["pid"]) for r in records] == [(f"{run_id}:boom", workers[0].pid)]
    finally:
        for worker in workers:
            worker.kill()
            worker.communicate(timeout=30)
        store.close()


@pytest.mark.slow
def test_a_live_worker_takes_over_the_runs_a_released_lease_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """`irbot run --wait` beside a live worker leases its own id, stops at the gate and
    exits, giving its lease back; the live worker takes the run over, so the votes that
    follow finish it (without the take-over nobody would resume it)."""
    h = Harness(tmp_path, database_url, monkeypatch)
    h.add_playbook(SLOW)
    store = TimelineStore(h.settings.store_url())
    store.migrate()
    worker = h.spawn_worker()
    try:
        _ready(worker)
        done = h.irbot("run", "slow", "--as", "U01", "--wait", "--json", timeout=120)
        assert done.returncode == 0, done.stderr
        [run] = store.list_runs()
        assert run.status == "waiting"
        for user in ("U02", "U03"):
            answer = client.vote(h.settings, store, run.id, user=user, decision="approve")
            assert answer.answer, f"nobody decided on the vote of {user}"
        final = _until(
            "the run to finish",
            lambda: (r := store.get_run(run.id)).status not in ("running", "waiting") and r,
        )
        assert final.status == "succeeded", final.detail
        assert [r["pid"] for r in read_records("destructive")] == [worker.pid]
    finally:
        worker.kill()
        worker.communicate(timeout=30)
        store.close()


# ------------------------------------------------------------------ leases in the store

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DEAD = timedelta(seconds=30)


def lease(store: TimelineStore, *, host: str = "h1", pid: int = 100, alive: bool = True) -> str:
    return store.lease_executor(
        "w", host=host, pid=pid, now=NOW, dead_after=DEAD, pid_alive=lambda _pid: alive
    )


@pytest.fixture
def leases(database_url: str) -> Iterator[TimelineStore]:
    store = TimelineStore(database_url)
    store.migrate()
    try:
        yield store
    finally:
        store.close()


def test_a_live_holder_keeps_its_id_and_the_next_worker_gets_another(
    leases: TimelineStore,
) -> None:
    assert lease(leases, pid=100) == "w"
    assert lease(leases, pid=200, alive=True) == "w-2"  # same host, pid 100 alive
    assert lease(leases, host="h2", pid=100) == "w-3"  # another host, fresh beat
    assert lease(leases, pid=100) == "w"  # the holder itself (a relaunch in-process)


def test_a_dead_holder_on_this_host_is_taken_over_at_once(leases: TimelineStore) -> None:
    """A kill -9 leaves a fresh beat; the pid being gone frees the id without waiting."""
    assert lease(leases, pid=100) == "w"
    assert lease(leases, pid=200, alive=False) == "w"
    assert not leases.beat_executor("w", host="h1", pid=100, now=NOW)  # the old holder lost it
    assert leases.beat_executor("w", host="h1", pid=200, now=NOW)


def test_a_silent_holder_elsewhere_is_taken_over_after_dead_after(
    leases: TimelineStore,
) -> None:
    assert lease(leases, host="h2", pid=100) == "w"
    later = NOW + DEAD
    taken = leases.lease_executor(
        "w", host="h1", pid=7, now=later, dead_after=DEAD, pid_alive=lambda _pid: True
    )
    assert taken == "w"


def test_released_and_stale_leases_are_reaped_by_exactly_one_peer(
    leases: TimelineStore,
) -> None:
    assert lease(leases, pid=100) == "w"
    assert lease(leases, pid=200) == "w-2"
    leases.release_executor("w-2", host="h1", pid=200)
    stale = leases.stale_executors(NOW, DEAD)
    assert [s[0] for s in stale] == ["w-2"]
    [(executor, beat_at)] = stale
    assert leases.reap_executor(executor, beat_at) is True
    assert leases.reap_executor(executor, beat_at) is False
    assert leases.stale_executors(NOW, DEAD) == []
    assert lease(leases, pid=300) == "w-2"  # free again


def test_the_keeper_beats_reaps_dead_peers_and_notices_a_lost_lease(
    leases: TimelineStore,
) -> None:
    """One tick renews the lease and resumes a dead peer's runs once; a keeper whose id
    was taken over reports it (the real one then stops its process)."""
    mine = liveness.Lease(lease(leases, pid=100), "h1", 100)
    assert lease(leases, host="h2", pid=5) == "w-2"
    leases.release_executor("w-2", host="h2", pid=5)
    resumed: list[str] = []

    def recover(executor_id: str) -> int:
        resumed.append(executor_id)
        return 3

    keeper = liveness.Keeper(leases, mine, recover, dead_after=DEAD)
    other = liveness.Keeper(leases, liveness.Lease("w-3", "h3", 9), recover, dead_after=DEAD)
    assert keeper.tick() is True
    assert resumed == ["w-2"]
    lease(leases, pid=200, alive=False)  # a relaunch on h1 takes "w" over
    assert keeper.tick() is False
    assert other.tick() is False  # never leased
    assert resumed == ["w-2"]


def test_a_failed_take_over_keeps_the_dead_lease_for_the_next_beat(
    leases: TimelineStore,
) -> None:
    """If resuming a dead peer's runs fails, its lease stays stale and the next beat
    tries again; the keeper itself keeps beating."""
    mine = liveness.Lease(lease(leases, pid=100), "h1", 100)
    assert lease(leases, host="h2", pid=5) == "w-2"
    leases.release_executor("w-2", host="h2", pid=5)
    attempts: list[str] = []

    def flaky(executor_id: str) -> int:
        attempts.append(executor_id)
        if len(attempts) == 1:
            raise ConnectionError("the system database went away")
        return 1

    keeper = liveness.Keeper(leases, mine, flaky, dead_after=DEAD)
    assert keeper.tick() is True
    assert [s[0] for s in leases.stale_executors(NOW, DEAD)] == ["w-2"]
    assert keeper.tick() is True
    assert attempts == ["w-2", "w-2"]
    assert leases.stale_executors(NOW, DEAD) == []
