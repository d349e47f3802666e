"""The ``/incident`` slash command as text: parsed into typed commands, with its help.

Pure, so Slack, the local shell and tests all read a command the same way::

    /incident run PLAYBOOK key=value …   start a run (values may be quoted)
    /incident status [INC-ID]            one incident, or what is open and waiting for you
    /incident list                       open incidents
    /incident note INC-ID text …         add a note to the incident's timeline
    /incident cancel RUN-ID              stop a run between steps
    /incident help                       this text

Anything else raises :class:`UsageError` whose message says what was wrong and what to
type instead; nothing is attempted for a command that does not parse.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass, field

from bot.core.errors import UsageError
from bot.core.playbook import INPUT_NAME_PATTERN, NAME_PATTERN

COMMAND = "/incident"

INCIDENT_ID = re.compile(r"^INC-([1-9][0-9]{0,9})$", re.IGNORECASE)
RUN_ID = re.compile(r"^run-[A-Za-z0-9][A-Za-z0-9._:-]{0,120}$")
"""Run ids as the engine makes them (``run-<hex>``, ``run-<delivery key>``, child runs
``run-….step``); anything else cannot name a run."""

_PLAYBOOK = re.compile(NAME_PATTERN)
_INPUT = re.compile(INPUT_NAME_PATTERN)
_SMART_QUOTES = str.maketrans(
    {"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'"}
)
"""Slack clients turn typed quotes into typographic ones; shlex only knows ASCII."""


@dataclass(frozen=True)
class Run:
    playbook: str
    inputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Status:
    incident_id: str | None = None
    """None: open incidents and the runs waiting for the asker."""


@dataclass(frozen=True)
class ListIncidents:
    pass


@dataclass(frozen=True)
class Note:
    incident_id: str
    text: str


@dataclass(frozen=True)
class Cancel:
    run_id: str


@dataclass(frozen=True)
class Help:
    pass


Command = Run | Status | ListIncidents | Note | Cancel | Help

SUBCOMMANDS = ("run", "status", "list", "note", "cancel", "help")

HELP = f"""\
*irbot* — incident response playbooks with two-person approval.
`{COMMAND} run PLAYBOOK key=value …` start a playbook (quote values with spaces: `a="b c"`)
`{COMMAND} status [INC-ID]` one incident, or open incidents and runs waiting for you
`{COMMAND} list` open incidents
`{COMMAND} note INC-ID text …` add a note to an incident's timeline
`{COMMAND} cancel RUN-ID` stop a run between steps
`{COMMAND} help` this help
Approvals and manual tasks are answered with the buttons irbot posts in the incident thread."""

_USAGE = {
    "run": f"{COMMAND} run PLAYBOOK key=value …",
    "status": f"{COMMAND} status [INC-ID]",
    "list": f"{COMMAND} list",
    "note": f"{COMMAND} note INC-ID text …",
    "cancel": f"{COMMAND} cancel RUN-ID",
    "help": f"{COMMAND} help",
}


def usage(subcommand: str) -> str:
    """The one-line usage of ``subcommand``."""
    return _USAGE[subcommand]


def unescape(text: str) -> str:
    """Slack escapes ``&``, ``<`` and ``>`` in command text; undo it (``&amp;`` last)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def parse(text: str) -> Command:
    """Parse what follows ``/incident`` into a command, or raise :class:`UsageError`."""
    text = unescape(text).strip()
    if not text:
        return Help()
    head, rest = _split(text)
    name = head.lower()
    if name in ("help", "-h", "--help", "?"):
        return Help()
    if name == "run":
        return _run(rest)
    if name == "status":
        return Status(_incident_id(rest, "status")) if rest else Status()
    if name == "list":
        _no_arguments(rest, "list")
        return ListIncidents()
    if name == "note":
        return _note(rest)
    if name == "cancel":
        return _cancel(rest)
    raise UsageError(_unknown(head))


def _split(text: str) -> tuple[str, str]:
    """The first word and the rest (any whitespace separates: notes may span lines)."""
    parts = re.split(r"\s+", text.strip(), maxsplit=1)
    return parts[0], (parts[1].strip() if len(parts) > 1 else "")


def _unknown(head: str) -> str:
    close = difflib.get_close_matches(head.lower(), SUBCOMMANDS, n=1, cutoff=0.6)
    hint = f" Did you mean `{COMMAND} {close[0]}`?" if close else ""
    known = ", ".join(SUBCOMMANDS)
    return f"unknown subcommand {head!r}.{hint} Known: {known}; try `{COMMAND} help`."


def _bad(subcommand: str, problem: str) -> UsageError:
    return UsageError(f"{problem}; usage: `{usage(subcommand)}`", subcommand=subcommand)


def _no_arguments(rest: str, subcommand: str) -> None:
    if rest:
        raise _bad(subcommand, f"`{subcommand}` takes no arguments (got {rest!r})")


def _run(rest: str) -> Run:
    try:
        words = shlex.split(rest.translate(_SMART_QUOTES))
    except ValueError as exc:  # an unbalanced quote
        raise _bad("run", f"cannot read the arguments: {exc}") from exc
    if not words:
        raise _bad("run", "which playbook? name one")
    playbook, *pairs = words
    if "=" in playbook:
        raise _bad(
            "run", f"the playbook name comes first, before key=value pairs (got {playbook!r})"
        )
    if not _PLAYBOOK.match(playbook):
        raise _bad("run", f"{playbook!r} is not a playbook name (lowercase letters, digits, -)")
    inputs: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise _bad("run", f"expected key=value, got {pair!r}")
        if not _INPUT.match(key):
            raise _bad("run", f"{key!r} is not an input name (letters, digits, _)")
        if key in inputs:
            raise _bad("run", f"input {key!r} is given twice")
        inputs[key] = value
    return Run(playbook, inputs)


def _incident_id(word: str, subcommand: str) -> str:
    if len(word.split()) > 1:
        raise _bad(subcommand, f"expected one incident id, got {word!r}")
    match = INCIDENT_ID.match(word)
    if match is None:
        raise _bad(subcommand, f"{word!r} is not an incident id (like INC-42)")
    return f"INC-{match.group(1)}"


def _note(rest: str) -> Note:
    first, text = _split(rest)
    if not first:
        raise _bad("note", "which incident? give its id and the text")
    incident_id = _incident_id(first, "note")
    if not text:
        raise _bad("note", "a note needs some text after the incident id")
    return Note(incident_id, text)


def _cancel(rest: str) -> Cancel:
    if not rest:
        raise _bad("cancel", "which run? give its id (like run-1a2b3c4d5e6f)")
    if len(rest.split()) > 1:
        raise _bad("cancel", f"expected one run id, got {rest!r}")
    if not RUN_ID.match(rest):
        raise _bad("cancel", f"{rest!r} is not a run id (like run-1a2b3c4d5e6f)")
    return Cancel(rest)
