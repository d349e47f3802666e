"""One typed command -> one call on the service -> the reply Slack would give.

``/incident`` commands go through :mod:`bot.slack.dispatch`, the code the Slack command
handler uses; button presses are answered with the same reply texts
(:mod:`bot.slack.replies`) as the Slack click handlers. Errors are raised
(:class:`IrbotError`) for the caller to show.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.core import slash
from bot.core.errors import UsageError
from bot.engine import client as engine
from bot.service import Service
from bot.shell import lines
from bot.slack import dispatch, replies
from bot.slack.dispatch import Reply


def require_local_approvals(service: Service) -> None:
    """Anyone can be anyone in the shell (``/as``), so pressing buttons here is the same
    local-only privilege as ``irbot approve``: in production votes come signed from Slack."""
    if not service.settings.local_approvals:
        raise UsageError(
            "local approvals are off: set IRBOT_LOCAL_APPROVALS=1 to press buttons in the "
            "shell (local use and tests only; in production use the buttons in Slack)"
        )


async def incident(service: Service, text: str, user: str) -> Reply:
    """``/incident …`` as the Slack command handler answers it."""
    return await dispatch.answer(service, slash.parse(text), user)


async def vote(service: Service, command: lines.Vote, user: str) -> Reply:
    """Approve or Reject pressed: the engine decides, and says why when it refuses."""
    require_local_approvals(service)
    result = await service.avote(
        command.run_id,
        user=user,
        decision=command.decision,
        reason=command.reason,
        digest=command.digest,
    )
    answer = result.answer
    refused = answer is not None and answer.get("outcome") == "refused"
    return Reply(replies.vote(answer, result.run_id, command.decision), refused=refused)


async def task(service: Service, command: lines.TaskAnswer, user: str) -> Reply:
    """Done or Failed pressed on a manual task (a secret it asks for read from a file)."""
    require_local_approvals(service)
    step, note = command.step, command.reason
    if command.step_in_reason and note is not None:
        word, after = lines.split_step(note)
        # Read-only, as the Slack Done handler looks: is `word` an open task of the run?
        if await asyncio.to_thread(engine.open_task, service.store, command.run_id, word):
            step, note = word, after
    secret = None
    if command.secret_file is not None:
        secret = await asyncio.to_thread(_read_secret, command.secret_file)
    work = service.atask(
        command.run_id, user=user, status=command.status, step_id=step, note=note, secret=secret
    )
    del secret  # only the service holds it from here on
    result = await work
    answer = result.answer
    refused = answer is not None and answer.get("outcome") != "accepted"
    text = replies.task(answer, result.run_id, result.step_id, command.status)
    return Reply(text, refused=refused)


def _read_secret(name: str) -> str:
    """The file's content, without its final newline; errors never quote the content."""
    path = Path(name).expanduser()
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read the secret file {name!r}: {reason}") from exc
