"""bot/logs.py: one redacted log stream for irbot's structlog lines and every library's
stdlib lines, JSON or console, with the run's ids on every line an action logs.

Real parts: the real structlog and logging machinery writing to a real stream (a pty for
"a terminal"), the real engine (DBOS + SQLite) for the ids, and the real `irbot` command
for the CLI's choices.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from bot import logs
from bot.core.errors import ConfigError
from bot.core.redaction import MASK
from bot.engine import runtime
from tests.engine_support import IRBOT, Harness

SLACK_TOKEN = "xoxb-2718281828-3141592653-logcanary"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYLOGCANARY1"
assert len(AWS_SECRET) == 40
DB_PASSWORD = "pg-canary-hunter2"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEcanary\n-----END RSA PRIVATE KEY-----"
PLAIN_SECRET = "plain-canary-7f3a9c"
"""Looks like nothing: only a key name, or a value the action marked, can hide it."""


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Every test configures logging for the process; put the defaults back after."""
    yield
    logs.reset()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def capture(**kw: Any) -> io.StringIO:
    """Configure logging into a fresh buffer, with an empty environment unless given."""
    buffer = io.StringIO()
    kw.setdefault("env", {})
    logs.configure(stream=buffer, **kw)
    return buffer


# --------------------------------------------------------------------------- redaction


def test_key_names_are_masked_at_any_depth_and_secret_id_stays() -> None:
    """Values under secret key names are masked in nested dicts and lists; ``secret_id``
    (a name, not a secret) and ordinary keys stay readable."""
    out = capture(json=True)
    structlog.get_logger("irbot.test").info(
        "rotating",
        secret_id="prod/db",
        password=PLAIN_SECRET,
        request={"headers": {"Authorization": PLAIN_SECRET}, "items": [{"token": PLAIN_SECRET}]},
    )
    (line,) = json_lines(out.getvalue())
    assert line["secret_id"] == "prod/db"
    assert line["password"] == MASK
    assert line["request"] == {"headers": {"Authorization": MASK}, "items": [{"token": MASK}]}
    assert PLAIN_SECRET not in out.getvalue()


def test_value_patterns_are_masked_in_the_message_and_nested_values() -> None:
    """Slack tokens, AWS secret keys, passwords in database URLs and PEM blocks are masked
    wherever they stand: the event message itself, nested strings, list items."""
    out = capture(json=True)
    structlog.get_logger("irbot.test").warning(
        f"posting with {SLACK_TOKEN}",
        config={"dsn": f"postgresql://app:{DB_PASSWORD}@db:5432/orders"},
        lines=[f"aws_secret_access_key={AWS_SECRET}", PEM],
    )
    text = out.getvalue()
    for canary in (SLACK_TOKEN, AWS_SECRET, DB_PASSWORD, "MIIEcanary"):
        assert canary not in text
    (line,) = json_lines(text)
    assert line["event"] == f"posting with {MASK}"
    assert line["config"]["dsn"] == f"postgresql://{MASK}@db:5432/orders"
    assert line["lines"] == [f"aws_secret_access_key={MASK}", MASK]


def test_objects_become_redacted_text() -> None:
    """An exception or any object given as a value is turned into text before the
    patterns run, so its str() cannot carry a secret past them."""

    class Holder:
        def __str__(self) -> str:
            return f"Holder({SLACK_TOKEN})"

    out = capture(json=True)
    structlog.get_logger("irbot.test").error(
        "failed", error=RuntimeError(f"refused {SLACK_TOKEN}"), holder=Holder(), raw=b"x"
    )
    (line,) = json_lines(out.getvalue())
    assert line["error"] == f"RuntimeError: refused {MASK}"
    assert line["holder"] == f"Holder({MASK})"
    assert line["raw"] == "x"


