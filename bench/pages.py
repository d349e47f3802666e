"""Timeline pages: ``GET /incidents/{id}`` for an incident with 5,000 events, and the list
page over 10,000 incidents.

Set-up: a fresh timeline store (SQLite by default; ``--postgres ADMIN_URL`` makes a
throw-away PostgreSQL database), filled directly through ``TimelineStore`` (5,000
``append`` calls shaped like a real leak-response run's events, ~300-byte payloads;
10,000 ``open_incident`` calls), then the real ``irbot serve --no-worker`` in its own
process (Slack pointed at the sandbox's fake Web API, which the pages never call).

Measured, one request at a time over a kept-alive connection (client-side time to the
whole body, on loopback):

* the incident page (HTML), timeline.md and timeline.json: p50/p99 and response size;
* the list page over 10,000 incidents: random pages (1..200, 50 per page), the first
  page, the last page, and a text search: p50/p99;
* in-process, where the incident page's time goes: ``store.verify()`` (the whole
  chain: every event of every incident), ``store.report()`` (its reads + that
  verification), ``render.incident_page()``.

Usage: cd bench && ../.venv/bin/python pages.py [--events 5000] [--incidents 10000]
       [--requests 50] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import secrets
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from _server import BOT_TOKEN, ROOT, SIGNING_SECRET, free_port, ms, percentile

from bot.core.timeline import NewEvent, event_id
from bot.sandbox.slack import FakeSlack
from bot.store import RunRecord, TimelineStore
from bot.web import render

WEB_TOKEN = "bench-web-token-0123456789abcdef"
DIGEST = "768dbcf77295b8efc88f67cbbffc42be6c366dd109931cf075a283d0795a8eff"


# --------------------------------------------------------------------------- data


def _payload(n: int) -> tuple[str, str | None, str, dict[str, Any]]:
    """(kind, step, actor, payload) of event ``n``: mostly steps, some votes and notes."""
    if n % 50 == 7:
        return (
            "approval.counted",
            "approve",
            "user:U02",
            {
                "gate": "approve",
                "vote": n,
                "user": "U02",
                "decision": "approve",
                "outcome": "counted",
                "reason": "U02 approved: 1 of 2: U02",
                "plan_digest": DIGEST,
                "approvers": ["U02"],
                "summary": "1 of 2: U02",
            },
        )
    if n % 50 == 13:
        return ("note", None, "user:U03", {"text": f"checked replica {n}: <b>healthy</b> & synced"})
    return (
        "step.succeeded",
        "restart",
        "irbot",
        {
            "action": "k8s.rollout_restart",
            "item": n,
            "attempt": 1,
            "attempts": 1,
            "args": {"name": f"svc-{n}", "namespace": "production", "wait": True},
            "outputs": {
                "name": f"svc-{n}",
                "namespace": "production",
                "restarted_at": "2026-11-28T17:04:52Z",
                "generation": 2,
                "status": "complete",
            },
            "duration_ms": 1000 + n % 900,
        },
    )


def fill(store: TimelineStore, events: int, incidents: int) -> str:
    """The big incident (returned id) with ``events`` events, then ``incidents`` more."""
    at = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    big = store.open_incident(key="bench-big", title="leak-response: 5000 deployments", at=at)
    store.record_run(
        RunRecord(
            id="run-bench-big",
            incident_id=big.id,
            playbook="leak-response",
            version=1,
            sha256="0" * 64,
            inputs={"secret_id": "prod/orders/db"},
            requester="U01",
            status="succeeded",
            created_at=at,
            updated_at=at + timedelta(hours=1),
            finished_at=at + timedelta(hours=1),
        )
    )
    started = time.perf_counter()
    for n in range(events):
        kind, step, actor, payload = _payload(n)
        store.append(
            NewEvent(
                id=event_id("bench-big", n),
                incident_id=big.id,
                kind=kind,
                actor=actor,
                at=at + timedelta(milliseconds=500 * n),
                run_id="run-bench-big",
                step_id=step,
                payload=payload,
            )
        )
    print(f"  {events} events appended in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    for n in range(incidents):
        opened = store.open_incident(
            key=f"bench-{n}",
            title=f"compromise-detection: access_key_id=AKIAEXAMPLE{n:06d}",
            playbook="compromise-detection",
            at=at + timedelta(minutes=n),
        )
        if n % 3 == 0:
            store.set_incident_status(opened.id, "resolved", at + timedelta(minutes=n + 30))
    print(f"  {incidents} incidents opened in {time.perf_counter() - started:.1f} s")
    return big.id


# --------------------------------------------------------------------------- server


@contextmanager
def postgres_database(admin_url: str | None) -> Iterator[str | None]:
    """A throw-away database on the server of ``admin_url`` (dropped at the end)."""
    if admin_url is None:
        yield None
        return
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    name = f"irbot_bench_pages_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextmanager
def serve(root: Path, database_url: str | None) -> Iterator[str]:
    """``irbot serve --no-worker`` on a free port, reading the filled store."""
    (root / "playbooks").mkdir(exist_ok=True)
    (root / "irbot.yaml").write_text("slack: {channel: C0BENCH}\ngroups: {sre: [U01]}\n")
    with FakeSlack() as fake:
        env = {k: v for k, v in os.environ.items() if k != "IRBOT_DATABASE_URL"}
        env |= {
            "IRBOT_DATA_DIR": str(root / "data"),
            "IRBOT_CONFIG": str(root / "irbot.yaml"),
            "IRBOT_PLAYBOOKS": str(root / "playbooks"),
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake.url,
            "IRBOT_WEB_TOKEN": WEB_TOKEN,
        }
        if database_url:
            env["IRBOT_DATABASE_URL"] = database_url
        port = free_port()
        log = root / "serve.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    str(ROOT / ".venv" / "bin" / "irbot"),
                    "serve",
                    "--port",
                    str(port),
                    "--no-worker",
                ],
                env=env,
                cwd=root,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"irbot serve exited:\n{log.read_text()}")
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"irbot serve not ready:\n{log.read_text()}")
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


# --------------------------------------------------------------------------- figures


def timed(http: httpx.Client, paths: Callable[[int], str], n: int) -> tuple[list[float], int, int]:
    """``n`` GETs (one at a time); client-side seconds each, and the last body's size
    (decoded, and as sent: gzip when the page is large)."""
    http.get(paths(0))  # warm-up: templates compiled, connections open
    latencies: list[float] = []
    size = wire = 0
    for i in range(n):
        started = time.perf_counter()
        response = http.get(paths(i))
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"{paths(i)}: {response.status_code} {response.text[:200]}")
        size, wire = len(response.content), response.num_bytes_downloaded
    return latencies, size, wire


def line(what: str, latencies: list[float], size: int | None = None, wire: int = 0) -> None:
    figures = (
        f"p50 {ms(percentile(latencies, 50))}  p99 {ms(percentile(latencies, 99))}  "
        f"max {ms(max(latencies))}  (n={len(latencies)})"
    )
    sized = f"  {size / 1024:.0f} KiB" if size is not None else ""
    if wire and wire != size:
        sized += f" ({wire / 1024:.0f} KiB sent, gzip)"
    print(f"  {what:<44} {figures}{sized}")


def in_process(store: TimelineStore, incident: str, rounds: int) -> None:
    """Where the incident page's time goes, measured in this process."""
    read: list[float] = []
    verify: list[float] = []
    report: list[float] = []
    html: list[float] = []
    rep = store.report(incident)
    for _ in range(rounds):
        started = time.perf_counter()
        store.events(incident_id=incident)
        read.append(time.perf_counter() - started)
        started = time.perf_counter()
        store.verify()
        verify.append(time.perf_counter() - started)
        started = time.perf_counter()
        rep = store.report(incident)
        report.append(time.perf_counter() - started)
        started = time.perf_counter()
        page = render.incident_page(rep)
        html.append(time.perf_counter() - started)
    size = len(page.encode())
    print("in process (this interpreter):")
    line("store.events(incident) (the page's rows)", read)
    line("store.verify() (whole chain)", verify)
    line("store.report() (reads + verify)", report)
    line("render.incident_page()", html, size)
    print(f"  gzip of the page: {len(gzip.compress(page.encode())) / 1024:.0f} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--incidents", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--list-requests", type=int, default=200)
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="run on PostgreSQL")
    args = parser.parse_args()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"(machine load average before the start, 1/5/15 min: {load})")
    root = Path(tempfile.mkdtemp(prefix="irbot-bench-pages-"))
    with postgres_database(args.postgres) as database_url:
        url = database_url or f"sqlite:///{root / 'data' / 'irbot.sqlite'}"
        (root / "data").mkdir(parents=True, exist_ok=True)
        print(f"backend: {'PostgreSQL' if database_url else 'SQLite'}; filling the store")
        store = TimelineStore(url)
        store.migrate()
        try:
            big = fill(store, args.events, args.incidents)
            in_process(store, big, max(5, args.requests // 5))
        finally:
            store.close()
        pages = args.incidents // 50 + 1
        rng = random.Random(7)
        with (
            serve(root, database_url) as base,
            httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {WEB_TOKEN}"}, timeout=120
            ) as http,
        ):
            print(f"irbot serve --no-worker, one request at a time ({args.events} events):")
            for suffix in ("", "/timeline.md", "/timeline.json"):
                what = f"GET /incidents/{big}{suffix}"
                line(what, *timed(http, lambda _i, s=suffix: f"/incidents/{big}{s}", args.requests))
            print(f"list page over {args.incidents + 1} incidents (50 per page, {pages} pages):")
            n = args.list_requests
            line("GET /incidents (page 1)", *timed(http, lambda _i: "/incidents", n))
            line(
                "GET /incidents?page=<random 1..last>",
                *timed(http, lambda _i: f"/incidents?page={rng.randint(1, pages)}", n),
            )
            line(
                "GET /incidents?page=<last>", *timed(http, lambda _i: f"/incidents?page={pages}", n)
            )
            line(
                "GET /incidents?state=resolved&page=<random>",
                *timed(
                    http,
                    lambda _i: f"/incidents?state=resolved&page={rng.randint(1, pages // 3)}",
                    n,
                ),
            )
            line(
                "GET /incidents?q=AKIAEXAMPLE00123 (search)",
                *timed(http, lambda _i: "/incidents?q=AKIAEXAMPLE00123", n),
            )


if __name__ == "__main__":
    main()
