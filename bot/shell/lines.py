"""What a line typed into ``irbot shell`` means: parsed into a typed command (pure).

``/incident …`` is left whole for :func:`bot.core.slash.parse`, the parser the Slack app
uses; the rest are the shell's own: ``/as``, ``/help``, ``/quit``, and the buttons typed
as words (``approve``, ``reject``, ``done``, ``failed``). A line that does not parse
raises :class:`UsageError` saying what to type instead; nothing is attempted.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass

from bot.core import slash
from bot.core.config import MEMBER_PATTERN
from bot.core.errors import UsageError
from bot.core.playbook import STEP_ID_PATTERN

_USER = re.compile(MEMBER_PATTERN)
_STEP = re.compile(STEP_ID_PATTERN)
_DIGEST = re.compile(r"^[0-9a-fA-F]{12,64}$")
"""A plan digest as shown (its first 12 hex characters) or whole."""

USAGE = {
    "approve": "approve RUN [DIGEST]",
    "reject": "reject RUN reason…",
    "done": "done RUN [STEP] [--secret-file FILE]",
    "failed": "failed RUN [STEP] reason…",
    "/as": "/as USER",
}

_HELP_ROWS = (
    (f"{slash.COMMAND} …", f"the slash command, as in Slack (`{slash.COMMAND} help` lists it)"),
    (USAGE["approve"], "press Approve (DIGEST: the plan you reviewed)"),
    (USAGE["reject"], "press Reject, giving the reason"),
    (USAGE["done"], "press Done on a manual task (FILE: the secret it asks for)"),
    (USAGE["failed"], "press Failed on a manual task"),
    ("/as [USER]", "be USER (a member id in irbot.yaml), or say who you are"),
    ("/help", "this help"),
    ("/quit", "leave (so does the end of input)"),
)

HELP = "\n".join(
    [
        "Type what you would type in Slack, and press buttons by typing them:",
        *(f"  {form:<38} {what}" for form, what in _HELP_ROWS),
        "Incident threads print as they happen, each line after its incident id.",
    ]
)

_SHELL = ("/incident", "/as", "/help", "/quit")
_BUTTONS = ("approve", "reject", "done", "failed")


@dataclass(frozen=True)
class Incident:
    """``/incident …``: ``text`` is what follows the command, for :func:`slash.parse`."""

    text: str


@dataclass(frozen=True)
class SwitchUser:
    user: str | None
    """None: only say who you are."""


@dataclass(frozen=True)
class ShowHelp:
    pass


@dataclass(frozen=True)
class Quit:
    pass


@dataclass(frozen=True)
class Empty:
    pass


@dataclass(frozen=True)
class Vote:
    """Approve or Reject pressed on the gate ``run_id`` waits at."""

    run_id: str
    decision: str
    digest: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class TaskAnswer:
    """Done or Failed pressed on a manual task of ``run_id``."""

    run_id: str
    status: str
    step: str | None = None
    reason: str | None = None
    secret_file: str | None = None
    step_in_reason: bool = False
    """``failed RUN a b…``: ``a`` may be the step or the reason's first word; it is the
    step when the run has an open task of that name (see :func:`split_step`)."""


Command = Incident | SwitchUser | ShowHelp | Quit | Empty | Vote | TaskAnswer


def parse(line: str) -> Command:
    """Parse one typed line, or raise :class:`UsageError`."""
    text = line.strip()
    if not text:
        return Empty()
    head, rest = _split(text)
    name = head.lower()
    if name == slash.COMMAND:
        return Incident(rest)
    if name == "/as":
        return _switch(rest)
    if name in ("/help", "/?", "help"):
        return ShowHelp()
    if name in ("/quit", "/exit", "/q"):
        return Quit()
    if name in ("approve", "reject"):
        return _vote(name, rest)
    if name in ("done", "failed"):
        return _done(rest) if name == "done" else _failed(rest)
    raise UsageError(_unknown(head))


def split_step(reason: str) -> tuple[str, str]:
    """``rotate it broke`` -> (``rotate``, ``it broke``)."""
    return _split(reason)


def _split(text: str) -> tuple[str, str]:
    parts = re.split(r"\s+", text.strip(), maxsplit=1)
    return parts[0], (parts[1].strip() if len(parts) > 1 else "")


def _unknown(head: str) -> str:
    name = head.lower()
    if name.lstrip("/") in _BUTTONS:
        return f"type `{USAGE[name.lstrip('/')]}` without the slash; /help lists what you can type"
    close = difflib.get_close_matches(name, _SHELL + _BUTTONS, n=1, cutoff=0.6)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    return f"unknown command {head!r}.{hint} Type /help for what you can type."


def _bad(what: str, problem: str) -> UsageError:
    return UsageError(f"{problem}; usage: `{USAGE[what]}`")


def member(word: str) -> str:
    """``word`` if it can be a member id of irbot.yaml (``U02``, ``alice``), else raise."""
    if not _USER.match(word):
        raise _bad("/as", f"{word!r} is not a member id (letters, digits, . _ @ -)")
    return word


def _switch(rest: str) -> SwitchUser:
    if not rest:
        return SwitchUser(None)
    if len(rest.split()) > 1:
        raise _bad("/as", f"one user at a time (got {rest!r})")
    return SwitchUser(member(rest))


def _run_id(word: str, what: str) -> str:
    if not word:
        raise _bad(what, "which run? give its id (like run-1a2b3c4d5e6f)")
    if not slash.RUN_ID.match(word):
        raise _bad(what, f"{word!r} is not a run id (like run-1a2b3c4d5e6f)")
    return word


def _vote(decision: str, rest: str) -> Vote:
    first, more = _split(rest)
    run_id = _run_id(first, decision)
    if decision == "reject":
        if not more:
            raise _bad("reject", "a rejection needs a reason")
        return Vote(run_id, "reject", reason=more)
    if not more:
        return Vote(run_id, "approve")
    if len(more.split()) > 1 or not _DIGEST.match(more):
        raise _bad(
            "approve",
            f"{more!r} is not a plan digest (12 to 64 hex characters, as the request shows)",
        )
    return Vote(run_id, "approve", digest=more.lower())


def _done(rest: str) -> TaskAnswer:
    try:
        words = shlex.split(rest)
    except ValueError as exc:  # an unbalanced quote around a file name
        raise _bad("done", f"cannot read the arguments: {exc}") from exc
    secret_file = None
    positional: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word == "--secret-file" or word.startswith("--secret-file="):
            if secret_file is not None:
                raise _bad("done", "--secret-file is given twice")
            if "=" in word:
                secret_file = word.partition("=")[2]
            elif index + 1 < len(words):
                index += 1
                secret_file = words[index]
            if not secret_file:
                raise _bad("done", "--secret-file needs a file name")
        elif word.startswith("--"):
            raise _bad("done", f"unknown option {word!r}")
        else:
            positional.append(word)
        index += 1
    if len(positional) > 2:
        raise _bad("done", f"too many words: {' '.join(positional[2:])!r}")
    run_id = _run_id(positional[0] if positional else "", "done")
    step = positional[1] if len(positional) == 2 else None
    if step is not None and not _STEP.match(step):
        raise _bad("done", f"{step!r} is not a step id")
    return TaskAnswer(run_id, "done", step=step, secret_file=secret_file)


def _failed(rest: str) -> TaskAnswer:
    first, more = _split(rest)
    run_id = _run_id(first, "failed")
    if not more:
        raise _bad("failed", "a failed task needs a reason")
    step, after = _split(more)
    return TaskAnswer(
        run_id, "failed", reason=more, step_in_reason=bool(after) and bool(_STEP.match(step))
    )
