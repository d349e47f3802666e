"""Ack latency of ``irbot serve`` under 200 concurrent requests.

Three bursts against the real server (its own process), each of ``--concurrency``
requests sent at once from one httpx.AsyncClient over already-open connections; the
figure is the client-side time from sending a request to having its whole response:

  * Slack ``/incident status`` (read-only: open incidents and what waits for the user);
  * Slack ``/incident run bench-respond`` (each starts a run; Bolt acks inside the
    command's budget, ``bot/slack/commands.py`` ACK_BUDGET = 1.5 s);
  * PagerDuty ``incident.triggered`` deliveries, signed, distinct event and incident ids
    (each answered 202 and starting a run after the answer).

Targets (issue 5): p99 <= 10% of the sender's deadline: 300 ms for Slack (3 s),
500 ms for PagerDuty (5 s). Between bursts the runs of the previous one are left to
finish, so each burst meets an idle server.

Usage: cd bench && ../.venv/bin/python server_ack.py [--concurrency 200]
       [--database-url postgresql://…/empty_db]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Callable

import httpx
from _server import (
    PLAYBOOK,
    Server,
    SlackSigner,
    client,
    ms,
    pagerduty_triggered,
    percentile,
    running_server,
    summary,
    timed_post,
    wait_runs,
    warm_connections,
)

Request = tuple[str, bytes, dict[str, str]]


async def burst(
    server: Server, requests: list[Request], classify: Callable[[httpx.Response], str]
) -> tuple[list[float], Counter[str], float]:
    """Send all ``requests`` at once; latencies, outcome counts and the burst's wall."""
    async with client(server.url, len(requests)) as http:
        await warm_connections(http, len(requests))
        started = time.perf_counter()
        done = await asyncio.gather(*(timed_post(http, p, b, h) for p, b, h in requests))
        wall = time.perf_counter() - started
    return [t for t, _ in done], Counter(classify(r) for _, r in done), wall


async def sequential(server: Server, requests: list[Request]) -> None:
    """Warm-up: a few requests one by one (first-use imports and caches)."""
    async with client(server.url, 1) as http:
        for path, body, headers in requests:
            response = await http.post(path, content=body, headers=headers)
            assert response.status_code < 300, response.text


def slack_outcome(response: httpx.Response) -> str:
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    text = str(response.json().get("text", "")) if response.content else ""
    if "Started" in text:
        return "200 started (answer in the ack)"
    if "Starting" in text:
        return "200 starting (budget ran out; answer via response_url)"
    if "open incident" in text:
        return "200 status"
    return "200 other: " + text[:60]


def webhook_outcome(response: httpx.Response) -> str:
    return f"{response.status_code} {response.json().get('status', response.text[:60])}"


def report(name: str, latencies: list[float], outcomes: Counter[str], wall: float) -> None:
    print(f"{name}: {summary(latencies)}; burst wall {wall:.2f} s")
    for outcome, count in sorted(outcomes.items()):
        print(f"    {count:4d} x {outcome}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--database-url", default=None, help="an EMPTY PostgreSQL database")
    args = parser.parse_args()
    n = args.concurrency

    with running_server(args.database_url) as server:
        signer = SlackSigner(server.fake.url)
        print(f"irbot serve pid {server.pid} on {server.url}; RSS {server.rss_mib():.0f} MiB")
        warm: list[Request] = [("/slack/events", *signer.command("status")) for _ in range(3)]
        warm += [("/slack/events", *signer.command(f"run {PLAYBOOK}")) for _ in range(2)]
        warm += [("/webhooks/pagerduty", *pagerduty_triggered(i, "warm")) for i in range(2)]
        asyncio.run(sequential(server, warm))
        wait_runs(server, 4, 60)

        results = {}
        status = [("/slack/events", *signer.command("status")) for _ in range(n)]
        results["slack /incident status"] = asyncio.run(burst(server, status, slack_outcome))

        runs = [
            ("/slack/events", *signer.command(f"run {PLAYBOOK} incident=slack-{i}"))
            for i in range(n)
        ]
        results["slack /incident run"] = asyncio.run(burst(server, runs, slack_outcome))
        counts, waited = wait_runs(server, 4 + n, 120)
        print(f"(runs after the /incident run burst: {counts}, settled in {waited:.1f} s)")

        deliveries = [("/webhooks/pagerduty", *pagerduty_triggered(i)) for i in range(n)]
        results["pagerduty incident.triggered"] = asyncio.run(
            burst(server, deliveries, webhook_outcome)
        )
        counts, waited = wait_runs(server, 4 + 2 * n, 120)
        print(f"(runs after the PagerDuty burst: {counts}, settled in {waited:.1f} s)")
        print(f"server RSS at the end {server.rss_mib():.0f} MiB")

    print(f"\n== ack latency, {n} concurrent requests (client-side) ==")
    for name, (latencies, outcomes, wall) in results.items():
        report(name, latencies, outcomes, wall)
    targets = {
        "slack /incident status": 0.300,
        "slack /incident run": 0.300,
        "pagerduty incident.triggered": 0.500,
    }
    for name, target in targets.items():
        p99 = percentile(results[name][0], 99)
        verdict = "met" if p99 <= target else "NOT met"
        print(f"target {name}: p99 {ms(p99)} <= {ms(target)}: {verdict}")


if __name__ == "__main__":
    main()
