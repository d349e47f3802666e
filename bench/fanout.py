"""Fan-out: 200 items of a 50 ms action at concurrency 20.

Critical path = ceil(200 / 20) * 50 ms = 0.5 s; target <= 1.3x of it. Also runs the same
fan-out one by one (concurrency 1) for comparison. Wall time is measured from the
step's first item starting to its last item finishing (from the timeline), and from
run start to run end.

Two plain DBOS baselines run in the same process on the same database, with the same
50 ms step and no irbot code, so the figure can be read against what DBOS itself costs
here: the same shape as irbot's fan-out (items several to a child workflow, 2 children
per unit of concurrency, on a partitioned queue polled as often as irbot's), and a
floor: one workflow starting its steps concurrently (no queue, so no second process
could share them and no rate limit could apply).

Usage: .venv/bin/python bench/fanout.py [--items 200] [--concurrency 20] [--seconds 0.05]
       [--database-url postgresql://postgres@127.0.0.1/irbot_bench]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from typing import Any

from _support import install, submit
from dbos import DBOS, SetEnqueueOptions


@DBOS.step(name="bench.fan_item")
async def plain_item(seconds: float) -> tuple[float, float]:
    began = time.time()
    await asyncio.sleep(seconds)
    return began, time.time()


@DBOS.workflow(name="bench.fan_chunk")
async def plain_chunk(count: int, seconds: float) -> list[tuple[float, float]]:
    return [await plain_item(seconds) for _ in range(count)]


@DBOS.workflow(name="bench.fan_gather")
async def plain_gather(items: int, concurrency: int, seconds: float) -> list[tuple[float, float]]:
    async def lane(first: int) -> list[tuple[float, float]]:
        return [await plain_item(seconds) for _ in range(first, items, concurrency)]

    lanes = await asyncio.gather(*(lane(first) for first in range(concurrency)))
    return [span for spans in lanes for span in spans]


async def _plain_chunked(items: int, concurrency: int, seconds: float, round_: int) -> float:
    from bot.engine import fanout

    queue = await DBOS.register_queue_async(
        "bench-fan",
        partition_concurrency=concurrency,
        polling_interval_sec=fanout.FANOUT_POLL_SECONDS,
    )
    handles = []
    for part in fanout.chunks(items, concurrency):
        with SetEnqueueOptions(queue_partition_key=f"round-{round_}"):
            handles.append(await queue.enqueue_async(plain_chunk, len(part), seconds))
    spans = [span for handle in handles for span in await handle.get_result()]
    return _span(spans)


async def _plain_gathered(items: int, concurrency: int, seconds: float) -> float:
    handle = await DBOS.start_workflow_async(plain_gather, items, concurrency, seconds)
    return _span(await handle.get_result())


def _span(spans: list[Any]) -> float:
    return max(end for _, end in spans) - min(start for start, _ in spans)


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
        await _plain_chunked(concurrency, concurrency, seconds, 0)  # warm-up
        chunked = await _plain_chunked(items, concurrency, seconds, 1)
        gathered = await _plain_gathered(items, concurrency, seconds)
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
    print("plain DBOS, the same steps without irbot (first start -> last end):")
    for what, seconds_ in (
        ("irbot's shape (chunks on a queue)", chunked),
        ("floor (concurrent steps, one workflow)", gathered),
    ):
        print(f"  {what}: {seconds_:.2f} s = {seconds_ / critical:.2f}x")


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