def test_exception_messages_are_redacted_in_json_tracebacks() -> None:
    """``log.exception`` renders a structured traceback (no local variables: a frame may
    hold a secret under any name) whose exception message is redacted."""
    out = capture(json=True)
    password = PLAIN_SECRET  # a local a traceback with locals would print

    try:
        raise ConnectionError(f"login to postgres://app:{DB_PASSWORD}@db failed ({password!r})")
    except ConnectionError:
        with logs.masking({PLAIN_SECRET}):
            structlog.get_logger("irbot.test").exception("connect.failed")
    text = out.getvalue()
    assert DB_PASSWORD not in text
    assert PLAIN_SECRET not in text
    (line,) = json_lines(text)
    (exc,) = line["exception"]
    assert exc["exc_type"] == "ConnectionError"
    assert exc["exc_value"] == f"login to postgres://{MASK}@db failed ('{MASK}')"
    assert exc["frames"]
    assert all("locals" not in frame for frame in exc["frames"])


def test_exception_text_is_redacted_in_console_output() -> None:
    """The console renderer gets the traceback as text, already redacted, never the live
    exception it would format itself."""
    out = capture(json=False)
    try:
        raise ValueError(f"bad token {SLACK_TOKEN}")
    except ValueError:
        structlog.get_logger("irbot.test").exception("parse.failed")
    text = out.getvalue()
    assert SLACK_TOKEN not in text
    assert "Traceback (most recent call last)" in text
    assert f"ValueError: bad token {MASK}" in text
    assert "parse.failed" in text


def test_stdlib_loggers_share_the_format_redaction_and_ids() -> None:
    """A library's stdlib lines (botocore, kubernetes, slack_sdk …) come out as the same
    JSON, redacted (arguments and exceptions included), with the bound ids."""
    out = capture(json=True)
    with structlog.contextvars.bound_contextvars(run_id="run-1", incident_id="INC-7", step="s"):
        logging.getLogger("botocore.endpoint").warning("retrying with %s", SLACK_TOKEN)
        try:
            raise OSError(f"aws_secret_access_key={AWS_SECRET}")
        except OSError:
            logging.getLogger("kubernetes.client").exception("request failed")
    text = out.getvalue()
    assert SLACK_TOKEN not in text
    assert AWS_SECRET not in text
    warning, error = json_lines(text)
    assert warning["event"] == f"retrying with {MASK}"
    assert warning["logger"] == "botocore.endpoint"
    assert warning["level"] == "warning"
    assert warning["timestamp"].endswith("Z")
    for line in (warning, error):
        assert (line["run_id"], line["incident_id"], line["step"]) == ("run-1", "INC-7", "s")
    assert error["exception"][0]["exc_value"] == f"aws_secret_access_key={MASK}"


def test_dbos_lines_go_through_irbot_handler() -> None:
    """DBOS gives its logger a console handler of its own unless it has one: after
    configure() it has ours (and does not also propagate, which would print twice)."""
    out = capture(json=True)
    dbos = logging.getLogger("dbos")
    dbos.error("step failed: %s", SLACK_TOKEN)
    (line,) = json_lines(out.getvalue())
    assert line["logger"] == "dbos"
    assert line["event"] == f"step failed: {MASK}"


def test_masking_hides_marked_values_only_inside_the_block() -> None:
    """Values an action marked secret are masked in every line logged during its call,
    including values marked after the block began (the set is read at each line)."""
    out = capture(json=True)
    log = structlog.get_logger("irbot.test")
    marked: set[str] = set()
    with logs.masking(marked):
        marked.add(PLAIN_SECRET)
        log.info(f"using {PLAIN_SECRET}")
    log.info("after", note="x")
    first, second = json_lines(out.getvalue())
    assert first["event"] == f"using {MASK}"
    assert second["event"] == "after"


