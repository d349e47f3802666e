"""Shared set-up for the server benchmarks: ``irbot serve`` in a process of its own.

The load generator (raw HTTP/1.1 senders, this process) and the server share the 2-core machine, but
not a GIL or an event loop: the server is the real ``irbot serve --port P`` subprocess,
configured through its environment like a deployment. Its outgoing Slack calls go to
the sandbox's fake Web API, started here, which records *when* each call arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.sandbox.slack import Answer, Call, FakeSlack  # noqa: E402

BOT_TOKEN = "xoxb-bench-0000000000-0000000000000-benchbenchbenchbenchbench"
SIGNING_SECRET = "bench-signing-secret-0123456789abcdef"
PD_SECRET = "bench-pagerduty-webhook-secret"
AM_TOKEN = "bench-alertmanager-token"
CHANNEL = "C0INCIDENTS"
PLAYBOOK = "bench-respond"
AM_ALERTNAME = "BenchStorm"

PLAYBOOK_TEXT = f"""
name: {PLAYBOOK}
version: 1
inputs:
  incident: {{type: string, default: none}}
  title: {{type: string, default: bench}}
steps:
  - id: triage
    action: test.noop
    with: {{msg: "{{{{ inputs.incident }}}}: {{{{ inputs.title }}}}"}}
  - id: contain
    action: test.noop
    with: {{msg: contained}}
"""

CONFIG_TEXT = f"""
slack: {{channel: {CHANNEL}}}
groups: {{sre: [U01, U02, U03], security: [U04]}}
playbooks:
  {PLAYBOOK}: {{start: [sre]}}
triggers:
  - source: pagerduty
    playbook: {PLAYBOOK}
    inputs: {{incident: "{{{{ event.incident_id }}}}", title: "{{{{ event.title }}}}"}}
  - source: alertmanager
    playbook: {PLAYBOOK}
    match: {{alertname: {AM_ALERTNAME}}}
    inputs: {{incident: "{{{{ event.group_key }}}}", title: "{{{{ event.alertname }}}}"}}
"""


# --------------------------------------------------------------------------- fake Slack


@dataclass(frozen=True)
class Timed:
    """A Web API call and when it reached the fake (before it was answered)."""

    at: float
    """``time.monotonic()`` of this process."""
    wall: float
    """``time.time()``, to line up with timeline event times written by the server."""
    call: Call


class TimedFakeSlack(FakeSlack):
    """The sandbox fake, recording the arrival time of every call."""

    def __init__(self) -> None:
        self.timed: list[Timed] = []
        self._timed_lock = threading.Lock()
        super().__init__()

    def answer(self, call: Call) -> tuple[int, Answer, dict[str, str]]:
        stamp = Timed(time.monotonic(), time.time(), call)
        with self._timed_lock:
            self.timed.append(stamp)
        return super().answer(call)

    def since(self, at: float, method: str | None = None) -> list[Timed]:
        """Calls (of ``method``) that arrived at or after monotonic time ``at``."""
        with self._timed_lock:
            return [t for t in self.timed if t.at >= at and (method in (None, t.call.method))]

    def last_call_at(self) -> float:
        with self._timed_lock:
            return self.timed[-1].at if self.timed else 0.0


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running ``irbot serve`` and the fake Slack it talks to."""

    url: str
    proc: subprocess.Popen[bytes]
    root: Path
    env: dict[str, str]
    fake: TimedFakeSlack
    log_path: Path
    worker: subprocess.Popen[bytes] | None = None
    """The separate ``irbot worker`` (``split_worker``), else None."""
    _store: Any = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mib(self, pid: int | None = None) -> float:
        """The server process's (or ``pid``'s) resident set (VmRSS in /proc), in MiB."""
        for line in Path(f"/proc/{pid or self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS line")

    def cpu_seconds(self, pid: int | None = None) -> float:
        """User + system CPU time of the server process (or ``pid``) so far, all threads."""
        stat = Path(f"/proc/{pid or self.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def worker_cpu_seconds(self) -> float:
        """CPU time of the separate worker process (0 without one)."""
        return self.cpu_seconds(self.worker.pid) if self.worker is not None else 0.0

    def store(self) -> Any:
        """The server's timeline store, opened from this process (read-only use)."""
        if self._store is None:
            from bot.engine.runtime import open_store
            from bot.settings import load_settings

            os.environ.update({k: v for k, v in self.env.items() if k.startswith("IRBOT_")})
            if "IRBOT_DATABASE_URL" not in self.env:
                os.environ.pop("IRBOT_DATABASE_URL", None)
            self._store = open_store(load_settings())
        return self._store

    def runs_by_status(self) -> dict[str, int]:
        return dict(self.store().count_runs_by_status())


def install(root: Path, database_url: str | None) -> dict[str, str]:
    """Playbook, irbot.yaml (with trigger routes) and the server's environment."""
    (root / "playbooks").mkdir(parents=True, exist_ok=True)
    (root / "playbooks" / f"{PLAYBOOK}.yaml").write_text(textwrap.dedent(PLAYBOOK_TEXT).lstrip())
    (root / "irbot.yaml").write_text(textwrap.dedent(CONFIG_TEXT).lstrip())
    env = {
        "IRBOT_DATA_DIR": str(root / "data"),
        "IRBOT_CONFIG": str(root / "irbot.yaml"),
        "IRBOT_PLAYBOOKS": str(root / "playbooks"),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "PAGERDUTY_WEBHOOK_SECRET": PD_SECRET,
        "ALERTMANAGER_TOKEN": AM_TOKEN,
    }
    if database_url:
        env["IRBOT_DATABASE_URL"] = database_url
    return env


@contextmanager
def running_server(
    database_url: str | None = None, *, split_worker: bool = False, ready_timeout: float = 90
) -> Iterator[Server]:
    """Start the fake Slack and ``irbot serve`` on a free port; stop both at the end.

    ``split_worker``: runs are executed by a separate ``irbot worker`` process and the
    server runs ``--no-worker`` (the engine's queue pollers then live in the worker).
    """
    root = Path(tempfile.mkdtemp(prefix="irbot-bench-server-"))
    env = install(root, database_url)
    fake = TimedFakeSlack().start()
    env["SLACK_API_URL"] = fake.url
    port = free_port()
    full = {k: v for k, v in os.environ.items() if k not in ("IRBOT_DATABASE_URL",)}
    full.update(env)
    irbot = str(ROOT / ".venv" / "bin" / "irbot")
    log_path = root / "server.log"
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [irbot, *args], env=full, stdout=out, stderr=subprocess.STDOUT, cwd=root
            )
        procs.append(proc)
        return proc

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"(machine load average before the start, 1/5/15 min: {load})")
    server: Server | None = None
    try:
        worker = None
        if split_worker:
            worker = spawn(["worker"], root / "worker.log")
            _wait_for_line(worker, root / "worker.log", "irbot worker ready", ready_timeout)
        serve = ["serve", "--port", str(port)] + (["--no-worker"] if split_worker else [])
        proc = spawn(serve, log_path)
        server = Server(f"http://127.0.0.1:{port}", proc, root, env, fake, log_path)
        server.worker = worker
        _wait_ready(server, ready_timeout)
        yield server
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if server is not None and server._store is not None:
            server._store.close()
        fake.stop()


