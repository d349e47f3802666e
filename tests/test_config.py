"""irbot.yaml (bot.core.config): the minimal and example forms load; every kind of problem is
reported at its file:line:col, all at once; access questions fail closed."""

from __future__ import annotations

import os
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.core.approvals import Gate, Tally, Vote, decide
from bot.core.config import Config, config_path, load_config, parse_config
from bot.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
FILE = "irbot.yaml"

MINIMAL = """\
slack: {channel: C0INCIDENTS}
groups: {sre: [U01, U02, U03], security: [U04], breakglass: []}
playbooks: {leak-response: {start: [sre, security]}}
"""


def doc(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def pos(text: str, marker: str, nth: int = 0) -> tuple[int, int]:
    """1-based line and column of the ``nth`` occurrence of ``marker`` in ``text``."""
    index = -1
    for _ in range(nth + 1):
        index = text.index(marker, index + 1)
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def problems(text: str) -> list[dict[str, Any]]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, FILE)
    found: list[dict[str, Any]] = info.value.context["problems"]
    lines = info.value.message.splitlines()
    assert len(lines) == len(found)
    for line, problem in zip(lines, found, strict=True):
        assert line == f"{FILE}:{problem['line']}:{problem['column']}: {problem['message']}"
    return found


def only(text: str) -> tuple[tuple[int, int], str]:
    (problem,) = problems(text)
    return (problem["line"], problem["column"]), problem["message"]


# --------------------------------------------------------------------------- valid forms


def test_the_minimal_form_loads() -> None:
    config = parse_config(MINIMAL, FILE)
    assert config.slack.channel == "C0INCIDENTS"
    assert config.slack.incident_channels is False
    assert config.triggers == []
    assert config.breakglass_group == "breakglass"
    assert config.members("breakglass") == frozenset()


def test_the_example_file_loads_and_covers_the_seed_playbooks() -> None:
    config = load_config(REPO / "irbot.example.yaml")
    seeds = {p.stem for p in (REPO / "playbooks").glob("*.yaml")}
    assert (
        set(config.playbooks)
        == seeds
        == {
            "leak-response",
            "compromise-detection",
            "lost-access",
            "rotate-api-key",
        }
    )
    assert all(set(access.start) == {"sre", "security"} for access in config.playbooks.values())
    assert set(config.groups) == {"sre", "security", "breakglass"}
    assert {route.source for route in config.triggers} == {"alertmanager", "github_secret_scanning"}
    assert {route.playbook for route in config.triggers} <= seeds


def test_members_groups_of_and_group_map() -> None:
    config = parse_config(MINIMAL, FILE)
    assert config.members("sre") == {"U01", "U02", "U03"}
    assert config.members("nope") == frozenset()
    assert config.groups_of("U04") == {"security"}
    assert config.groups_of("U99") == frozenset()
    both = parse_config(MINIMAL.replace("security: [U04]", "security: [U04, U01]"), FILE)
    assert both.groups_of("U01") == {"sre", "security"}
    assert config.group_map() == {
        "sre": frozenset({"U01", "U02", "U03"}),
        "security": frozenset({"U04"}),
        "breakglass": frozenset(),
    }


def test_group_map_feeds_the_gate_rules() -> None:
    config = parse_config(MINIMAL, FILE)
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    gate = Gate("g", 1, ("group:security",), "U01", "d", t0 + timedelta(minutes=5))
    vote = Vote("U04", "approve", "d", at=t0)
    result = decide(gate, Tally.pending(), vote, config.group_map(), t0)
    assert result.tally.state == "granted"


def test_can_start_fails_closed() -> None:
    text = MINIMAL.replace("playbooks: {", "playbooks: {lost-access: {start: []}, ")
    config = parse_config(text, FILE)
    assert config.can_start("U01", "leak-response")
    assert config.can_start("U04", "leak-response")
    assert not config.can_start("U99", "leak-response")  # in no group
    assert not config.can_start("U01", "rotate-api-key")  # not listed: nobody
    assert not config.can_start("U01", "lost-access")  # listed with no groups: nobody


def test_null_member_list_means_no_members() -> None:
    config = parse_config(MINIMAL.replace("breakglass: []", "breakglass: null"), FILE)
    assert config.members("breakglass") == frozenset()


def test_a_custom_breakglass_group_must_exist() -> None:
    text = MINIMAL + "breakglass_group: oncall\n"
    assert only(text) == (pos(text, "oncall"), "unknown group 'oncall' in breakglass_group")
    fixed = text.replace("breakglass: []", "oncall: [U02]")
    assert parse_config(fixed, FILE).breakglass_group == "oncall"


def test_direct_construction_runs_the_cross_checks() -> None:
    data = {"slack": {"channel": "C1"}, "groups": {}, "playbooks": {"x": {"start": ["ops"]}}}
    with pytest.raises(ValueError, match="unknown group 'ops'"):
        Config.model_validate(data)


def test_config_path_honours_the_environment() -> None:
    assert config_path({}) == Path("irbot.yaml")
    assert config_path({"IRBOT_CONFIG": "/etc/irbot.yaml"}) == Path("/etc/irbot.yaml")


# --------------------------------------------------------------------------- problems


def test_unknown_key() -> None:
    text = MINIMAL.replace("{channel: C0INCIDENTS}", "{channel: C0INCIDENTS, chanel: C1}")
    where, message = only(text)
    assert where == pos(text, "chanel")
    assert message.startswith("unknown key 'chanel'")
    top = MINIMAL + "grups: {}\n"
    assert only(top) == (pos(top, "grups"), "unknown key 'grups'; did you mean 'groups'?")


