"""`irbot shell` driven as people use it: the real command in a subprocess, lines typed
into its stdin one at a time, its answers and incident threads read from its stdout.

Each shell is an engine worker of its own (a few seconds to start), so a test walks a
whole story through one session. A few pure checks of the line parser and the mrkdwn
rendering sit at the end.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.actions.testing import read_records
from bot.core.errors import UsageError
from bot.shell import lines, mrkdwn
from bot.store import TimelineStore
from tests.engine_support import IRBOT, Harness

GATED = """
name: gated
version: 1
inputs:
  target: {type: string, default: db-1}
steps:
  - id: hello
    action: test.noop
    with: {msg: "hello {{ run.requester }}"}
  - id: gate
    approval: {min: 2, from: [group:sre], ttl: 1h}
  - id: boom
    action: test.destructive
    with: {target: "{{ inputs.target }}"}
"""

TASKED = """
name: tasked
version: 1
steps:
  - id: check
    manual:
      instructions: Check the dashboards.
      assignee: group:security
      ttl: 10m
  - id: handover
    manual:
      instructions: Create the new key and hand it over.
      assignee: group:security
      secret_input: {label: New API key}
      ttl: 10m
  - id: after
    action: test.noop
    with: {ref: "{{ steps.handover.outputs.secret_ref }}"}