def _wait_for_line(proc: subprocess.Popen[bytes], log: Path, line: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if line in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"irbot exited:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"no {line!r} in {timeout} s:\n{log.read_text()[-3000:]}")


def _wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"irbot serve exited:\n{server.log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"irbot serve not ready in {timeout} s:\n{server.log_path.read_text()}")


# --------------------------------------------------------------------------- senders


class SlackSigner:
    """Slash-command requests signed as Slack signs them (v0 HMAC-SHA256)."""

    def __init__(self, fake_url: str) -> None:
        self.fake_url = fake_url
        self._ids = itertools.count(1)

    def command(self, text: str, user: str = "U01") -> tuple[bytes, dict[str, str]]:
        n = next(self._ids)
        body = urlencode(
            {
                "token": "legacy-verification-token",
                "team_id": "T0IRBOT01",
                "team_domain": "irbot-bench",
                "channel_id": CHANNEL,
                "channel_name": "incidents",
                "user_id": user,
                "user_name": user.lower(),
                "command": "/incident",
                "text": text,
                "api_app_id": "A0IRBOT01",
                "response_url": f"{self.fake_url}response/{n}",
                "trigger_id": f"{n}.1.trigger",
            }
        ).encode()
        ts = str(int(time.time()))
        base = b"v0:" + ts.encode() + b":" + body
        digest = hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": f"v0={digest}",
        }
        return body, headers


def pagerduty_triggered(n: int, tag: str = "bench") -> tuple[bytes, dict[str, str]]:
    """A signed PagerDuty v3 ``incident.triggered`` with its own event and incident id."""
    incident = f"Q{tag.upper()}{n:06d}"
    body = json.dumps(
        {
            "event": {
                "id": f"01{tag.upper()}EV{n:08d}",
                "event_type": "incident.triggered",
                "resource_type": "incident",
                "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "data": {
                    "id": incident,
                    "type": "incident",
                    "number": n,
                    "status": "triggered",
                    "title": f"GuardDuty: anomalous API calls ({tag} {n})",
                    "service": {"id": "PSVC123", "summary": "cs-mcp production"},
                    "escalation_policy": {"id": "PESC001", "summary": "SRE"},
                    "urgency": "high",
                },
            }
        }
    ).encode()
    signature = hmac.new(PD_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-PagerDuty-Signature": f"v1={signature}",
        "X-Webhook-Id": f"bench-{tag}-{n:08d}",
    }
    return body, headers


