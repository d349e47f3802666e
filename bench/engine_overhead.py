"""Per-step overhead: irbot vs. a plain DBOS workflow calling the same no-op step.

Both run 500 steps in one workflow on the same SQLite system database, in one process.
irbot's figure includes everything a real step does: rendering `with`, validating it
against the action's input model, calling the action, and appending a hash-chained
timeline event. Target: ratio <= 1.5x.

Usage: .venv/bin/python bench/engine_overhead.py [--steps 500]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from _support import install, submit
from dbos import DBOS, SetWorkflowID


@DBOS.step(name="bench.noop")
async def plain_noop(index: int) -> dict[str, int]:
    return {"index": index}


@DBOS.workflow(name="bench.plain")
async def plain_workflow(steps: int) -> int:
    for index in range(steps):
        await plain_noop(index)
    return steps


def playbook(steps: int) -> str:
    body = "".join(
        f"  - id: s{n}\n    action: test.noop\n    with: {{n: {n}}}\n" for n in range(steps)
    )
    return f"name: many\nversion: 1\nsteps:\n{body}"


async def _plain(steps: int, round_: int) -> float:
    start = time.perf_counter()
    with SetWorkflowID(f"bench-plain-{round_}"):
        handle = await DBOS.start_workflow_async(plain_workflow, steps)
    await handle.get_result(polling_interval_sec=0.01)
    return time.perf_counter() - start


async def _irbot(rt: Any) -> tuple[float, str]:
    run_id = submit("many")
    # Poll from a thread, rarely: a blocking read in the event loop would stall the run.
    while (await asyncio.to_thread(rt.store.get_run, run_id)).status not in ("succeeded", "failed"):
        await asyncio.sleep(0.1)
    events = rt.store.events(run_id=run_id)
    first = next(e for e in events if e.kind == "run.started").at
    last = next(e for e in events if e.kind in ("run.finished", "run.failed")).at
    return (last - first).total_seconds(), rt.store.get_run(run_id).status


async def main(steps: int, rounds: int) -> None:
    install({"many": playbook(steps)})
    from bot.engine import runtime
    from bot.settings import load_settings

    rt = await runtime.launch(load_settings())
    plain: list[float] = []
    irbot: list[float] = []
    try:
        for round_ in range(rounds):  # alternate, so background load hits both alike
            plain.append(await _plain(steps, round_))
            seconds, status = await _irbot(rt)
            assert status == "succeeded", status
            irbot.append(seconds)
    finally:
        runtime.shutdown()
    p, i = statistics.median(plain), statistics.median(irbot)
    print(f"rounds: {rounds}, steps per workflow: {steps}")
    print(f"plain DBOS workflow, no-op step: median {p:.2f} s ({p / steps * 1000:.2f} ms/step)")
    print(
        f"irbot run, test.noop step (run.started->run.finished): median {i:.2f} s "
        f"({i / steps * 1000:.2f} ms/step)"
    )
    print(f"ratio irbot/plain: {i / p:.2f}x  (target <= 1.5x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.steps, args.rounds))
