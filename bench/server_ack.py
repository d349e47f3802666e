"""Ack latency of ``irbot serve`` under 200 concurrent requests.

Bursts against the real server (its own process), each of ``--concurrency``
requests sent at once by as many senders over already-open connections (see
``_server.Sender``: prepared request bytes on a raw connection, so the load generator
costs little CPU); the figure is the client-side time from sending
a request to having its whole response, next to the server's own ack histogram:

  * ``GET /healthz``: the floor of the measurement (the load generator shares the 2
    cores; see ``_server.Sender``);
  * Slack ``/incident help`` (no database: the floor of a Slack request);
  * Slack ``/incident status`` (read-only: open incidents and what waits for the user);
  * Slack ``/incident run bench-respond`` (each starts a run; Bolt acks inside the
    command's budget, ``bot/slack/commands.py`` ACK_BUDGET);
  * PagerDuty ``incident.triggered`` deliveries, signed, distinct event and incident ids
    (each answered 202 and starting a run after the answer).

Targets (issue 5): p99 <= 10% of the sender's deadline: 300 ms for Slack (3 s),
500 ms for PagerDuty (5 s). Between bursts the runs of the previous one are left to
finish, so each burst meets an idle server.

``--split-worker`` runs the engine in a separate ``irbot worker`` process and the server
with ``--no-worker`` (a supported deployment): the server then only answers.

Usage: cd bench && ../.venv/bin/python server_ack.py [--concurrency 200] [--split-worker]
       [--database-url postgresql://…/empty_db]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from _server import (
    PLAYBOOK,
    HttpAnswer,
    Server,
    SlackSigner,
    ack_histogram,
    client,
    ms,
    pagerduty_triggered,
    percentile,
    running_server,
    senders,
    summary,
    timed_post,
    wait_runs,
)

Request = tuple[str, bytes, dict[str, str]]


@dataclass
class Burst:
    latencies: list[float]
    outcomes: Counter[str]
    wall: float
    server_cpu: float
    """CPU seconds the server process used during the burst (all threads)."""
    client_cpu: float
    """CPU seconds this process (load generator and fake Slack) used during the burst."""
    worker_cpu: float
    """CPU seconds of the separate ``irbot worker`` (``--split-worker``), else 0."""
    server_side: dict[str, float]
    """The burst's share of the server's ack histogram (bucket -> count, count, sum)."""


async def burst(
    server: Server,
    requests: list[Request],
    classify: Callable[[HttpAnswer], str],
    route: str,
) -> Burst:
    """Send all ``requests`` at once, one sender each; latencies, outcomes, wall, CPU of
    both sides, and what the server's own ack histogram saw."""
    async with senders(server.url, len(requests)) as clients:
        before = await asyncio.to_thread(ack_histogram, server.url, route)
        cpu0, mine0, work0 = server.cpu_seconds(), time.process_time(), server.worker_cpu_seconds()
        started = time.perf_counter()
        done = await asyncio.gather(
            *(timed_post(c, p, b, h) for c, (p, b, h) in zip(clients, requests, strict=True))
        )
        wall = time.perf_counter() - started
        cpu1, mine1, work1 = server.cpu_seconds(), time.process_time(), server.worker_cpu_seconds()
        after = await asyncio.to_thread(ack_histogram, server.url, route)
    outcomes = Counter(classify(r) for _, r in done)
    seen = {k: v - before.get(k, 0.0) for k, v in after.items()}
    latencies = [t for t, _ in done]
    return Burst(latencies, outcomes, wall, cpu1 - cpu0, mine1 - mine0, work1 - work0, seen)


async def sequential(server: Server, requests: list[Request], pause: float = 0.0) -> list[float]:
    """Requests one by one (warm-up, and the unloaded baseline); their latencies."""
    latencies = []
    async with client(server.url) as http:
        for path, body, headers in requests:
            took, response = await timed_post(http, path, body, headers)
            assert response.status_code < 300, response.text
            latencies.append(took)
            await asyncio.sleep(pause)
    return latencies


def slack_outcome(response: HttpAnswer) -> str:
    if response.status_code == 404:
        return "404 (Bolt saw no ack() within its 3 s: Slack shows the user an error)"
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    text = str(response.json().get("text", "")) if response.content else ""
    if text.startswith("*irbot*"):
        return "200 help"
    if "Started" in text:
        return "200 started (answer in the ack)"
    if "Starting" in text:
        return "200 starting (budget ran out; answer via response_url)"
    if "open incident" in text:
        return "200 status"
    if "Working on it" in text:
        return "200 working (budget ran out; answer via response_url)"
    return "200 other: " + text[:60]


def health_outcome(response: HttpAnswer) -> str:
    return f"{response.status_code} {response.text}"


def webhook_outcome(response: HttpAnswer) -> str:
    return f"{response.status_code} {response.json().get('status', response.text[:60])}"


def report(name: str, result: Burst) -> None:
    n = len(result.latencies)
    print(f"{name}: {summary(result.latencies)}")
    print(
        f"    burst wall {result.wall:.2f} s ({n / result.wall:.0f} req/s); server CPU "
        f"{result.server_cpu:.2f} s ({result.server_cpu / n * 1000:.1f} ms/request); "
        f"load generator CPU {result.client_cpu:.2f} s"
        + (f"; worker CPU {result.worker_cpu:.2f} s" if result.worker_cpu else "")
    )
    seen = result.server_side
    if seen.get("count"):
        print(
            f"    server-side (irbot_ack_seconds): mean {ms(seen['sum'] / seen['count'])}; "
            + ", ".join(f"<= {le} s: {seen.get(le, 0):.0f}" for le in ("0.1", "0.3", "0.5", "1.0"))
        )
    for outcome, count in sorted(result.outcomes.items()):
        print(f"    {count:4d} x {outcome}")


