"""Block Kit renderers (bot/slack/blocks.py): pure functions of timeline events and records.

What the app's click handlers rely on is pinned here: the exact button labels, action ids
and JSON values, the short digest people compare, and that no text from a person or a
payload can become a live mention or link.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.core.timeline import GENESIS, NewEvent, StoredEvent, event_id, seal
from bot.service import IncidentStatus
from bot.slack import blocks
from bot.store import Incident, RunRecord

DIGEST = "ab12cd34ef56" + "0" * 52
AT = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def event(
    kind: str,
    payload: Mapping[str, Any],
    *,
    step: str | None = "gate",
    actor: str = "irbot",
    run: str = "run-abc",
    seq: int = 1,
) -> StoredEvent:
    new = NewEvent(
        id=event_id(run, kind, seq),
        incident_id="INC-7",
        kind=kind,
        actor=actor,
        at=AT,
        run_id=run,
        step_id=step,
        payload=payload,
    )
    return seal(new, seq, GENESIS)


def requested(**extra: Any) -> StoredEvent:
    payload = {
        "gate": "gate",
        "digest": DIGEST,
        "min": 2,
        "from": ["group:sre", "user:U04"],
        "expires_at": (AT + timedelta(minutes=15)).isoformat(),
        "covers": ["rotate", "restart"],
        "message": "Rotate the leaked key",
        **extra,
    }
    return event("approval.requested", payload)


def answer(kind: str, approvers: list[str], **extra: Any) -> StoredEvent:
    payload = {"gate": "gate", "approvers": approvers, "user": approvers[-1] if approvers else None}
    return event(kind, {**payload, **extra}, seq=2)


def incident(**extra: Any) -> Incident:
    values: dict[str, Any] = {
        "id": "INC-7",
        "number": 7,
        "key": "run-abc",
        "title": "leak-response: secret_id=db/main",
        "severity": "high",
        "status": "open",
        "playbook": "leak-response",
        "opened_at": AT,
    }
    return Incident(**{**values, **extra})


def run_record(status: str = "waiting", **extra: Any) -> RunRecord:
    values: dict[str, Any] = {
        "id": "run-abc",
        "incident_id": "INC-7",
        "playbook": "leak-response",
        "version": 1,
        "sha256": "0" * 64,
        "inputs": {},
        "requester": "U01",
        "status": status,
        "created_at": AT,
        "updated_at": AT,
    }
    return RunRecord(**{**values, **extra})


def texts(value: Any) -> Iterator[str]:
    """Every string inside blocks (texts, values, ids)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts(item)


