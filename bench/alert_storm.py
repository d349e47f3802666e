"""Alertmanager storm: 10,000 alerts in 100 groups must start exactly 100 runs.

Each of ``--groups`` alert groups fires ``--alerts`` alerts (100 x 100 = 10,000), sent
as ``--deliveries`` deliveries per group of alerts/deliveries alerts each (Alertmanager
re-notifying a growing group), all shuffled and sent concurrently, ``--concurrency`` at
a time, into the real ``irbot serve`` (its own process). Afterwards the runs in the
store are counted (one per group while it fires: must be exactly ``--groups``), and the
server process's resident memory (VmRSS) is read before the storm, right after it, and
once its runs have finished.

Usage: cd bench && ../.venv/bin/python alert_storm.py [--groups 100] [--alerts 100]
       [--deliveries 5] [--concurrency 200] [--split-worker]
       [--database-url postgresql://…/empty_db]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter

from _server import (
    Server,
    ack_histogram,
    alertmanager_group,
    ms,
    percentile,
    running_server,
    senders,
    summary,
    timed_post,
    wait_runs,
)

Request = tuple[bytes, dict[str, str]]


def storm(groups: int, alerts: int, deliveries: int, seed: int = 5) -> list[Request]:
    """Every group's alerts split into ``deliveries`` bodies, shuffled across groups."""
    per = alerts // deliveries
    bodies = [
        alertmanager_group(g, range(d * per, alerts if d == deliveries - 1 else (d + 1) * per))
        for g in range(groups)
        for d in range(deliveries)
    ]
    random.Random(seed).shuffle(bodies)
    return bodies


async def send(
    server: Server, requests: list[Request], concurrency: int
) -> tuple[list[float], Counter[str], float]:
    """All deliveries through ``concurrency`` senders; latencies, answers, wall."""
    queue: asyncio.Queue[Request] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    latencies: list[float] = []
    answers: Counter[str] = Counter()

    async with senders(server.url, concurrency) as clients:

        async def sender(http: object) -> None:
            while not queue.empty():
                body, headers = queue.get_nowait()
                took, response = await timed_post(http, "/webhooks/alertmanager", body, headers)  # type: ignore[arg-type]
                latencies.append(took)
                answers[f"{response.status_code} {response.json().get('status')}"] += 1

        started = time.perf_counter()
        await asyncio.gather(*(sender(c) for c in clients))
        wall = time.perf_counter() - started
    return latencies, answers, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--alerts", type=int, default=100, help="alerts per group")
    parser.add_argument("--deliveries", type=int, default=5, help="deliveries per group")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--database-url", default=None, help="an EMPTY PostgreSQL database")
    parser.add_argument(
        "--split-worker", action="store_true", help="irbot serve --no-worker + irbot worker"
    )
    args = parser.parse_args()
    requests = storm(args.groups, args.alerts, args.deliveries)
    total_alerts = args.groups * args.alerts

    with running_server(args.database_url, split_worker=args.split_worker) as server:
        print(f"irbot serve pid {server.pid} on {server.url}")
        time.sleep(2)  # let start-up settle (the action registry warms in a thread)
        rss_before = server.rss_mib()
        cpu0 = server.cpu_seconds()
        print(
            f"storm: {total_alerts} alerts in {args.groups} groups, {len(requests)} "
            f"deliveries, {args.concurrency} at a time; RSS before {rss_before:.1f} MiB"
        )
        latencies, answers, wall = asyncio.run(send(server, requests, args.concurrency))
        rss_answered = server.rss_mib()
        counts, waited = wait_runs(server, args.groups, 150)
        rss_settled = server.rss_mib()
        worker_rss = server.rss_mib(server.worker.pid) if server.worker is not None else None
        cpu = server.cpu_seconds() - cpu0
        runs = server.store().list_runs(limit=10 * args.groups)
        histogram = ack_histogram(server.url, "webhook:alertmanager")
        roots = len(
            [
                c
                for c in server.fake.since(0, "chat.postMessage")
                if not c.call.params.get("thread_ts")
            ]
        )

    group_keys = Counter(str(r.inputs.get("incident")) for r in runs)  # the groupKey
    print(f"\n== Alertmanager storm: {total_alerts} alerts, {args.groups} groups ==")
    print(f"deliveries answered in {wall:.2f} s ({len(requests) / wall:.0f}/s)")
    for answer, count in sorted(answers.items()):
        print(f"    {count:4d} x {answer}")
    print(f"ack latency (client-side): {summary(latencies)}")
    print(
        f"ack latency (server-side, irbot_ack_seconds): mean "
        f"{ms(histogram['sum'] / histogram['count'])}; <= 0.5 s: {histogram.get('0.5', 0):.0f}"
        f" of {histogram['count']:.0f}"
    )
    print(f"runs in the store: {len(runs)} {counts} (all finished {waited:.1f} s after the storm)")
    print(f"groups with a run: {len(group_keys)}; runs per group: {set(group_keys.values())}")
    print(f"Slack root messages posted by then: {roots} (the notifier paces 1 post/s/channel)")
    print(
        f"server RSS: before {rss_before:.1f} MiB, after the storm {rss_answered:.1f} MiB, "
        f"runs finished {rss_settled:.1f} MiB (+{rss_settled - rss_before:.1f} MiB)"
    )
    if worker_rss is not None:
        print(f"separate irbot worker RSS when the runs had finished: {worker_rss:.1f} MiB")
    print(f"server CPU during storm and runs: {cpu:.1f} s")
    verdict = "met" if len(runs) == args.groups else "NOT met"
    print(f"target: exactly {args.groups} runs: {len(runs)}: {verdict}")
    print(f"p99 ack {ms(percentile(latencies, 99))} (PagerDuty-style deadline share 500 ms)")


if __name__ == "__main__":
    main()