def settle(server: Server, what: str) -> None:
    """Wait for every run started so far to finish."""
    total = sum(server.runs_by_status().values())
    counts, waited = wait_runs(server, total, 120)
    print(f"    (runs after {what}: {counts}; finished {waited:.1f} s later)")


def quiet(server: Server, idle: float) -> None:
    """Wait until the server (and worker) use at most ``idle`` + 5% of a core over a
    second: the previous burst's late answers (through response_url, four at a time)
    and its runs are done, so each burst meets an idle server."""
    began = time.monotonic()
    while time.monotonic() - began < 120:
        cpu0 = server.cpu_seconds() + server.worker_cpu_seconds()
        time.sleep(1)
        if server.cpu_seconds() + server.worker_cpu_seconds() - cpu0 <= idle + 0.05:
            break
    print(f"    (server quiet after {time.monotonic() - began:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--baseline", type=int, default=20, help="one-by-one requests per kind")
    parser.add_argument("--database-url", default=None, help="an EMPTY PostgreSQL database")
    parser.add_argument(
        "--split-worker", action="store_true", help="irbot serve --no-worker + irbot worker"
    )
    args = parser.parse_args()
    n = args.concurrency

    with running_server(args.database_url, split_worker=args.split_worker) as server:
        signer = SlackSigner(server.fake.url)

        def status() -> Request:
            return ("/slack/events", *signer.command("status"))

        def helps() -> Request:
            return ("/slack/events", *signer.command("help"))

        def run(i: int) -> Request:
            return ("/slack/events", *signer.command(f"run {PLAYBOOK} incident=slack-{i}"))

        def page(i: int, tag: str) -> Request:
            return ("/webhooks/pagerduty", *pagerduty_triggered(i, tag))

        print(f"irbot serve pid {server.pid} on {server.url}; RSS {server.rss_mib():.0f} MiB")
        asyncio.run(sequential(server, [status(), run(-1), page(-1, "warm")]))  # first use
        settle(server, "warm-up")
        cpu0, work0 = server.cpu_seconds(), server.worker_cpu_seconds()
        time.sleep(5)
        idle = (server.cpu_seconds() - cpu0) / 5
        idle_worker = (server.worker_cpu_seconds() - work0) / 5

        print(
            f"idle CPU: server {idle * 100:.0f}% of one core"
            + (f", worker {idle_worker * 100:.0f}%" if args.split_worker else "")
        )

        b = args.baseline
        baseline = {
            "slack /incident status": asyncio.run(
                sequential(server, [status() for _ in range(b)], 0.1)
            ),
            "slack /incident run": asyncio.run(
                sequential(server, [run(-2 - i) for i in range(b)], 0.1)
            ),
            "pagerduty incident.triggered": asyncio.run(
                sequential(server, [page(i, "one") for i in range(b)], 0.1)
            ),
        }
        settle(server, "the one-by-one baseline")

        results: dict[str, Burst] = {}
        quiet(server, idle + idle_worker)
        print(f"burst: {n} x GET /healthz (the floor of the measurement itself)")
        results["GET /healthz"] = asyncio.run(
            burst(server, [("/healthz", b"", {}) for _ in range(n)], health_outcome, "none")
        )
        quiet(server, idle + idle_worker)
        print(f"burst: {n} x /incident help (the floor: signature, Bolt, no database)")
        results["slack /incident help"] = asyncio.run(
            burst(server, [helps() for _ in range(n)], slack_outcome, "slack")
        )
        quiet(server, idle + idle_worker)
        print(f"burst: {n} x /incident status")
        results["slack /incident status"] = asyncio.run(
            burst(server, [status() for _ in range(n)], slack_outcome, "slack")
        )
        quiet(server, idle + idle_worker)
        print(f"burst: {n} x /incident run")
        results["slack /incident run"] = asyncio.run(
            burst(server, [run(i) for i in range(n)], slack_outcome, "slack")
        )
        settle(server, "the /incident run burst")
        quiet(server, idle + idle_worker)
        print(f"burst: {n} x PagerDuty incident.triggered")
        results["pagerduty incident.triggered"] = asyncio.run(
            burst(
                server, [page(i, "burst") for i in range(n)], webhook_outcome, "webhook:pagerduty"
            )
        )
        settle(server, "the PagerDuty burst")
        print(f"server RSS at the end {server.rss_mib():.0f} MiB")

    print_results(baseline, results, n)


def print_results(baseline: dict[str, list[float]], results: dict[str, Burst], n: int) -> None:
    print(f"\n== one by one ({len(next(iter(baseline.values())))} each, unloaded server) ==")
    for name, latencies in baseline.items():
        print(f"{name}: {summary(latencies)}")
    print(f"\n== ack latency, {n} concurrent requests (client-side) ==")
    for name, result in results.items():
        report(name, result)
    targets = {
        "slack /incident help": 0.300,
        "slack /incident status": 0.300,
        "slack /incident run": 0.300,
        "pagerduty incident.triggered": 0.500,
    }
    for name, target in targets.items():
        p99 = percentile(results[name].latencies, 99)
        verdict = "met" if p99 <= target else "NOT met"
        print(f"target {name}: p99 {ms(p99)} <= {ms(target)}: {verdict}")


if __name__ == "__main__":
    main()