"""

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
WAIT = 30.0


class Shell:
    """A running `irbot shell`: ``send`` types a line, ``expect`` waits for output."""

    def __init__(self, h: Harness, *args: str, **env: str) -> None:
        self.proc = subprocess.Popen(
            [IRBOT, "shell", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env={**os.environ, **h.env, **env},
            cwd=h.root,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self, stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._changed:
                into.append(line.rstrip("\n"))
                self._changed.notify_all()

    def mark(self) -> int:
        """Where the output stands now; ``expect(…, since=mark)`` looks after it."""
        with self._changed:
            return len(self.out)

    def send(self, line: str) -> int:
        """Type ``line``; returns the mark before it, to look for what it caused."""
        since = self.mark()
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return since

    def expect(self, pattern: str, since: int = 0, timeout: float = WAIT) -> re.Match[str]:
        """The first output line after ``since`` that matches ``pattern`` (ANSI ignored)."""
        wanted = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.out[since:]:
                    found = wanted.search(ANSI.sub("", line))
                    if found:
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._alive()):
                    raise AssertionError(f"no line matches {pattern!r}:\n{self.transcript()}")
                self._changed.wait(min(left, 0.2))

    def _alive(self) -> bool:
        return any(r.is_alive() for r in self._readers)

    def transcript(self) -> str:
        return "\n".join(["--- stdout", *self.out, "--- stderr", *self.err[-40:]])

    def close(self, timeout: float = WAIT) -> int:
        """End the input (EOF) and wait for the shell to leave; its exit code."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout)
        self._release(timeout)
        return code

    def kill(self) -> None:
        """Stop the shell if it still runs (a failed test) and close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._release(10)

    def _release(self, timeout: float) -> None:
        for reader in self._readers:
            reader.join(timeout)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()


def gated_digest(h: Harness) -> str:
    """The plan digest of the gate the one gated run waits at, read from the store."""
    with TimelineStore(h.settings.store_url()) as store:
        (event,) = [e for e in store.events() if e.kind == "approval.requested"]
        return str(event.payload["digest"])


@pytest.fixture
def shells() -> Iterator[list[Shell]]:
    """Kills any shell a failing test left running."""
    started: list[Shell] = []
    yield started
    for shell in started:
        shell.kill()


def test_two_person_approval_in_the_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str, shells: list[Shell]
) -> None:
    """Start a gated playbook as U01 (the default user, shown at start) and see the
    approval request with its short digest and what to type; U01's own approval is
    refused with the reason; /as U02 is counted, /as U03 grants; the thread shows each
    update and the run's finish, the destructive step ran once, `/incident status INC-1`
    shows the run succeeded. A second run is rejected with a reason (shown as typed,
    never as markup), a note lands in its thread, and the end of input leaves (exit 0)."""
    h = Harness(tmp_path, database_url, monkeypatch)
    h.add_playbook(GATED)
    shell = Shell(h)
    shells.append(shell)
    shell.expect(r"^-- irbot shell .*you are U01 \(sre\)")
    shell.expect(r"^-- ready\.")

    since = shell.send("/incident run gated target=db-9")
    started = shell.expect(r"^-> :rocket: Started gated as `(run-[0-9a-f]{12})` for INC-1\.", since)
    run = started.group(1)
    shell.expect(r"^INC-1 # INC-1: gated: target=db-9 \(opened, starting\)$", since)
    shell.expect(rf"^INC-1   > Approval needed at gate gate of run {run}$", since)
    shell.expect(r"^INC-1   >   needs 2 from group sre · the requester cannot approve", since)
    hint = shell.expect(
        rf"^INC-1   >   type `approve {run}` to approve plan `([0-9a-f]{{12}})`, "
        rf"or `reject {run} reason…`$",
        since,
    )
    assert gated_digest(h).startswith(hint.group(1))

    since = shell.send(f"approve {run}")
    shell.expect(r"^-> :no_entry_sign: Your approve was not counted: U01 requested this run", since)
    since = shell.send("/as U02")
    shell.expect(r"^-- you are now U02 \(sre\)$", since)
    since = shell.send(f"approve {run} {hint.group(1)}")
    shell.expect(r"^-> :ballot_box_with_check: Approval counted \(1 of 2: U02\)\.$", since)
    shell.expect(r"^INC-1   >   Approvals: 1 of 2: @U02$", since)
    assert read_records("destructive") == []

    since = shell.send("/as U03")
    shell.expect(r"^-- you are now U03 \(sre\)$", since)
    since = shell.send(f"approve {run}")
    shell.expect(r"^-> :white_check_mark: Approved \(2 of 2: U02, U03.*the run continues\.$", since)
    shell.expect(r"^INC-1   >   :white_check_mark: Approved · 2 of 2: @U02, @U03$", since)
    shell.expect(rf"^INC-1   > :white_check_mark: Run {run} finished", since)
    assert [(r["key"], r["with"]["target"]) for r in read_records("destructive")] == [
        (f"{run}:boom", "db-9")
    ]

    since = shell.send("/incident status INC-1")
    shell.expect(r"^-> INC-1 · gated: target=db-9 · open", since)
    shell.expect(rf"^   :white_check_mark: `{run}` gated · succeeded", since)

    since = shell.send("/incident run gated")
    second = shell.expect(r"Started gated as `(run-[0-9a-f]{12})` for INC-2", since).group(1)
    shell.expect(rf"^INC-2   > Approval needed at gate gate of run {second}$", since)
    shell.send("/as U02")
    since = shell.send(f"reject {second} not during <peak> & not today")
    shell.expect(r"^-> :no_entry: Rejected; the run stops\.", since)
    shell.expect(
        r"^INC-2   >   :no_entry: Rejected by @U02: .*: not during <peak> & not today$", since
    )
    shell.expect(rf"^INC-2   > :no_entry: Run {second} rejected", since)
    since = shell.send("/incident note INC-2 rolled back by hand")
    shell.expect(r"^-> :memo: Noted on INC-2\.$", since)
    shell.expect(r"^INC-2   > :memo: Note from @U02: rolled back by hand$", since)

    assert shell.close() == 0, shell.transcript()
    shell.expect(r"^-- bye$")
    assert "Traceback" not in "\n".join(shell.err), shell.transcript()


def test_bad_lines_get_help_and_the_session_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shells: list[Shell]
) -> None:
    """Typos, unknown subcommands, malformed ids, missing reasons, unknown incidents and
    runs, a user irbot.yaml does not know and — with IRBOT_LOCAL_APPROVALS off — any
    button each get a clear message naming what to type; nothing ends the session, no
    incident is opened, and /quit leaves with exit 0."""
    h = Harness(tmp_path, None, monkeypatch)
    h.add_playbook(GATED)
    shell = Shell(h, "--as", "U04", IRBOT_LOCAL_APPROVALS="0")
    shells.append(shell)
    shell.expect(r"^-- irbot shell .*you are U04 \(security\)")
    shell.expect(r"^-- ready\. Buttons \(approve, done…\): off \(IRBOT_LOCAL_APPROVALS=1")
    answers = {
        "aprove run-0123456789ab": r"unknown command 'aprove'\. Did you mean `approve`\?",
        "/incident frobnicate": r"unknown subcommand 'frobnicate'.*`/incident help`",
        "/incident stauts": r"Did you mean `/incident status`\?",
        "/approve run-0123456789ab": r"type `approve RUN \[DIGEST\]` without the slash",
        "approve not-a-run": r"'not-a-run' is not a run id.*usage: `approve RUN \[DIGEST\]`",
        "approve run-0123456789ab xyz": r"'xyz' is not a plan digest",
        "reject run-0123456789ab": r"a rejection needs a reason",
        "failed run-0123456789ab": r"a failed task needs a reason",
        "approve run-0123456789ab": r"local approvals are off: set IRBOT_LOCAL_APPROVALS=1",
        "done run-0123456789ab": r"local approvals are off",
        "/incident status INC-7": r"no incident 'INC-7'",
        "/incident cancel run-0123456789ab": r"no run 'run-0123456789ab'",
        "/as two users": r"one user at a time",
    }
    for line, pattern in answers.items():
        since = shell.send(line)
        shell.expect(r"^-> :warning: .*" + pattern, since)
    since = shell.send("/as U99")
    shell.expect(r"^-- you are now U99 \(in no group of irbot.yaml", since)
    since = shell.send("/incident run gated")
    shell.expect(r"^-> :warning: U99 may not start 'gated': irbot.yaml allows sre, security", since)
    since = shell.send("/incident list")
    shell.expect(r"^-> :sunny: No open incidents\.$", since)
    since = shell.send("/help")
    shell.expect(r"^\s+reject RUN reason…\s+press Reject", since)
    since = shell.send("/quit")
    shell.expect(r"^-- bye$", since)
    assert shell.close() == 0, shell.transcript()
    assert "Traceback" not in "\n".join(shell.err), shell.transcript()


def test_bad_start_options_fail_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed --as and a missing irbot.yaml stop the shell before it starts an
    engine: exit 2, one line on stderr saying what is wrong."""
    h = Harness(tmp_path, None, monkeypatch)
    bad_user = h.irbot("shell", "--as", "not a user")
    assert bad_user.returncode == 2, bad_user
    assert "'not a user' is not a member id" in bad_user.stderr
    (tmp_path / "irbot.yaml").unlink()
    no_config = h.irbot("shell")
    assert no_config.returncode == 2, no_config
    assert "irbot.yaml: no such config file" in no_config.stderr
    assert "Traceback" not in no_config.stderr + bad_user.stderr


