"""Canary secrets: planted where secrets get into irbot, searched for in every sink.

Where they are planted:

- **run inputs**: a secret pasted into an input (an input named ``password``, a database
  URL with its password, a Slack token, an AWS secret key) on the command line;
- **action outputs, error messages and exceptions**: ``test.secret`` reads a value by
  reference (an environment variable, as real actions resolve an ARN), marks it secret,
  logs it, logs an exception carrying it, and then returns it, fails with it in the
  message or crashes with it;
- **configuration**: the Slack bot token and signing secret, the pages' access token.

Where they are searched (:class:`Sinks`): the logs of every `irbot` process (the server,
`irbot run --wait`, the CLI) and the in-process structlog output, every request the fake
Slack received, every timeline event, the raw bytes of the database files, the CLI's
views (`irbot timeline` in every format, `irbot runs`, `irbot playbook plan`) and the
timeline pages served by `irbot serve`. A new sink is one line: an entry in
:data:`CLI_VIEWS`, :data:`INCIDENT_VIEWS` or :data:`PAGES`, or one ``sinks.add``.

Real parts: `irbot serve` as a process (worker, notifier, pages) on a free port, the fake
Slack Web API server, SQLite files, the real engine in-process for the structlog output.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bot import logs
from bot.core.redaction import MASK
from bot.engine import runtime
from bot.slack.notifier import CURSOR
from tests.engine_support import IRBOT, Harness
from tests.fake_slack import BOT_TOKEN, FakeSlack, fake_slack_fixture  # noqa: F401
from tests.serving import free_port, wait_ready
from tests.test_slack_app_support import SIGNING_SECRET, teach

WEB_TOKEN = "web-canary-" + secrets.token_hex(12)

CANARY = """
name: canary
version: 1
inputs:
  then: {type: enum, values: [return, fail, crash], default: return}
steps:
  - id: announce
    action: slack.post
    with: {text: "canary run ({{ inputs.then }})"}
  - id: read
    action: test.secret
    for_each: [CANARY_PASSWORD, CANARY_SLACK, CANARY_AWS, CANARY_PEM]
    with: {from_env: "{{ item }}", then: "{{ inputs.then }}"}
    on_failure: [{action: slack.post, with: {text: "reading {{ item }} failed"}}]
  - id: echo
    action: test.noop
    with: {values: "{{ steps.read.outputs }}"}
  - id: tell
    action: slack.post
    with:
      text: "read {{ steps.read.outputs[0].value }} and {{ steps.read.outputs[1].value }}"
"""

INPUTS = """
name: canary-inputs
version: 1
inputs:
  password: {type: string, default: unset}
  dsn: {type: string, default: unset}
  note: {type: string, default: unset}
steps:
  - id: echo
    action: test.noop
    with: {password: "{{ inputs.password }}", text: "{{ inputs.note }} {{ inputs.dsn }}"}
  - id: tell
    action: slack.post
    with: {text: "note: {{ inputs.note }} dsn: {{ inputs.dsn }}"}
"""


# --------------------------------------------------------------------------- canaries


@dataclass(frozen=True)
class Canaries:
    """Fresh secret-looking values for one test; ``env`` plants the action ones."""

    password: str = field(default_factory=lambda: "pw-canary-" + secrets.token_hex(8))
    slack: str = field(
        default_factory=lambda: (
            f"xoxb-{secrets.randbelow(10**12):012d}-{secrets.randbelow(10**12):012d}-"
            + secrets.token_hex(12)
        )
    )
    aws: str = field(
        default_factory=lambda: base64.b64encode(secrets.token_bytes(30)).decode()[:40]
    )
    pem_body: str = field(default_factory=lambda: "MIIE" + secrets.token_hex(24))
    input_password: str = field(default_factory=lambda: "pw-input-" + secrets.token_hex(8))
    input_db_password: str = field(default_factory=lambda: "dbpw-" + secrets.token_hex(8))
    input_slack: str = field(
        default_factory=lambda: f"xoxp-{secrets.randbelow(10**12):012d}-" + secrets.token_hex(8)
    )
    input_aws: str = field(
        default_factory=lambda: base64.b64encode(secrets.token_bytes(30)).decode()[:40]
    )

    @property
    def pem(self) -> str:
        return f"-----BEGIN PRIVATE KEY-----\n{self.pem_body}\n-----END PRIVATE KEY-----"

    def env(self) -> dict[str, str]:
        return {
            "CANARY_PASSWORD": self.password,
            "CANARY_SLACK": self.slack,
            "CANARY_AWS": self.aws,
            "CANARY_PEM": self.pem,
        }

    def input_pairs(self) -> list[list[str]]:
        """Each a command line's ``-i`` pairs that paste a secret into an input."""
        return [
            ["-i", f"password={self.input_password}"],
            ["-i", f"dsn=postgresql://orders:{self.input_db_password}@db:5432/orders"],
            ["-i", f"note=the token is {self.input_slack}"],
            ["-i", f"note=aws_secret_access_key={self.input_aws}"],
        ]

    def all(self) -> dict[str, str]:
        """Every canary (the PEM block by its body), by name, for the leak message."""
        return {
            **vars(self),
            "bot token": BOT_TOKEN,
            "signing secret": SIGNING_SECRET,
            "web": WEB_TOKEN,
        }


