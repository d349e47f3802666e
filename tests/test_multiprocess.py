"""Several replicas on one PostgreSQL database share the work of a run.

Two `irbot worker` processes serve the same DBOS queues: the items of a fan-out are
spread over both, and each item runs exactly once. SQLite is embedded (one host, one
worker), so this is PostgreSQL only.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.actions.testing import read_records
from bot.core import inputs as input_rules
from bot.core import library
from bot.core.config import load_config
from bot.engine import client
from bot.store import TimelineStore
from tests.engine_support import Harness

ITEMS = 50

SHARED = """
name: shared
version: 1
inputs:
  names: {type: list}
steps:
  - id: gate
    approval: {from: [group:sre], ttl: 1h}
  - id: fan
    action: test.destructive
    for_each: "{{ inputs.names }}"
    concurrency: 10
    with: {target: "{{ item }}"}
"""


def _until(
    what: str, probe: Callable[[], Any], workers: list[subprocess.Popen[str]], timeout: float = 90
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        dead = [w.pid for w in workers if w.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (dead workers: {dead})")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_workers_share_a_fan_out_and_run_each_item_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """50 destructive items behind a two-person gate, concurrency 10, two worker
    processes on one database: 50 calls with 50 distinct keys, no repeat, and both
    workers did some of them."""
    h = Harness(tmp_path, database_url, monkeypatch)
    h.add_playbook(SHARED)
    names = [f"db-{n:02d}" for n in range(ITEMS)]
    settings = h.settings
    store = TimelineStore(settings.store_url())
    store.migrate()
    # Each call lingers a while, so that neither worker can drain the queue alone. The
    # items go several to a child workflow; spreading the calls' ends over time spreads
    # the children's ends too, and each freed slot goes to whichever worker polls next
    # (equal pauses end a wave of children together: one poll, one coin toss).
    workers = [h.spawn_worker(IRBOT_TEST_DESTRUCTIVE_PAUSE="0.02-0.8") for _ in range(2)]
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = worker.stdout.readline()
            assert "irbot worker ready" in line, line
        lib = library.read([settings.playbooks_dir])
        loaded = lib.get("shared")
        run_id = client.submit(
            settings,
            store,
            loaded,
            input_rules.resolve({"names": names}, loaded.playbook),
            requester="U01",
            library=lib.loaded(),
            config=load_config(settings.config_path),
        ).run_id
        _until("the gate", lambda: store.get_run(run_id).status == "waiting", workers)
        for user, outcome in (("U02", "counted"), ("U03", "granted")):
            answer = client.vote(settings, store, run_id, user=user, decision="approve").answer
            assert answer is not None, f"no worker decided on the vote of {user}"
            assert answer["outcome"] == outcome, answer
        run = _until(
            "the run to finish",
            lambda: (r := store.get_run(run_id)).status not in ("running", "waiting") and r,
            workers,
        )
        assert run.status == "succeeded", run.detail

        records = read_records("destructive")
        assert len(records) == ITEMS
        assert sorted(r["key"] for r in records) == sorted(
            f"{run_id}:fan:{n}" for n in range(ITEMS)
        )
        assert not [r for r in records if r["dedup"]]
        assert sorted(r["with"]["target"] for r in records) == names
        by_pid = Counter(r["pid"] for r in records)
        assert set(by_pid) == {w.pid for w in workers}, by_pid

        succeeded = [e for e in store.events(run_id=run_id) if e.kind == "step.succeeded"]
        assert sorted(e.payload["item"] for e in succeeded) == list(range(ITEMS))
        assert store.verify().ok
    finally:
        for worker in workers:
            worker.kill()
            worker.communicate(timeout=30)
        store.close()