def test_manual_tasks_and_a_secret_handed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws: str, shells: list[Shell]
) -> None:
    """A task for group security: U01 pressing Done is not accepted (with the reason),
    U04 is; the next task asks for a secret, so Done without --secret-file says how,
    and with it the secret is handed over and the run finishes, the value shown and
    logged nowhere. On a second run `failed RUN check reason…` takes `check` as the step
    and the rest as the reason; the run fails and the thread says why."""
    h = Harness(tmp_path, None, monkeypatch)
    h.add_playbook(TASKED)
    value = "sk-shell-test-" + os.urandom(8).hex()
    secret_file = tmp_path / "new-key.txt"
    secret_file.write_text(value + "\n")
    shell = Shell(h)
    shells.append(shell)
    shell.expect(r"^-- ready\.")

    since = shell.send("/incident run tasked")
    run = shell.expect(r"Started tasked as `(run-[0-9a-f]{12})`", since).group(1)
    shell.expect(rf"^INC-1   > Task check of run {run} is waiting$", since)
    shell.expect(r"^INC-1   >   Check the dashboards\.$", since)
    shell.expect(
        rf"^INC-1   >   for group security: type `done {run} check` or `failed {run} check",
        since,
    )
    since = shell.send(f"done {run}")
    shell.expect(
        rf"^-> :no_entry_sign: Your answer to task `check` of `{run}` was not accepted", since
    )
    shell.send("/as U04")
    since = shell.send(f"done {run} check")
    shell.expect(rf"^-> :white_check_mark: Task `check` of `{run}`", since)
    shell.expect(r"^INC-1   >   :white_check_mark: Done · @U04$", since)
    shell.expect(rf"type `done {run} handover --secret-file FILE`", since)

    since = shell.send(f"done {run}")
    shell.expect(r"asks for New API key: hand it over with --secret-file FILE", since)
    since = shell.send(f"done {run} handover --secret-file {secret_file}")
    shell.expect(r"^-> :white_check_mark: Task `handover`", since)
    shell.expect(r"Done · @U04 · secret handed over", since)
    shell.expect(rf"^INC-1   > :white_check_mark: Run {run} finished", since)

    since = shell.send("/incident run tasked")
    second = shell.expect(r"Started tasked as `(run-[0-9a-f]{12})` for INC-2", since).group(1)
    shell.expect(rf"^INC-2   > Task check of run {second} is waiting$", since)
    since = shell.send(f"failed {second} check dashboards are down")
    shell.expect(rf"^-> :x: Task `check` of `{second}`", since)
    shell.expect(r"^INC-2   >   :x: Failed · @U04: dashboards are down$", since)
    shell.expect(rf"^INC-2   > :x: Run {second} failed", since)

    assert shell.close() == 0, shell.transcript()
    log_file = tmp_path / "data" / "shell.log"
    log = log_file.read_text() if log_file.exists() else ""
    for seen in ("\n".join(shell.out), "\n".join(shell.err), log):
        assert value not in seen