def test_missing_slack_channel() -> None:
    text = MINIMAL.replace("slack: {channel: C0INCIDENTS}", "slack: {incident_channels: true}")
    assert only(text) == ((1, 1), "missing required key 'channel' in slack")
    no_slack = MINIMAL.split("\n", 1)[1]
    assert only(no_slack) == ((1, 1), "missing required key 'slack'")


def test_unknown_group_in_start() -> None:
    text = MINIMAL.replace("[sre, security]", "[sre, secruity]")
    assert only(text) == (pos(text, "secruity"), "leak-response: unknown group 'secruity' in start")


def test_bad_member_id() -> None:
    text = doc(
        """
        slack: {channel: C0INCIDENTS}
        groups:
          sre:
            - U01
            - "U 02"
        """
    )
    where, message = only(text)
    assert where == pos(text, '"U 02"')
    assert "groups.sre[1]" in message
    assert "'U 02' does not match" in message


def test_bad_group_name() -> None:
    text = MINIMAL.replace("security: [U04]", "Security: [U04]")
    found = problems(text)
    assert [(p["line"], p["column"]) for p in found] == [
        pos(text, "Security"),
        pos(text, "security"),
    ]


@pytest.mark.parametrize(
    ("route", "marker", "message"),
    [
        (
            "{source: generic, playbook: leak-response}",
            "{source: generic",
            "triggers[0]: a generic route needs generic_source (the webhook's name)",
        ),
        (
            "{source: pagerduty, playbook: leak-response, generic_source: x}",
            "{source: pagerduty",
            "triggers[0]: generic_source only applies to routes with source: generic",
        ),
    ],
)
def test_generic_source_is_required_iff_the_route_is_generic(
    route: str, marker: str, message: str
) -> None:
    text = MINIMAL + f"triggers:\n  - {route}\n"
    assert only(text) == (pos(text, marker), message)
    ok = MINIMAL + "triggers:\n  - {source: generic, playbook: leak-response, generic_source: x}\n"
    assert parse_config(ok, FILE).triggers[0].generic_source == "x"


def test_unknown_trigger_source() -> None:
    text = MINIMAL + "triggers:\n  - {source: datadog, playbook: leak-response}\n"
    where, message = only(text)
    assert where == pos(text, "datadog")
    assert message.startswith("triggers[0].source: Input should be 'pagerduty'")


def test_yaml_syntax_error() -> None:
    text = MINIMAL + "triggers: [\n"
    where, message = only(text)
    assert where[0] == 5
    assert message.startswith("YAML syntax:")


def test_duplicate_key() -> None:
    text = MINIMAL + "slack: {channel: C1}\n"
    assert only(text) == ((4, 1), "duplicate key 'slack' (first defined at line 1)")


@pytest.mark.parametrize("text", ["", "\n# only a comment\n"])
def test_empty_file(text: str) -> None:
    assert only(text) == ((1, 1), "the file is empty; irbot.yaml needs at least slack and groups")


@pytest.mark.parametrize("text", ["[a, b]\n", "just words\n", "~\n"])
def test_not_a_mapping(text: str) -> None:
    assert only(text)[1] == "the config must be a YAML mapping with slack, groups and playbooks"


def test_every_problem_is_reported_at_once() -> None:
    text = doc(
        """
        slack: {chanel: C1}
        groups:
          sre: [U01, "not ok"]
        playbooks:
          leak-response: {start: [sre, ops]}
        triggers:
          - {source: generic, playbook: leak-response}
        breakglass_group: oncall
        colour: blue
        """
    )
    found = problems(text)
    where = [(p["line"], p["column"]) for p in found]
    assert where == sorted(where)
    assert where == [
        (1, 1),  # missing slack.channel, at slack
        pos(text, "chanel"),
        pos(text, '"not ok"'),
        pos(text, "ops"),
        pos(text, "{source: generic"),
        pos(text, "oncall"),
        pos(text, "colour"),
    ]
    assert all(p["file"] == FILE for p in found)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "irbot.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in info.value.message
    assert "cp irbot.example.yaml irbot.yaml" in info.value.message
    assert info.value.exit_code == 2


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "irbot.yaml"
    path.write_bytes(b"slack: {channel: \xff}\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


def test_load_config_reports_the_path(tmp_path: Path) -> None:
    path = tmp_path / "irbot.yaml"
    path.write_text(MINIMAL + "colour: blue\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.message == f"{path}:4:1: unknown key 'colour'"


def test_an_edit_counts_at_once_even_when_size_and_mtime_stay_the_same(tmp_path: Path) -> None:
    """Parsing is remembered by the file's text, not its stamp: removing U02 from sre
    and adding U09 (same size) with the modification time put back is still seen."""
    path = tmp_path / "irbot.yaml"
    before = "slack: {channel: C0INC}\ngroups: {sre: [U01, U02]}\n"
    after = "slack: {channel: C0INC}\ngroups: {sre: [U01, U09]}\n"
    path.write_text(before)
    stamp = path.stat()
    assert load_config(path).members("sre") == {"U01", "U02"}
    assert load_config(path) is load_config(path)  # unchanged text: parsed once
    path.write_text(after)
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert path.stat().st_size == stamp.st_size
    assert load_config(path).members("sre") == {"U01", "U09"}