def test_levels_filter_irbot_and_library_lines() -> None:
    """irbot's loggers log at the chosen level; libraries at that level or WARNING,
    whichever is higher (their INFO is noise, botocore's DEBUG carries request bodies)."""
    out = capture(json=True, level="DEBUG")
    structlog.get_logger("irbot.test").debug("own.debug")
    logging.getLogger("botocore.hooks").info("library info")
    logging.getLogger("botocore.hooks").warning("library warning")
    assert [line["event"] for line in json_lines(out.getvalue())] == [
        "own.debug",
        "library warning",
    ]
    out = capture(json=True, env={logs.LEVEL_ENV: "error"})
    structlog.get_logger("irbot.test").warning("own.warning")
    structlog.get_logger("irbot.test").error("own.error")
    assert [line["event"] for line in json_lines(out.getvalue())] == ["own.error"]


def test_configure_is_idempotent_and_restore_puts_the_previous_back() -> None:
    """A second configure replaces the first (one line per call, no second handler);
    restore() re-installs what configure() returned, as the shell and the demo do."""
    root = logging.getLogger()
    untouched = root.handlers[:]  # pytest's own capture handlers
    first = capture(json=True)
    second = io.StringIO()
    previous = logs.configure(json=True, stream=second, env={})
    assert previous is not None
    assert previous.stream is first
    assert len(root.handlers) == len(untouched) + 1
    structlog.get_logger("irbot.test").info("to.second")
    logs.restore(previous)
    structlog.get_logger("irbot.test").info("to.first")
    assert [line["event"] for line in json_lines(second.getvalue())] == ["to.second"]
    assert [line["event"] for line in json_lines(first.getvalue())] == ["to.first"]
    logs.restore(None)
    assert root.handlers == untouched