def buttons(rendered: blocks.Rendered) -> list[dict[str, Any]]:
    return [
        element
        for block in rendered.blocks
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def mrkdwn(rendered: blocks.Rendered) -> str:
    """The text people read (sections and context; not the buttons)."""
    return "\n".join(
        text
        for block in rendered.blocks
        if block["type"] != "actions"
        for text in texts(block.get("text") or block.get("elements") or [])
    )


# --------------------------------------------------------------------------- approvals


def test_approval_request_has_exactly_approve_and_reject_with_gate_values() -> None:
    """Two buttons labelled exactly Approve and Reject, ids irbot_approve/irbot_reject,
    and a value naming run, gate and the full digest (identity is never in it)."""
    rendered = blocks.approval_request(requested())
    approve, reject = buttons(rendered)
    assert approve["text"]["text"] == "Approve"
    assert reject["text"]["text"] == "Reject"
    assert (approve["action_id"], reject["action_id"]) == ("irbot_approve", "irbot_reject")
    assert approve["style"] == "primary"
    assert reject["style"] == "danger"
    value = {"run_id": "run-abc", "gate": "gate", "digest": DIGEST}
    assert json.loads(approve["value"]) == value
    assert json.loads(reject["value"]) == value


def test_approval_request_shows_the_plan_and_the_short_digest() -> None:
    """The message, covered steps, who may approve and the 12-character digest are shown;
    the full digest only travels in the button value."""
    text = mrkdwn(blocks.approval_request(requested()))
    assert "Rotate the leaked key" in text
    assert "`rotate`" in text
    assert "`restart`" in text
    assert "`ab12cd34ef56`" in text
    assert DIGEST not in text
    assert "group *sre*" in text
    assert "<@U04>" in text
    assert "0 of 2" in text
    assert "<!date^" in text  # the expiry, in each reader's own time zone


def test_approval_request_lists_resolved_targets_when_present() -> None:
    """Targets in the payload are listed with their resolved arguments."""
    targets = [{"id": "rotate", "with": {"secret_id": "db/main"}}]
    text = mrkdwn(blocks.approval_request(requested(targets=targets)))
    assert "`rotate` secret_id=db/main" in text


def test_counted_vote_updates_the_tally_and_keeps_the_buttons() -> None:
    """After one approval the message reads "1 of 2: <@U02>" and can still be clicked."""
    rendered = blocks.approval_state(requested(), answer("approval.counted", ["U02"]))
    assert "1 of 2: <@U02>" in mrkdwn(rendered)
    assert [b["text"]["text"] for b in buttons(rendered)] == ["Approve", "Reject"]


def test_final_states_remove_the_buttons() -> None:
    """Granted, rejected and expired gates show their outcome and offer nothing to click."""
    granted = blocks.approval_state(requested(), answer("approval.granted", ["U02", "U03"]))
    assert buttons(granted) == []
    assert "Approved" in mrkdwn(granted)
    assert "2 of 2: <@U02>, <@U03>" in mrkdwn(granted)
    rejected = blocks.approval_state(
        requested(), answer("approval.rejected", ["U03"], reason="not now")
    )
    assert buttons(rejected) == []
    assert "Rejected* by <@U03>: not now" in mrkdwn(rejected)
    expired = blocks.approval_state(
        requested(), answer("approval.expired", [], reason="ttl passed")
    )
    assert buttons(expired) == []
    assert "Expired" in mrkdwn(expired)


def test_breakglass_is_flagged_loudly() -> None:
    """A break-glass pass names the person and the reason and says it was done alone."""
    rendered = blocks.approval_state(
        requested(), answer("approval.breakglass", ["U09"], reason="prod is down")
    )
    text = mrkdwn(rendered)
    assert buttons(rendered) == []
    assert ":rotating_light: *BREAK-GLASS* by <@U09>: prod is down" in text
    assert "alone" in text
    assert "BREAK-GLASS" in rendered.text


# --------------------------------------------------------------------------- escaping


def test_user_text_cannot_ping_or_link() -> None:
    """<!channel>, links and & in payload text are escaped in every block."""
    hostile = "<!channel> see <https://evil.example|login> & <@U0BOSS>"
    rendered = blocks.approval_request(requested(message=hostile))
    text = mrkdwn(rendered)
    assert "&lt;!channel&gt; see &lt;https://evil.example|login&gt; &amp; &lt;@U0BOSS&gt;" in text
    assert "<!channel>" not in text
    assert "<https://evil" not in text
    note = blocks.run_line(event("note", {"text": hostile}, actor="user:U05", step=None))
    assert note is not None
    assert "<!channel>" not in mrkdwn(note)
    assert "<@U05>" in mrkdwn(note)


def test_escape_and_mentions() -> None:
    """escape() covers &, < and >; mention() makes live mentions only of Slack user ids."""
    assert blocks.escape("a<b>&c") == "a&lt;b&gt;&amp;c"
    assert blocks.mention("user:U02") == "<@U02>"
    assert blocks.mention("W0ABC") == "<@W0ABC>"
    assert blocks.mention("group:sre") == "group *sre*"
    assert blocks.mention("alice<x>") == "alice&lt;x&gt;"
    assert blocks.actor_mention("webhook:pagerduty") == "webhook:pagerduty"


# --------------------------------------------------------------------------- tasks


def task_event(**extra: Any) -> StoredEvent:
    payload = {
        "instructions": "Revoke the key at the provider",
        "assignee": "group:security",
        "secret_input": False,
        "secret_label": None,
        "expires_at": (AT + timedelta(days=1)).isoformat(),
        **extra,
    }
    return event("manual.requested", payload, step="revoke")


def test_task_request_has_done_and_failed_buttons() -> None:
    """Done/Failed with ids irbot_task_done/irbot_task_failed and value {run_id, step}."""
    rendered = blocks.task_request(task_event())
    done, failed = buttons(rendered)
    assert (done["text"]["text"], failed["text"]["text"]) == ("Done", "Failed")
    assert (done["action_id"], failed["action_id"]) == ("irbot_task_done", "irbot_task_failed")
    assert json.loads(done["value"]) == {"run_id": "run-abc", "step": "revoke"}
    text = mrkdwn(rendered)
    assert "Revoke the key at the provider" in text
    assert "group *security*" in text
    assert "secure form" not in text


def test_task_asking_for_a_secret_says_done_opens_a_secure_form() -> None:
    """A task with secret_input tells people that Done opens a form for the named secret."""
    text = mrkdwn(blocks.task_request(task_event(secret_input=True, secret_label="New API key")))
    assert "*Done* opens a secure form for New API key" in text


def test_task_state_replaces_the_buttons_with_the_outcome() -> None:
    """Done and failed tasks show who answered; the buttons are gone."""
    done = event(
        "manual.completed",
        {"completed_by": "U04", "status": "done", "note": None, "secret_ref": "sm:v:arn"},
        step="revoke",
        seq=2,
    )
    rendered = blocks.task_state(task_event(), done)
    assert buttons(rendered) == []
    assert "*Done* · <@U04>" in mrkdwn(rendered)
    assert "sm:v:arn" not in mrkdwn(rendered)
    failed = event(
        "manual.completed",
        {"completed_by": "U04", "status": "failed", "note": "no access"},
        step="revoke",
        seq=2,
    )
    assert "*Failed* · <@U04>: no access" in mrkdwn(blocks.task_state(task_event(), failed))


# --------------------------------------------------------------------------- lines and status


def test_run_lines_for_failures_endings_and_notes_only() -> None:
    """Step failures, run endings and notes become one short line; other kinds none."""
    failed = blocks.run_line(event("step.failed", {"error": "boom"}, step="rotate"))
    assert failed is not None
    assert failed.text == ":warning: Step rotate failed: boom"
    finished = blocks.run_line(event("run.finished", {"status": "succeeded", "detail": "ok"}))
    assert finished is not None
    assert "finished: ok" in finished.text
    rejected = blocks.run_line(event("run.failed", {"status": "rejected", "detail": "no"}))
    assert rejected is not None
    assert rejected.text == ":no_entry: Run run-abc rejected: no"
    cancelled = blocks.run_line(event("run.cancelled", {"by": "U02"}, step=None))
    assert cancelled is not None
    assert "cancelled by <@U02>" in mrkdwn(cancelled)
    assert blocks.run_line(event("step.started", {})) is None


def test_status_text_follows_the_run() -> None:
    """The root's status line: waiting with the tally, running, and how the run ended;
    a sub-playbook's ending does not end the incident's status."""
    assert blocks.status_text(requested()) == "waiting for approval at gate (0 of 2)"
    counted = answer("approval.counted", ["U02"], summary="1 of 2: U02")
    assert blocks.status_text(counted) == "waiting for approval at gate (1 of 2: U02)"
    failed = event("run.failed", {"status": "failed", "detail": "step x"})
    assert blocks.status_text(failed) == "failed: step x"
    assert blocks.status_text(failed, top_level=False) is None
    assert blocks.status_text(event("step.succeeded", {})) is None


def test_root_message_shows_incident_requester_run_and_status() -> None:
    """The root names the incident, who started it, the run and the status; break-glass
    is flagged."""
    rendered = blocks.root_message(
        incident(title="x <!here>"),
        status="running",
        run_id="run-abc",
        requester="user:U01",
        breakglass=True,
    )
    text = mrkdwn(rendered)
    assert "*INC-7* · x &lt;!here&gt;" in text
    assert "started by <@U01>" in text
    assert "`run-abc`" in text
    assert "*Status:* running" in text
    assert "BREAK-GLASS" in text
    assert rendered.text.startswith("INC-7: x &lt;!here&gt;")  # the fallback is parsed too


def test_channel_topic_is_plain_and_short() -> None:
    """Topics are plain text of at most 250 characters."""
    topic = blocks.channel_topic(incident(title="t" * 400), "running")
    assert topic.startswith("INC-7 · running · ttt")
    assert len(topic) == 250


# --------------------------------------------------------------------------- commands, Home


def test_incident_status_blocks_list_runs_and_what_waits() -> None:
    """/incident status: the incident, each run with its state, the open gate."""
    status = IncidentStatus(
        incident(slack_channel="C0INC1234"),
        [run_record(breakglass=True, detail="at gate")],
        [requested()],
    )
    rendered = blocks.incident_status_blocks(status)
    text = mrkdwn(rendered)
    assert "*INC-7*" in text
    assert "<#C0INC1234>" in text
    assert "`run-abc` leak-response · waiting" in text
    assert "break-glass" in text
    assert "approval at gate `gate` of run `run-abc` · plan `ab12cd34ef56`" in text
    assert rendered.text.startswith("INC-7")


def test_incident_list_blocks_empty_and_full() -> None:
    """/incident list says when nothing is open, and caps a long list."""
    assert blocks.incident_list_blocks([]).text == "No open incidents."
    many = [incident(id=f"INC-{n}", number=n) for n in range(1, 26)]
    rendered = blocks.incident_list_blocks(many)
    assert len(rendered.blocks) == 1 + blocks.LIST_MAX + 1
    assert "and 5 more" in mrkdwn(rendered)


def test_home_view_shows_waiting_items_then_open_incidents() -> None:
    """App Home: a home view with what waits for the viewer and the open incidents."""
    view = blocks.home_view([incident()], [(run_record(), requested())])
    assert view["type"] == "home"
    headers = [b["text"]["text"] for b in view["blocks"] if b["type"] == "header"]
    assert headers == ["Waiting for you", "Open incidents"]
    text = "\n".join(texts(view["blocks"]))
    assert "approval at gate `gate`" in text
    assert "*INC-7*" in text
    empty = blocks.home_view([], [])
    assert "Nothing waits for you." in "\n".join(texts(empty["blocks"]))