# --------------------------------------------------------------------------- sinks


CLI_VIEWS: list[tuple[str, ...]] = [
    ("runs", "--json"),
    ("runs",),
    ("audit", "verify", "--json"),
]
"""Commands whose whole output (stdout and stderr) is a sink."""
INCIDENT_VIEWS: list[tuple[str, ...]] = [
    ("timeline", "{incident}", "--format", "text"),
    ("timeline", "{incident}", "--format", "md"),
    ("timeline", "{incident}", "--format", "json"),
    ("timeline", "{incident}", "--format", "html"),
]
"""The same, once per incident."""
PAGES: list[str] = [
    "/incidents",
    "/incidents?q=canary",
    "/incidents/{incident}",
    "/incidents/{incident}/timeline.md",
    "/incidents/{incident}/timeline.json",
]
"""Timeline pages, fetched from `irbot serve` with the access token."""


@dataclass
class Sinks:
    """Named texts to search; :meth:`assert_clean` names the sink and the canary."""

    texts: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, text: str) -> None:
        self.texts[name] = self.texts.get(name, "") + text

    def assert_clean(self, canaries: dict[str, str]) -> None:
        leaks = [
            f"{canary!r} ({what}) in {sink}"
            for sink, text in self.texts.items()
            for what, canary in canaries.items()
            if canary in text
        ]
        assert not leaks, "secrets leaked:\n" + "\n".join(leaks)

    def add_stores(self, h: Harness, fake: FakeSlack) -> None:
        """Timeline events, database bytes and Slack requests: read after the writers
        stopped."""
        store = runtime.open_store(h.settings)
        try:
            self.add("timeline events", repr(list(store.events())))
        finally:
            store.close()
        for path in sorted((h.root / "data").rglob("*")):
            if path.is_file():
                self.add(f"file {path.name}", path.read_bytes().decode("latin-1"))
                if path.suffix == ".sqlite":
                    self.add(f"rows of {path.name}, base64 decoded", decoded_cells(path))
        self.add(
            "Slack requests",
            "\n".join(json.dumps([c.method, c.params], default=str) for c in fake.calls()),
        )

    def add_cli_views(self, h: Harness, incidents: list[str]) -> None:
        views = list(CLI_VIEWS)
        views += [tuple(a.format(incident=i) for a in v) for v in INCIDENT_VIEWS for i in incidents]
        for args in views:
            done = irbot(h, *args)
            assert done.returncode in (0, 1), (args, done.stderr)
            self.add(f"irbot {' '.join(args)}", done.stdout + done.stderr)


def decoded_cells(path: Path) -> str:
    """Every cell of an SQLite file, base64 ones decoded too: DBOS pickles workflow
    inputs and step outputs into base64 text, where a byte search cannot see them."""
    parts: list[str] = []
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                for cell in row:
                    parts.append(str(cell))
                    if isinstance(cell, str) and len(cell) >= 8:
                        with contextlib.suppress(binascii.Error, ValueError):
                            parts.append(base64.b64decode(cell, validate=True).decode("latin-1"))
    return "\n".join(parts)


def incidents_of(h: Harness) -> list[str]:
    store = runtime.open_store(h.settings)
    try:
        return sorted({r.incident_id for r in store.list_runs(limit=1000)})
    finally:
        store.close()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def canaries() -> Canaries:
    return Canaries()


@pytest.fixture
def h(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_slack: FakeSlack, canaries: Canaries
) -> Harness:
    """An installation with the canary playbooks, Slack at the fake, the action canaries
    in the environment (children inherit it), logs at DEBUG: the most there is to leak."""
    harness = Harness(tmp_path / "irbot", None, monkeypatch)
    harness.add_playbook(CANARY)
    harness.add_playbook(INPUTS)
    teach(fake_slack)
    env = {
        **canaries.env(),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_API_URL": fake_slack.url,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "IRBOT_WEB_TOKEN": WEB_TOKEN,
        logs.LEVEL_ENV: "DEBUG",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    harness.env.update(env)
    return harness


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]

    def stop(self) -> tuple[str, str]:
        self.process.send_signal(signal.SIGTERM)
        return self.process.communicate(timeout=60)