def test_default_stream_is_stdout_at_write_time(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a stream, lines go to ``sys.stdout`` as it is when they are written."""
    logs.configure(json=True, env={})
    structlog.get_logger("irbot.test").info("hello", token=PLAIN_SECRET)
    captured = capsys.readouterr()
    (line,) = json_lines(captured.out)
    assert line == {**line, "event": "hello", "token": MASK, "level": "info"}
    assert captured.err == ""


# --------------------------------------------------------------------------- format choice


@pytest.fixture
def terminal() -> Iterator[Any]:
    """A real terminal (a pty) to write to."""
    leader, follower = os.openpty()
    stream = open(follower, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        yield stream
    finally:
        stream.close()
        os.close(leader)


def test_json_unless_the_stream_is_a_terminal(terminal: Any) -> None:
    """Format left open: JSON to a pipe or file, console text to a terminal."""
    assert logs.resolve(stream=io.StringIO(), env={}).json is True
    assert logs.resolve(stream=terminal, env={}).json is False
    assert logs.resolve(json=True, stream=terminal, env={}).json is True


def test_environment_overrides_format_and_level(terminal: Any) -> None:
    """IRBOT_LOG_FORMAT and IRBOT_LOG_LEVEL win over the terminal check and the argument."""
    env = {logs.FORMAT_ENV: "json", logs.LEVEL_ENV: "debug"}
    choice = logs.resolve(stream=terminal, level="ERROR", env=env)
    assert (choice.json, choice.level) == (True, logging.DEBUG)
    choice = logs.resolve(json=True, stream=io.StringIO(), env={logs.FORMAT_ENV: "Console"})
    assert choice.json is False


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({logs.FORMAT_ENV: "xml"}, logs.FORMAT_ENV),
        ({logs.LEVEL_ENV: "loud"}, logs.LEVEL_ENV),
    ],
)
def test_bad_environment_is_a_config_error_naming_the_variable(
    env: dict[str, str], named: str
) -> None:
    """A bad value stops with a ConfigError that names the variable."""
    with pytest.raises(ConfigError, match=named):
        logs.configure(stream=io.StringIO(), env=env)


def test_cli_refuses_a_bad_log_format_with_the_variable_named(tmp_path: Path) -> None:
    """`irbot` exits 2 before any command runs, naming the variable, on stderr for people
    and as JSON on stdout with --json."""
    env = {**os.environ, logs.FORMAT_ENV: "xml"}
    done = subprocess.run(
        [IRBOT, "playbook", "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "IRBOT_LOG_FORMAT must be json or console, got 'xml'" in done.stderr
    done = subprocess.run(
        [IRBOT, "runs", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert json.loads(done.stdout)["error"] == "ConfigError"


# --------------------------------------------------------------------------- ids in a real run

LOGGED = """
name: logged
version: 1
steps:
  - id: read
    action: test.secret
    with: {from_env: IRBOT_TEST_LOG_SECRET}
  - id: fan
    action: test.secret
    for_each: [a, b]
    with: {from_env: IRBOT_TEST_LOG_SECRET}
"""


@pytest.fixture
def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    harness = Harness(tmp_path, None, monkeypatch)
    harness.add_playbook(LOGGED)
    monkeypatch.setenv("IRBOT_TEST_LOG_SECRET", PLAIN_SECRET)
    return harness


def test_lines_an_action_logs_carry_the_run_ids(h: Harness) -> None:
    """During a real run, the action's own lines, a library's line and the exception it
    logs carry incident_id, run_id and step (and the item in a fan-out); the value it
    marked secret is masked in all of them."""
    out = capture(json=True)

    async def main() -> tuple[str, str]:
        await h.start()
        try:
            run_id = h.submit("logged")
            run = await h.wait_for(run_id)
            assert run.status == "succeeded", run.detail
            return run_id, run.incident_id
        finally:
            h.stop()

    run_id, incident_id = asyncio.run(main())
    text = out.getvalue()
    assert PLAIN_SECRET not in text
    lines = json_lines(text)
    read = [line for line in lines if line.get("step") == "read"]
    assert {line["event"] for line in read} >= {
        "test.secret.read",
        "test.secret.traceback",
        f"a library line with the value: {MASK}",
    }
    for line in read:
        assert (line["run_id"], line["incident_id"], line["action"]) == (
            run_id,
            incident_id,
            "test.secret",
        )
    traceback = next(line for line in read if line["event"] == "test.secret.traceback")
    assert traceback["exception"][0]["exc_value"] == f"lookup failed for {MASK}"
    fan = [
        line for line in lines if line.get("step") == "fan" and line["event"] == "test.secret.read"
    ]
    assert sorted(line["item"] for line in fan) == [0, 1]
    assert all(line["run_id"] == run_id for line in fan)


def test_cli_logs_to_stderr_and_keeps_stdout_for_data(h: Harness) -> None:
    """`irbot run --wait --json`: stdout is exactly the JSON answer; the action's log lines
    (JSON, since stderr is a pipe) are on stderr, with the run's ids and nothing secret."""
    done = h.irbot("run", "logged", "--as", "U01", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["status"] == "succeeded"
    lines = json_lines(done.stderr)
    read = [line for line in lines if line.get("event") == "test.secret.read"]
    assert {line["run_id"] for line in read} == {answer["run_id"]}
    assert PLAIN_SECRET not in done.stdout + done.stderr


def test_worker_logs_to_stdout(h: Harness) -> None:
    """`irbot worker` is a service: its log lines are its output, on stdout."""
    run_id = h.submit("logged")
    worker = subprocess.Popen(
        [IRBOT, "worker"],
        env={**os.environ, **h.env, "IRBOT_TEST_LOG_SECRET": PLAIN_SECRET},
        cwd=h.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = runtime.open_store(h.settings)
    try:
        deadline = time.monotonic() + 60
        while store.get_run(run_id).status not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, "the worker did not finish the run"
            time.sleep(0.1)
    finally:
        store.close()
        worker.terminate()
        out, err = worker.communicate(timeout=30)
    read = [line for line in json_lines(out) if line.get("event") == "test.secret.read"]
    assert {line["run_id"] for line in read} == {run_id}
    assert "test.secret.read" not in err
    assert PLAIN_SECRET not in out + err