def test_color_on_a_terminal_style(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shells: list[Shell]
) -> None:
    """--color draws as on a terminal: ANSI colour, emoji for Slack's short codes, an
    error in red; the plain rendering (the default for a pipe) has none of them."""
    h = Harness(tmp_path, None, monkeypatch)
    h.add_playbook(GATED)
    shell = Shell(h, "--color")
    shells.append(shell)
    shell.expect(r"ready\.")
    since = shell.send("/incident nope")
    shell.expect(r"unknown subcommand 'nope'", since)
    assert shell.close() == 0, shell.transcript()
    error = next(line for line in shell.out if "unknown subcommand" in line)
    assert "\x1b[31m" in error  # red
    assert "⚠️" in error
    assert ":warning:" not in error
    assert "`" not in ANSI.sub("", error)


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("approve run-0123456789ab", lines.Vote("run-0123456789ab", "approve")),
        (
            "APPROVE run-0123456789ab 0468EA814EB8",
            lines.Vote("run-0123456789ab", "approve", digest="0468ea814eb8"),
        ),
        (
            "reject run-0123456789ab not now, it's peak",
            lines.Vote("run-0123456789ab", "reject", reason="not now, it's peak"),
        ),
        (
            "done run-0123456789ab handover --secret-file 'my key.txt'",
            lines.TaskAnswer("run-0123456789ab", "done", step="handover", secret_file="my key.txt"),
        ),
        (
            "failed run-0123456789ab check it broke",
            lines.TaskAnswer(
                "run-0123456789ab", "failed", reason="check it broke", step_in_reason=True
            ),
        ),
        (
            "failed run-0123456789ab broken",
            lines.TaskAnswer("run-0123456789ab", "failed", reason="broken"),
        ),
        ("/incident run gated a=1", lines.Incident("run gated a=1")),
        ("/as", lines.SwitchUser(None)),
        ("  ", lines.Empty()),
    ],
)
def test_lines_parse(line: str, parsed: lines.Command) -> None:
    """Each typed form becomes its command; reasons keep their punctuation."""
    assert lines.parse(line) == parsed


@pytest.mark.parametrize(
    "line",
    ["done run-0123456789ab a b", "done run-0123456789ab --secret-file", "done --note x", "/nope"],
)
def test_lines_refuse(line: str) -> None:
    """Malformed button lines and unknown commands are usage errors, never guesses."""
    with pytest.raises(UsageError):
        lines.parse(line)


def test_mrkdwn_shows_escaped_text_as_typed() -> None:
    """Escaped text reads as typed and never turns into a mention or link; irbot's own
    mentions, dates and code read naturally."""
    text = "*Rejected* by <@U01>: &lt;!channel&gt; &amp;lt; `run-1` <!date^0^{time}|x>"
    assert mrkdwn.plain(text) == "Rejected by @U01: <!channel> &lt; `run-1` 1970-01-01 00:00 UTC"
    bold = [s for s in mrkdwn.segments(text) if s.style == "bold"]
    assert [s.text for s in bold] == ["Rejected", "@U01"]
