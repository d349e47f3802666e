"""``/incident`` through the app, App Home, and Web API trouble while answering.

Each command is a signed request; its answer is the ack itself (ephemeral JSON), or,
past the ack budget, a "starting…" ack and a follow-up through the response_url.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from bot.engine import runtime
from bot.service import Service
from bot.slack import blocks
from tests.engine_support import Harness
from tests.fake_slack import FakeSlack, fake_slack_fixture  # noqa: F401
from tests.test_slack_app_support import (
    SlackDoor,
    ack_text,
    buttons,
    harness,
    next_call,
    open_door,
    run_with_engine,
    teach,
    until,
)

RUN_ID = re.compile(r"`(run-[0-9a-f]{12})`")


@pytest.fixture
def fake(fake_slack: FakeSlack) -> FakeSlack:
    return teach(fake_slack)


@pytest.fixture
def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    return harness(tmp_path, f"sqlite:///{tmp_path / 'irbot.sqlite'}", monkeypatch)


async def answer(door: SlackDoor, text: str, user: str = "U01") -> dict[str, object]:
    """The ack of ``/incident <text>``: ephemeral, with its text (and blocks)."""
    response = await door.command(text, user)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    assert body["response_type"] == "ephemeral"
    return body


def blocks_text(body: dict[str, object]) -> str:
    return repr(body.get("blocks"))


def test_help_unknown_and_bad_arguments_get_helpful_ephemeral_replies(
    h: Harness, fake: FakeSlack
) -> None:
    """help lists the subcommands; a typo gets a suggestion; bad arguments name the
    problem; an unknown playbook or incident and a starter without rights are told why.
    Nothing is started and no Web API call is made for any of them."""

    async def scenario(service: Service) -> None:
        async with open_door(service, fake) as door:
            assert "/incident cancel RUN-ID" in str((await answer(door, "help"))["text"])
            assert "/incident run PLAYBOOK" in str((await answer(door, ""))["text"])
            typo = str((await answer(door, "stauts INC-1"))["text"])
            assert "unknown subcommand 'stauts'" in typo
            assert "Did you mean `/incident status`?" in typo
            bad = str((await answer(door, "run gated target"))["text"])
            assert "expected key=value, got 'target'" in bad
            assert "usage: `/incident run PLAYBOOK" in bad
            assert "a note needs some text" in str((await answer(door, "note INC-1"))["text"])
            unknown = str((await answer(door, "run nosuch"))["text"])
            assert "was not started" in unknown
            assert "nosuch" in unknown
            refused = str((await answer(door, "run gated", user="U05"))["text"])
            assert "U05 may not start 'gated'" in refused
            missing = str((await answer(door, "status INC-99"))["text"])
            assert "INC-99" in missing
            assert "Traceback" not in unknown + refused + missing
        assert h.store.list_runs() == []
        assert fake.calls() == []

    run_with_engine(h, scenario)


def test_status_list_note_and_cancel(h: Harness, fake: FakeSlack) -> None:
    """A started run shows in `status INC-1` (with the gate it waits at), in `list`, and,
    for an sre member, in `status` as waiting for them; `note` lands on the timeline as
    the typer's; `cancel` stops the run."""

    async def scenario(service: Service) -> None:
        async with open_door(service, fake, ack_budget=2.5) as door:
            started = str((await answer(door, "run gated target=db-2"))["text"])
            match = RUN_ID.search(started)
            assert match is not None, started
            run_id = match.group(1)
            await h.wait_for(run_id, {"waiting"})

            status = await answer(door, "status inc-1")
            assert "INC-1" in str(status["text"])
            assert run_id in blocks_text(status)
            assert "approval at gate" in blocks_text(status)

            mine = await answer(door, "status", user="U02")
            assert mine["text"] == "1 open incident(s); 1 waiting for you"
            assert run_id in blocks_text(mine)
            theirs = await answer(door, "status", user="U01")  # the requester cannot approve
            assert "0 waiting for you" in str(theirs["text"])

            listed = await answer(door, "list")
            assert "INC-1" in str(listed["text"])

            noted = await answer(door, "note INC-1 rotated &lt;db-2&gt; by hand", user="U02")
            assert noted["text"] == ":memo: Noted on *INC-1*."
            note = [e for e in h.store.events(incident_id="INC-1") if e.kind == "note"]
            assert [(e.actor, e.payload["text"]) for e in note] == [
                ("user:U02", "rotated <db-2> by hand")
            ]

            cancelled = await answer(door, f"cancel {run_id}", user="U02")
            assert cancelled["text"] == f":octagonal_sign: `{run_id}` is cancelled."
            assert h.store.get_run(run_id).status == "cancelled"
            again = str((await answer(door, f"cancel {run_id}", user="U02"))["text"])
            assert "already finished (cancelled)" in again

    run_with_engine(h, scenario)


