"""The ``/incident`` text parser (bot/core/slash.py) and the button-value readers
(bot/slack/values.py): pure functions, every bad input a UsageError with a useful text."""

from __future__ import annotations

import json

import pytest

from bot.core import slash
from bot.core.errors import UsageError
from bot.slack import blocks, values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", slash.Help()),
        ("  help ", slash.Help()),
        ("run leak-response", slash.Run("leak-response", {})),
        (
            'run leak-response secret_id=prod/db deployments=api,worker reason="leaked in CI"',
            slash.Run(
                "leak-response",
                {"secret_id": "prod/db", "deployments": "api,worker", "reason": "leaked in CI"},
            ),
        ),
        ("run gated note=\u201ctwo words\u201d", slash.Run("gated", {"note": "two words"})),
        ("run gated q=a&amp;b&lt;c&gt;", slash.Run("gated", {"q": "a&b<c>"})),
        ("run gated empty=", slash.Run("gated", {"empty": ""})),
        ("RUN gated", slash.Run("gated", {})),
        ("status", slash.Status()),
        ("status inc-42", slash.Status("INC-42")),
        ("list", slash.ListIncidents()),
        (
            "note INC-7 rotated by hand,  see\n the doc",
            slash.Note("INC-7", "rotated by hand,  see\n the doc"),
        ),
        ("cancel run-1a2b3c4d5e6f", slash.Cancel("run-1a2b3c4d5e6f")),
    ],
)
def test_parses_every_subcommand(text: str, expected: slash.Command) -> None:
    """Each subcommand becomes its typed command; quotes (also typographic), Slack's
    HTML escapes and case of the subcommand are handled; note text keeps its spacing."""
    assert slash.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("stauts", "Did you mean `/incident status`?"),
        ("deploy everything", "unknown subcommand 'deploy'"),
        ("run", "which playbook?"),
        ("run secret_id=x", "the playbook name comes first"),
        ("run Leak_Response", "is not a playbook name"),
        ("run gated target", "expected key=value, got 'target'"),
        ("run gated 9lives=x", "is not an input name"),
        ("run gated a=1 a=2", "input 'a' is given twice"),
        ('run gated a="unbalanced', "cannot read the arguments"),
        ("status 42", "is not an incident id"),
        ("status INC-1 INC-2", "expected one incident id"),
        ("list everything", "takes no arguments"),
        ("note", "which incident?"),
        ("note INC-3", "a note needs some text"),
        ("note inc-x hello", "is not an incident id"),
        ("cancel", "which run?"),
        ("cancel 42", "is not a run id"),
        ("cancel run-1 run-2", "expected one run id"),
    ],
)
def test_bad_commands_explain_themselves(text: str, says: str) -> None:
    """Unknown subcommands suggest the closest one; bad arguments name the problem and
    show the usage line."""
    with pytest.raises(UsageError) as caught:
        slash.parse(text)
    assert says in caught.value.show()
    if text.split(maxsplit=1)[0] in slash.SUBCOMMANDS:
        assert "usage: `/incident" in caught.value.show()


def test_help_lists_every_subcommand() -> None:
    """The help text names each subcommand the parser accepts."""
    for name in slash.SUBCOMMANDS:
        assert f"/incident {name}" in slash.HELP


def test_button_values_written_by_blocks_are_read_back() -> None:
    """The values the blocks module puts on buttons parse into the same ids."""
    gate = values.gate_ref(blocks.approval_value("run-0123456789ab", "gate", "d" * 64))
    assert gate == values.GateRef("run-0123456789ab", "gate", "d" * 64)
    task = values.task_ref(blocks.task_value("run-0123456789ab", "check"))
    assert task == values.TaskRef("run-0123456789ab", "check")


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "not json",
        "[1, 2]",
        json.dumps({"run_id": "run-1", "gate": "g"}),  # no digest: approvers sign a plan
        json.dumps({"run_id": "INC-1", "gate": "g", "digest": "d"}),
        json.dumps({"run_id": "run-1", "gate": 7, "digest": "d"}),
        "x" * 5000,
    ],
)
def test_malformed_approval_values_are_usage_errors(value: object) -> None:
    """A tampered or truncated button value is refused before anything is attempted."""
    with pytest.raises(UsageError):
        values.gate_ref(value)


def test_modal_metadata_round_trips_without_user_input() -> None:
    """private_metadata carries the ids and where to answer, and reads back the same."""
    ref = values.TaskRef("run-0123456789ab", "handover")
    where = values.Where("C0INCIDENTS", "1700000000.000100")
    text = values.dump(ref, where)
    assert values.load_task(text) == (ref, where)
    assert set(json.loads(text)) == {"run_id", "step", "channel", "thread_ts"}


def test_identity_comes_from_the_payload_user() -> None:
    """The clicker is body.user.id; a payload without one is refused."""
    assert values.clicker({"user": {"id": "U02"}}) == "U02"
    with pytest.raises(UsageError):
        values.clicker({"user": {}})


def test_manifest_matches_the_app() -> None:
    """The app manifest declares /incident, one request URL for commands, interactivity
    and events, the Home tab and its event, the scopes irbot uses, and HTTP mode."""
    from pathlib import Path

    import yaml

    import bot.slack

    manifest = yaml.safe_load((Path(bot.slack.__file__).parent / "manifest.yaml").read_text())
    url = "https://YOUR-HOST/slack/events"
    (command,) = manifest["features"]["slash_commands"]
    assert (command["command"], command["url"]) == (slash.COMMAND, url)
    settings = manifest["settings"]
    assert settings["interactivity"] == {"is_enabled": True, "request_url": url}
    assert settings["event_subscriptions"]["request_url"] == url
    assert settings["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert settings["socket_mode_enabled"] is False
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert set(manifest["oauth_config"]["scopes"]["bot"]) >= {
        "chat:write",
        "commands",
        "channels:history",
        "groups:history",
        "channels:read",
        "groups:read",
        "im:write",
        "users:read",
        "channels:manage",
        "channels:write.invites",
        "channels:write.topic",
    }