@contextlib.contextmanager
def serving(h: Harness) -> Iterator[Server]:
    """`irbot serve` (HTTP Slack, webhooks, pages, worker, notifier) on a free port."""
    port = free_port()
    process = subprocess.Popen(
        [IRBOT, "serve", "--port", str(port)],
        env={**os.environ, **h.env},
        cwd=h.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = Server(f"http://127.0.0.1:{port}", process)
    try:
        wait_ready(f"{server.url}/readyz", alive=lambda: process.poll() is None, timeout=90)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def irbot(h: Harness, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`irbot ARGS` with the installation's environment and ``env`` on top."""
    return subprocess.run(
        [IRBOT, *args],
        env={**os.environ, **h.env, **env},
        cwd=h.root,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def wait_until_settled(h: Harness, run_ids: list[str], timeout: float = 120) -> None:
    """Every run finished and the notifier has handled every event (its cursor holds
    back while edits wait in the coalescing window)."""
    store = runtime.open_store(h.settings)
    try:
        deadline = time.monotonic() + timeout
        while True:
            done = all(store.get_run(r).status in ("succeeded", "failed") for r in run_ids)
            if done and store.notifier_cursor(CURSOR) == store.head_seq():
                return
            assert time.monotonic() < deadline, [store.get_run(r).status for r in run_ids]
            time.sleep(0.2)
    finally:
        store.close()


# --------------------------------------------------------------------------- tests


def test_inputs_refuse_pasted_secrets_without_repeating_them(
    h: Harness, fake_slack: FakeSlack, canaries: Canaries
) -> None:
    """A secret pasted into an input is refused before anything is stored or run (DBOS
    would keep the run's inputs, templates would copy them into Slack and the timeline),
    and the refusal names the input, never the value."""
    sinks = Sinks()
    for pairs in canaries.input_pairs():
        for command in (
            ("run", "canary-inputs", *pairs, "--as", "U01"),
            ("run", "canary-inputs", *pairs, "--as", "U01", "--json"),
            ("playbook", "plan", "canary-inputs", *pairs),
        ):
            done = irbot(h, *command)
            assert done.returncode == 2, (command, done.stdout, done.stderr)
            assert "looks like a secret" in done.stdout + done.stderr
            sinks.add(f"irbot {' '.join(command)}", done.stdout + done.stderr)
    assert incidents_of(h) == []
    sinks.add_stores(h, fake_slack)
    sinks.assert_clean(canaries.all())


def test_no_sink_holds_a_canary(h: Harness, fake_slack: FakeSlack, canaries: Canaries) -> None:
    """Runs whose action returns, fails with and crashes with secret values, worked by
    `irbot run --wait` (console logs) and by `irbot serve` (its notifier posting to the
    fake Slack): no canary in any log, Slack request, timeline event, database byte, CLI
    view or page; the masks show where they were."""
    sinks = Sinks()
    waited = irbot(
        h, "run", "canary", "-i", "then=crash", "--as", "U01", "--wait", IRBOT_LOG_FORMAT="console"
    )
    assert waited.returncode == 1, waited.stderr
    assert "test.secret.read" in waited.stderr
    sinks.add("irbot run --wait", waited.stdout + waited.stderr)
    run_ids = [waited.stdout.split()[1]]
    with serving(h) as server:
        for then in ("return", "fail"):
            done = irbot(h, "run", "canary", "-i", f"then={then}", "--as", "U01", "--json")
            assert done.returncode == 0, done.stderr
            sinks.add(f"irbot run then={then}", done.stdout + done.stderr)
            run_ids.append(json.loads(done.stdout)["run_id"])
        wait_until_settled(h, run_ids)
        incidents = incidents_of(h)
        assert len(incidents) == 3
        auth = {"Authorization": f"Bearer {WEB_TOKEN}"}
        for path in PAGES:
            for url in sorted({path.format(incident=i) for i in incidents}):
                page = httpx.get(server.url + url, headers=auth, timeout=30)
                assert page.status_code == 200, (url, page.text)
                sinks.add(f"GET {url}", page.text)
        out, err = server.stop()
    sinks.add("irbot serve stdout", out)
    sinks.add("irbot serve stderr", err)
    sinks.add_cli_views(h, incidents)
    sinks.add_stores(h, fake_slack)

    sinks.assert_clean(canaries.all())
    # The values were there to leak: masked in the logs, Slack and the timeline.
    logged = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    read = [line for line in logged if line.get("event") == "test.secret.read"]
    assert {line["detail"] for line in read} == {f"read {MASK}"}
    assert {line["run_id"] for line in read} == set(run_ids[1:])
    assert any(MASK in text for text in _slack_texts(fake_slack))
    assert MASK in sinks.texts["timeline events"]


def _slack_texts(fake: FakeSlack) -> list[str]:
    return [str(c.params.get("text", "")) for c in fake.calls("chat.postMessage")]


def test_in_process_logs_hold_no_canary(h: Harness, canaries: Canaries) -> None:
    """The structlog output of a worker in this process, JSON and console, for runs
    that return, fail and crash with secret values."""
    sinks = Sinks()

    async def work(then: str) -> None:
        await h.start()
        try:
            run = await h.wait_for(h.submit("canary", then=then), timeout=60)
            assert run.status == ("succeeded" if then == "return" else "failed"), run.detail
        finally:
            h.stop()

    for then, as_json in (("return", True), ("fail", False), ("crash", True), ("crash", False)):
        buffer = io.StringIO()
        logs.configure(json=as_json, level="DEBUG", stream=buffer, env={})
        try:
            asyncio.run(work(then))
        finally:
            logs.reset()
        text = buffer.getvalue()
        assert "test.secret.read" in text
        sinks.add(f"in-process logs ({then}, {'json' if as_json else 'console'})", text)
    sinks.assert_clean(canaries.all())