def test_a_slow_start_acks_with_the_run_id_and_follows_up(h: Harness, fake: FakeSlack) -> None:
    """Past the ack budget the ack already names the run id; the result follows through
    the command's response_url, naming the same run, which exists."""

    async def scenario(service: Service) -> None:
        async with open_door(service, fake, ack_budget=0) as door:
            url = door.response_url()
            response = await door.command("run gated", "U01", response_url=url)
            ack = ack_text(response)
            assert ack.startswith(":hourglass_flowing_sand: Starting *gated* as `run-"), ack
            match = RUN_ID.search(ack)
            assert match is not None
            method = url.removeprefix(fake.url)
            follow = await next_call(fake, method, 0)
            assert follow.params["text"].startswith(":rocket: Started *gated*")
            assert f"`{match.group(1)}`" in follow.params["text"]
            assert follow.params["response_type"] == "ephemeral"
            assert h.store.get_run(match.group(1)).requester == "U01"

            url = door.response_url()
            await door.command("run gated", "U05", response_url=url)
            refused = await next_call(fake, url.removeprefix(fake.url), 0)
            assert "was not started: U05 may not start 'gated'" in refused.params["text"]
            assert len(h.store.list_runs()) == 1

    run_with_engine(h, scenario)


def test_app_home_shows_open_incidents_and_what_waits_for_the_viewer(
    h: Harness, fake: FakeSlack
) -> None:
    """Opening the Home tab publishes a view for that user with the open incident and
    the gate waiting for them; the Messages tab publishes nothing."""

    async def scenario(service: Service) -> None:
        run_id = h.submit("gated", "U01")
        await h.wait_for(run_id, {"waiting"})
        async with open_door(service, fake) as door:
            response = await door.event({"type": "app_home_opened", "user": "U02", "tab": "home"})
            assert response.status_code == 200
            published = await next_call(fake, "views.publish", 0)
            assert published.params["user_id"] == "U02"
            view = published.params["view"]
            assert view["type"] == "home"
            assert run_id in repr(view["blocks"])
            assert "INC-1" in repr(view["blocks"])
            assert "Nothing waits for you" not in repr(view["blocks"])

            await door.event({"type": "app_home_opened", "user": "U02", "tab": "messages"})
            await door.event({"type": "app_home_opened", "user": "U01", "tab": "home"})
            second = await next_call(fake, "views.publish", 1)
            assert second.params["user_id"] == "U01"
            assert "Nothing waits for you" in repr(second.params["view"]["blocks"])
            assert len(fake.calls("views.publish")) == 2

    run_with_engine(h, scenario)


def test_web_api_trouble_never_breaks_a_handler(h: Harness, fake: FakeSlack) -> None:
    """A 429 with Retry-After on the answer is retried and the answer arrives; a failing
    views.open (expired trigger) is told to the clicker; a failing chat.postEphemeral
    falls back to the click's response_url. The run is untouched throughout."""

    async def scenario(service: Service) -> None:
        run_id = h.submit("gated", "U01")
        requested = await until(
            lambda: [e for e in h.store.events(run_id=run_id) if e.kind == "approval.requested"]
        )
        found = buttons(blocks.approval_request(requested[0]))
        async with open_door(service, fake) as door:
            fake.rate_limit("chat.postEphemeral", times=1, retry_after=1)
            await door.click(blocks.APPROVE_ACTION, found[blocks.APPROVE_ACTION], "U01")
            await until(lambda: len(fake.calls("chat.postEphemeral")) == 2, what="the retry")
            retried = fake.calls("chat.postEphemeral")[1]
            assert "cannot approve it" in retried.params["text"]

            fake.fail("views.open", "expired_trigger_id")
            await door.click(blocks.REJECT_ACTION, found[blocks.REJECT_ACTION], "U02")
            told = await next_call(fake, "chat.postEphemeral", 2)
            assert "did not open the form" in told.params["text"]

            fake.fail("chat.postEphemeral", "channel_not_found")
            payload = door.click_payload(blocks.APPROVE_ACTION, found[blocks.APPROVE_ACTION], "U05")
            await door.interact(payload)
            method = str(payload["response_url"]).removeprefix(fake.url)
            fallback = await next_call(fake, method, 0)
            assert "not allowed to vote here" in fallback.params["text"]
            assert fallback.params["response_type"] == "ephemeral"
            assert fallback.params["replace_original"] is False
        assert h.store.get_run(run_id).status == "waiting"

    run_with_engine(h, scenario)


class BrokenService(Service):
    """A service whose start fails in a way nobody planned for."""

    async def astart(self, *args: object, **kwargs: object) -> Any:
        raise RuntimeError("database on fire")


def test_an_unexpected_failure_is_a_short_apology_not_a_500(
    h: Harness, fake: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug behind a command still gets a 200 ephemeral answer without details; the
    server log names the handler and the error."""

    async def scenario() -> None:
        store = runtime.open_store(h.settings)
        try:
            async with open_door(BrokenService(h.settings, store), fake) as door:
                body = await answer(door, "run gated")
        finally:
            store.close()
        assert "internal error" in str(body["text"])
        assert "database on fire" not in str(body["text"])

    asyncio.run(scenario())
    logged = capsys.readouterr().out
    assert "slack.handler_failed" in logged
    assert "RuntimeError" in logged