def alertmanager_group(group: int, alerts: range) -> tuple[bytes, dict[str, str]]:
    """An Alertmanager v4 firing delivery of group ``group`` carrying ``alerts``."""
    labels = {"alertname": AM_ALERTNAME, "cluster": f"c{group:03d}"}
    body = json.dumps(
        {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{AM_ALERTNAME}", cluster="c{group:03d}"}}',
            "status": "firing",
            "receiver": "irbot",
            "groupLabels": labels,
            "commonLabels": labels,
            "commonAnnotations": {"summary": "bench storm"},
            "externalURL": "http://alertmanager.bench:9093",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"instance": f"i-{group:03d}-{i:05d}", "secret_id": f"s/{i}"},
                    "annotations": {},
                    "startsAt": "2026-11-28T09:00:00Z",
                    "fingerprint": f"{group:03d}{i:013x}",
                }
                for i in alerts
            ],
        }
    ).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {AM_TOKEN}"}
    return body, headers


# --------------------------------------------------------------------------- figures


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 200 samples is the 198th smallest)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def summary(values: Sequence[float]) -> str:
    return (
        f"n={len(values)} min={ms(min(values))} p50={ms(percentile(values, 50))} "
        f"p95={ms(percentile(values, 95))} p99={ms(percentile(values, 99))} max={ms(max(values))}"
    )


class HttpAnswer:
    """What a :class:`Sender` got back: enough of httpx.Response for the benchmarks."""

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Sender:
    """One kept-alive HTTP/1.1 connection, requests written as prepared bytes.

    The load generator shares the 2 cores with the server, so its own cost per request
    is part of every client-side figure. httpx spent ~0.8 ms of CPU per request (and a
    pooled client with 200 connections ~15 ms); this sender writes one buffer and reads
    a Content-Length framed answer (the server never chunks these), ~0.1 ms.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()

    def prepare(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        method = "GET" if path == "/healthz" else "POST"
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "content-length"]
        if method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body if method == "POST" else b"")

    async def send(self, raw: bytes) -> HttpAnswer:
        if self._reader is None or self._writer is None:
            raise RuntimeError("connect() first")
        self._writer.write(raw)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        content = await self._reader.readexactly(length) if length else b""
        return HttpAnswer(int(status_line.split()[1]), content)


async def timed_post(
    http: Sender, path: str, body: bytes, headers: dict[str, str]
) -> tuple[float, HttpAnswer]:
    """Client-side time from sending ``body`` to having the whole response (an empty
    body to ``/healthz`` is a GET: the measurement's own floor). The request bytes are
    prepared before the clock starts."""
    raw = http.prepare(path, body, headers)
    started = time.perf_counter()
    response = await http.send(raw)
    return time.perf_counter() - started, response


@asynccontextmanager
async def client(url: str) -> AsyncIterator[Sender]:
    """One connected :class:`Sender` to ``url`` (``http://host:port``)."""
    host, _, port = url.removeprefix("http://").partition(":")
    sender = Sender(host, int(port))
    await sender.connect()
    try:
        yield sender
    finally:
        await sender.close()


@asynccontextmanager
async def senders(url: str, n: int) -> AsyncIterator[list[Sender]]:
    """``n`` independent senders, each one open connection (connected before the burst),
    so a burst is ``n`` requests in flight at once."""
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(client(url)) for _ in range(n)]
        yield clients


def ack_histogram(url: str, route: str) -> dict[str, float]:
    """The server's own ``irbot_ack_seconds`` buckets (request start -> first byte) for
    ``route`` (``slack``, ``webhook:pagerduty``…), with ``count`` and ``sum``."""
    found: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if not line.startswith("irbot_ack_seconds") or f'route="{route}"' not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if "_bucket" in name:
            found[name.split('le="')[1].split('"')[0]] = float(value)
        elif name.startswith("irbot_ack_seconds_count"):
            found["count"] = float(value)
        elif name.startswith("irbot_ack_seconds_sum"):
            found["sum"] = float(value)
    return found


FINISHED = frozenset({"succeeded", "failed", "rejected", "cancelled", "expired"})


def wait_runs(server: Server, total: int, timeout: float) -> tuple[dict[str, int], float]:
    """Wait until ``total`` runs exist and all have finished (or ``timeout``); returns
    the counts by status and the seconds waited."""
    started = time.monotonic()
    counts = server.runs_by_status()
    while time.monotonic() - started < timeout:
        counts = server.runs_by_status()
        done = sum(n for status, n in counts.items() if status in FINISHED)
        if sum(counts.values()) >= total and done == sum(counts.values()):
            break
        time.sleep(0.2)
    return counts, time.monotonic() - started
