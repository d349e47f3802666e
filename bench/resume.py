"""Resume after kill -9: time from relaunching a worker until the interrupted step runs.

A worker runs a playbook whose second step sleeps; the benchmark kills the worker with
SIGKILL while that step is in flight, relaunches a worker and measures, from the
relaunch, (1) when the new worker is ready and (2) when the interrupted step starts
again (its step.succeeded event time minus its recorded duration).

Usage: .venv/bin/python bench/resume.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _support import install, submit

PLAYBOOK = """
name: resume
version: 1
steps:
  - id: first
    action: test.noop
    with: {n: 1}
  - id: slow
    action: test.sleep
    with: {seconds: 2}
  - id: last
    action: test.noop
    with: {n: 3}
"""

IRBOT = str(Path(sys.executable).parent / "irbot")


def _worker() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [IRBOT, "worker"],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if "worker ready" in line:
            return
    raise RuntimeError("worker exited before it was ready")


def one_round(store: object) -> tuple[float, float]:
    events = store.events  # type: ignore[attr-defined]
    first = _worker()
    _wait_ready(first)
    run_id = submit("resume", store)
    while not any(
        e.kind == "step.succeeded" and e.step_id == "first" for e in events(run_id=run_id)
    ):
        time.sleep(0.01)
    time.sleep(0.5)  # `slow` is now in flight
    first.kill()
    first.wait()
    relaunched = time.time()
    second = _worker()
    _wait_ready(second)
    ready = time.time() - relaunched
    while not any(
        e.kind == "step.succeeded" and e.step_id == "slow" for e in events(run_id=run_id)
    ):
        time.sleep(0.01)
    slow = next(
        e for e in events(run_id=run_id) if e.kind == "step.succeeded" and e.step_id == "slow"
    )
    restarted = slow.at.timestamp() - slow.payload["duration_ms"] / 1000 - relaunched
    second.terminate()
    second.wait()
    return ready, restarted


def main(rounds: int) -> None:
    install({"resume": PLAYBOOK})
    from bot.engine import runtime
    from bot.settings import load_settings

    store = runtime.open_store(load_settings())  # this process only watches; no DBOS here
    ready, restart = [], []
    for _ in range(rounds):
        r, s = one_round(store)
        ready.append(r)
        restart.append(s)
    print(f"rounds: {rounds}")
    print(
        f"relaunch -> worker ready: median {statistics.median(ready):.2f} s "
        f"(min {min(ready):.2f}, max {max(ready):.2f})"
    )
    print(
        f"relaunch -> interrupted step running again: median {statistics.median(restart):.2f} s "
        f"(min {min(restart):.2f}, max {max(restart):.2f})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args().rounds)
