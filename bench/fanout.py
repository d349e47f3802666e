"""Fan-out: 200 items of a 50 ms action at concurrency 20.

Critical path = ceil(200 / 20) * 50 ms = 0.5 s; target <= 1.3x of it. Also runs the same
fan-out one by one (concurrency 1) for comparison. Wall time is measured from the
step's first item starting to its last item finishing (from the timeline), and from
run start to run end.

Usage: .venv/bin/python bench/fanout.py [--items 200] [--concurrency 20] [--seconds 0.05]
       [--database-url postgresql://postgres@127.0.0.1/irbot_bench]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time

from _support import install, submit


def playbook(name: str, concurrency: int, seconds: float) -> str:
    return f"""
name: {name}
version: 1
inputs:
  items: {{type: list, items: int, default: []}}
steps:
  - id: fan
    action: test.sleep
    for_each: "{{{{ inputs.items }}}}"
    concurrency: {concurrency}
    with: {{seconds: {seconds}}}
"""


async def _run(rt: object, name: str, items: int) -> tuple[float, float]:
    store = rt.store  # type: ignore[attr-defined]
    run_id = submit(name, items=list(range(items)))
    started = time.perf_counter()
    while (await asyncio.to_thread(store.get_run, run_id)).status not in ("succeeded", "failed"):
        await asyncio.sleep(0.05)
    wall = time.perf_counter() - started
    assert store.get_run(run_id).status == "succeeded"
    events = store.events(run_id=run_id)
    done = [e for e in events if e.kind == "step.succeeded" and e.step_id == "fan"]
    assert len(done) == items, len(done)
    first = min(e.at.timestamp() - e.payload["duration_ms"] / 1000 for e in done)
    last = max(e.at.timestamp() for e in done)
    return last - first, wall


async def main(items: int, concurrency: int, seconds: float, database_url: str | None) -> None:
    install(
        {
            "fan-wide": playbook("fan-wide", concurrency, seconds),
            "fan-serial": playbook("fan-serial", 1, seconds),
        },
        database_url=database_url,
    )
    from bot.engine import runtime
    from bot.settings import load_settings

    rt = await runtime.launch(load_settings())
    try:
        await _run(rt, "fan-wide", concurrency)  # warm-up: registers the queue
        span, wall = await _run(rt, "fan-wide", items)
        serial_span, serial_wall = await _run(rt, "fan-serial", items)
    finally:
        runtime.shutdown()
    critical = math.ceil(items / concurrency) * seconds
    print(f"{items} items x {seconds * 1000:.0f} ms, concurrency {concurrency}:")
    print(
        f"  first item start -> last item end: {span:.2f} s = {span / critical:.2f}x the "
        f"critical path ({critical:.2f} s; target <= 1.3x)"
    )
    print(f"  submit -> run succeeded: {wall:.2f} s")
    print(
        f"one by one (concurrency 1): items {serial_span:.2f} s, "
        f"submit -> done {serial_wall:.2f} s (speed-up {serial_span / span:.1f}x)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.05)
    parser.add_argument(
        "--database-url", help="an EMPTY PostgreSQL database (default: fresh SQLite files)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.items, args.concurrency, args.seconds, args.database_url))
