"""The playbook model: typed inputs, key=value parsing, durations, approvals, step ids, coverage."""

from __future__ import annotations

import re
import textwrap
from datetime import timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from bot.core import durations
from bot.core.catalog import default_catalog
from bot.core.coverage import covered_by, gate_targets, needs_gate
from bot.core.errors import InputError
from bot.core.inputs import parse_pairs, resolve
from bot.core.playbook import (
    ActionStep,
    Approval,
    InputSpec,
    Playbook,
    Step,
)
from bot.core.validate import check

CATALOG = default_catalog()
STEP = TypeAdapter(Step)


def spec(**fields: Any) -> InputSpec:
    return InputSpec.model_validate(fields)


def pos(text: str, marker: str) -> tuple[int, int]:
    """The 1-based (line, column) of the only occurrence of ``marker`` in ``text``."""
    assert text.count(marker) == 1, f"marker {marker!r} is not unique"
    index = text.index(marker)
    return text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index)


def make_playbook(inputs: dict[str, Any]) -> Playbook:
    return Playbook.model_validate(
        {
            "name": "demo",
            "version": 1,
            "inputs": inputs,
            "steps": [{"id": "a", "action": "test.noop"}],
        }
    )


@pytest.fixture
def demo() -> Playbook:
    """One input of every type, some with defaults."""
    return make_playbook(
        {
            "secret_id": {
                "type": "string",
                "pattern": "^[a-z0-9/]+$",
                "description": "the leaked secret",
            },
            "count": {"type": "int", "default": 3},
            "dry_run": {"type": "bool", "default": False},
            "grace": {"type": "duration", "default": "90m"},
            "deployments": {"type": "list", "default": []},
            "level": {"type": "enum", "values": ["low", "high"], "default": "low"},
            "note": {"type": "string", "required": False},
        }
    )


# --------------------------------------------------------------------------- input types


def test_string_input_must_match_its_pattern_in_full() -> None:
    """A string input is checked against its pattern as a full match."""
    s = spec(type="string", pattern="^[a-z]+$")
    assert s.coerce("abc") == "abc"
    with pytest.raises(ValueError, match=r"'abc1' does not match the pattern \^\[a-z\]\+\$"):
        s.coerce("abc1")
    assert spec(type="string", pattern="[a-z]+").coerce("abc") == "abc"
    with pytest.raises(ValueError, match="does not match"):
        spec(type="string", pattern="[a-z]+").coerce("abc-def")


def test_string_input_accepts_numbers_but_not_booleans() -> None:
    """A YAML number becomes its text; a boolean is not a string."""
    s = spec(type="string")
    assert s.coerce(42) == "42"
    with pytest.raises(ValueError, match="expected a string, got bool"):
        s.coerce(True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("42", 42), (" 7 ", 7), ("-3", -3), ("+5", 5), (12, 12)],
)
def test_int_input_parses_whole_numbers(raw: object, expected: int) -> None:
    """An int input takes whole numbers, from YAML or as text."""
    assert spec(type="int").coerce(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("x", "expected a whole number, got 'x'"),
        ("1.5", "expected a whole number, got '1.5'"),
        (1.5, "expected a whole number, got 1.5"),
        (True, "expected a whole number, got a boolean"),
    ],
)
def test_int_input_rejects_other_values(raw: object, message: str) -> None:
    """An int input rejects text, fractions and booleans with a readable message."""
    with pytest.raises(ValueError, match=re.escape(message)):
        spec(type="int").coerce(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("Yes", True),
        ("on", True),
        ("1", True),
        ("FALSE", False),
        ("no", False),
        ("off", False),
        ("0", False),
        (True, True),
        (False, False),
    ],
)
def test_bool_input_words(raw: object, expected: bool) -> None:
    """A bool input understands true/yes/on/1 and false/no/off/0 in any case."""
    assert spec(type="bool").coerce(raw) is expected


def test_bool_input_rejects_other_words() -> None:
    """A bool input rejects a word that is neither true nor false."""
    with pytest.raises(ValueError, match="expected true or false, got 'maybe'"):
        spec(type="bool").coerce("maybe")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("90m", "1h30m"), ("1h30m", "1h30m"), ("2 H", "2h"), ("1w", "7d"), ("3600s", "1h")],
)
def test_duration_input_is_normalised(raw: str, expected: str) -> None:
    """A duration input is stored in its shortest exact spelling."""
    assert spec(type="duration").coerce(raw) == expected


@pytest.mark.parametrize("raw", ["soon", "15", "0m", 15])
def test_duration_input_rejects_non_durations(raw: object) -> None:
    """A duration input rejects text without a unit, zero, and bare numbers."""
    with pytest.raises(ValueError, match="duration"):
        spec(type="duration").coerce(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("api,worker", ["api", "worker"]),
        (" api , , worker ,", ["api", "worker"]),
        ("", []),
        ("   ", []),
        (["api"], ["api"]),
        ([], []),
    ],
)
def test_list_input_is_comma_separated(raw: object, expected: list[str]) -> None:
    """A list input splits text on commas, trims items and drops empty ones ('' -> [])."""
    assert spec(type="list").coerce(raw) == expected


def test_list_input_items_are_typed_and_pattern_checked() -> None:
    """List items are coerced to `items` and each must match the pattern."""
    assert spec(type="list", items="int").coerce("1, 2") == [1, 2]
    with pytest.raises(ValueError, match="expected a whole number, got 'x'"):
        spec(type="list", items="int").coerce("1,x")
    with pytest.raises(ValueError, match="'Bad' does not match"):
        spec(type="list", pattern="^[a-z]+$").coerce("api,Bad")
    with pytest.raises(ValueError, match="expected a list"):
        spec(type="list").coerce(5)


def test_enum_input_accepts_only_its_values() -> None:
    """An enum input accepts one of its values and names them all otherwise."""
    s = spec(type="enum", values=["low", "high"])
    assert s.coerce("high") == "high"
    with pytest.raises(ValueError, match="'mid' is not one of low, high"):
        s.coerce("mid")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "enum"}, "an enum input needs 'values'"),
        ({"type": "string", "values": ["a"]}, "'values' only applies to enum inputs"),
        ({"type": "int", "pattern": "x"}, "'pattern' only applies to string and list inputs"),
        ({"type": "string", "pattern": "["}, "pattern is not a valid regular expression"),
        (
            {"type": "string", "required": True, "default": "x"},
            "an input cannot be required and have a default",
        ),
    ],
)
def test_inconsistent_input_specs_are_rejected(fields: dict[str, Any], message: str) -> None:
    """Input declarations that contradict themselves do not validate."""
    with pytest.raises(ValidationError, match=re.escape(message)):
        spec(**fields)


def test_input_required_unless_it_has_a_default() -> None:
    """An input is required when it has no default, unless `required: false` says otherwise."""
    assert spec(type="string").is_required
    assert not spec(type="string", default="x").is_required
    assert not spec(type="bool", default=False).is_required
    assert not spec(type="list", default=[]).is_required
    assert not spec(type="string", required=False).is_required


# --------------------------------------------------------------------------- resolve


def test_resolve_fills_defaults(demo: Playbook) -> None:
    """Inputs not given take their (coerced) default; optional ones without default are None."""
    assert resolve({"secret_id": "prod/db"}, demo) == {
        "secret_id": "prod/db",
        "count": 3,
        "dry_run": False,
        "grace": "1h30m",
        "deployments": [],
        "level": "low",
        "note": None,
    }


def test_resolve_missing_required_input(demo: Playbook) -> None:
    """A required input that is not given is reported with its description."""
    with pytest.raises(InputError) as caught:
        resolve({}, demo)
    assert caught.value.problems == ["missing required input 'secret_id' (the leaked secret)"]


def test_resolve_unknown_input_suggests(demo: Playbook) -> None:
    """An undeclared input is reported with a did-you-mean and the declared names."""
    with pytest.raises(InputError) as caught:
        resolve({"secret_id": "prod/db", "dryrun": "yes"}, demo)
    (problem,) = caught.value.problems
    assert problem.startswith("unknown input 'dryrun'; did you mean 'dry_run'?")
    assert "(inputs: secret_id, count, dry_run, grace, deployments, level, note)" in problem


def test_parse_pairs_types_every_value(demo: Playbook) -> None:
    """`key=value` pairs are typed by their declarations; a value may itself contain '='."""
    values = parse_pairs(
        ["secret_id=prod/db", "count=5", "dry_run=yes", "grace=120m", "deployments=api, worker"],
        demo,
    )
    assert values["count"] == 5
    assert values["dry_run"] is True
    assert values["grace"] == "2h"
    assert values["deployments"] == ["api", "worker"]
    with pytest.raises(InputError, match="'a=b' does not match the pattern"):
        parse_pairs(["secret_id=a=b"], demo)
    other = make_playbook({"query": {"type": "string"}})
    assert parse_pairs(["query=a=b"], other) == {"query": "a=b"}


@pytest.mark.parametrize("pair", ["secret_id", "=prod/db", " =x"])
def test_parse_pairs_rejects_text_that_is_not_key_value(demo: Playbook, pair: str) -> None:
    """A pair without '=' or without a key is a problem naming the pair."""
    with pytest.raises(InputError) as caught:
        parse_pairs(["count=1", pair], demo)
    assert f"{pair!r} is not key=value" in caught.value.problems


def test_parse_pairs_rejects_an_input_given_twice(demo: Playbook) -> None:
    """The same key twice is a problem, even with the same value."""
    with pytest.raises(InputError) as caught:
        parse_pairs(["secret_id=prod/db", "count=1", "count=1"], demo)
    assert caught.value.problems == ["input 'count' is given twice"]


def test_input_problems_are_reported_together(demo: Playbook) -> None:
    """Every input problem, from parsing and from checking, comes in one InputError."""
    with pytest.raises(InputError) as caught:
        parse_pairs(["oops", "count=1", "count=2", "dryrun=x", "dry_run=maybe", "grace=soon"], demo)
    problems = caught.value.problems
    assert problems[:2] == ["'oops' is not key=value", "input 'count' is given twice"]
    assert problems[2].startswith("unknown input 'dryrun'; did you mean 'dry_run'?")
    assert problems[3:5] == [
        "missing required input 'secret_id' (the leaked secret)",
        "input 'dry_run': expected true or false, got 'maybe'",
    ]
    assert problems[5].startswith("input 'grace': 'soon' is not a duration")
    assert len(problems) == 6
    shown = caught.value.show()
    assert shown.splitlines()[0] == "invalid input for playbook 'demo':"
    assert all(f"  - {p}" in shown for p in problems)


# --------------------------------------------------------------------------- bad defaults


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ("{type: int, default: abc}", "inputs.n: expected a whole number, got 'abc'"),
        ("{type: bool, default: maybe}", "inputs.n: expected true or false, got 'maybe'"),
        ("{type: duration, default: soon}", "inputs.n: 'soon' is not a duration"),
        ("{type: enum, values: [a, b], default: c}", "inputs.n: 'c' is not one of a, b"),
        ("{type: string, pattern: '^[a-z]+$', default: ABC}", "inputs.n: 'ABC' does not match"),
    ],
)
def test_bad_default_is_rejected_at_load(declaration: str, message: str) -> None:
    """A default that does not fit its own type is a schema error in the playbook, at the input."""
    text = textwrap.dedent(f"""\
        name: demo
        version: 1
        inputs:
          n: {declaration}
        steps:
          - id: a
            action: slack.post
            with: {{text: hi}}
        """)
    result = check(text, "pb.yaml")
    assert not result.ok
    (diag,) = result.diagnostics
    assert diag.code == "schema"
    assert diag.message.startswith(message)
    assert (diag.location.line, diag.location.column) == pos(text, declaration)


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds", "canonical"),
    [
        ("30s", 30, "30s"),
        ("15m", 900, "15m"),
        ("2h30m", 9000, "2h30m"),
        ("90m", 5400, "1h30m"),
        ("7d", 604800, "7d"),
        ("1w", 604800, "7d"),
        ("1d1h1m1s", 90061, "1d1h1m1s"),
        (" 2H 5M ", 7500, "2h5m"),
    ],
)
def test_duration_parse_and_format_round_trip(text: str, seconds: int, canonical: str) -> None:
    """Durations parse to timedeltas and format back to a canonical spelling that re-parses."""
    value = durations.parse_duration(text)
    assert value == timedelta(seconds=seconds)
    assert durations.format_duration(value) == canonical
    assert durations.parse_duration(canonical) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is not a duration"),
        ("15", "is not a duration"),
        ("m", "is not a duration"),
        ("15x", "is not a duration"),
        ("-5m", "is not a duration"),
        ("1.5h", "is not a duration"),
        ("0s", "must be longer than zero"),
        ("0h0m", "must be longer than zero"),
    ],
)
def test_duration_parse_errors(text: str, message: str) -> None:
    """Text that is not a positive duration raises ValueError with a helpful message."""
    with pytest.raises(ValueError, match=message):
        durations.parse_duration(text)


def test_format_duration_of_nothing() -> None:
    """A zero or negative timedelta formats as 0s."""
    assert durations.format_duration(timedelta(0)) == "0s"
    assert durations.format_duration(timedelta(seconds=-5)) == "0s"


@pytest.mark.parametrize("value", [15, 1.5, True])
def test_model_durations_need_a_unit(value: object) -> None:
    """A duration field rejects bare numbers and booleans."""
    with pytest.raises(ValidationError, match=r"duration|unit"):
        Approval.model_validate({"from": ["group:sre"], "ttl": value})


# --------------------------------------------------------------------------- approval


def test_approval_defaults() -> None:
    """An approval needs only `from`: two approvers, requester excluded, 30 minutes to answer."""
    approval = Approval.model_validate({"from": ["group:sre"]})
    assert approval.min == 2
    assert approval.exclude_requester is True
    assert approval.ttl == timedelta(minutes=30)
    assert approval.covers is None


def test_approval_exclude_requester_false_is_rejected() -> None:
    """The requester can never approve their own run: `exclude_requester: false` is invalid."""
    with pytest.raises(ValidationError, match="exclude_requester"):
        Approval.model_validate({"from": ["group:sre"], "exclude_requester": False})
    text = textwrap.dedent("""\
        name: demo
        version: 1
        steps:
          - id: approve
            approval:
              from: [group:sre]
              exclude_requester: false
          - id: destroy
            action: test.destructive
        """)
    result = check(text, "pb.yaml")
    diag = next(d for d in result.diagnostics if d.code == "schema")
    assert diag.message.startswith("steps[0].approval.exclude_requester:")
    assert (diag.location.line, diag.location.column) == pos(text, "false")


@pytest.mark.parametrize(
    "fields",
    [
        {"from": []},
        {"from": ["sre"]},
        {"from": ["group:sre"], "min": 0},
        {"from": ["group:sre"], "min": 11},
    ],
)
def test_approval_rejects_bad_approvers_and_counts(fields: dict[str, Any]) -> None:
    """`from` needs at least one group:/user: principal, and `min` is between 1 and 10."""
    with pytest.raises(ValidationError):
        Approval.model_validate(fields)


# --------------------------------------------------------------------------- step ids


@pytest.mark.parametrize("step_id", ["rotate", "rotate_key", "r2", "a" * 63])
def test_step_id_accepts_snake_case(step_id: str) -> None:
    """Step ids are snake_case so templates can write steps.<id>.outputs."""
    assert ActionStep.model_validate({"id": step_id, "action": "test.noop"}).id == step_id


@pytest.mark.parametrize("step_id", ["rotate-key", "Rotate", "2fa", "_x", "", "a" * 64])
def test_step_id_rejects_other_spellings(step_id: str) -> None:
    """A hyphen (read as minus in steps.<id>), capitals, a leading digit or underscore fail."""
    with pytest.raises(ValidationError, match="String should match pattern"):
        ActionStep.model_validate({"id": step_id, "action": "test.noop"})


def test_step_id_with_hyphen_is_a_located_schema_error() -> None:
    """The validator reports a hyphenated step id at the id, naming the pattern."""
    text = textwrap.dedent("""\
        name: demo
        version: 1
        steps:
          - id: rotate-key
            action: slack.post
            with: {text: hi}
        """)
    (diag,) = check(text, "pb.yaml").diagnostics
    assert diag.code == "schema"
    assert diag.message == (
        "steps[0].id: 'rotate-key' does not match the pattern ^[a-z][a-z0-9_]{0,62}$"
    )
    assert (diag.location.line, diag.location.column) == pos(text, "rotate-key")


# --------------------------------------------------------------------------- coverage


def steps(*raw: dict[str, Any]) -> list[Step]:
    return [STEP.validate_python(r) for r in raw]


def gate(step_id: str, covers: list[str] | None = None) -> dict[str, Any]:
    approval: dict[str, Any] = {"from": ["group:sre"]}
    if covers is not None:
        approval["covers"] = covers
    return {"id": step_id, "approval": approval}


def action(step_id: str, name: str = "test.destructive", **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "action": name, **extra}


def test_needs_gate_for_destructive_action_or_on_failure() -> None:
    """A step needs a gate if its action, or one of its on_failure actions, is destructive."""
    destroy, notify, cleanup, pause = steps(
        action("destroy"),
        action("notify", "slack.post", **{"with": {"text": "hi"}}),
        action("cleanup", "slack.post", on_failure=[{"action": "test.destructive"}]),
        {"id": "pause", "wait": "5m"},
    )
    assert needs_gate(destroy, CATALOG)
    assert not needs_gate(notify, CATALOG)
    assert needs_gate(cleanup, CATALOG)
    assert not needs_gate(pause, CATALOG)
    (unknown,) = steps(action("unknown", "no.such.action"))
    assert not needs_gate(unknown, CATALOG)


def test_implicit_gate_covers_until_the_next_gate() -> None:
    """A gate without covers guards every destructive step after it, up to the next gate."""
    plan = steps(
        action("before"),
        gate("g1"),
        action("d1"),
        action("safe", "slack.post", **{"with": {"text": "hi"}}),
        action("d2"),
        gate("g2"),
        action("d3"),
    )
    assert covered_by(plan, CATALOG) == {"d1": "g1", "d2": "g1", "d3": "g2"}
    assert gate_targets(plan, CATALOG) == {"g1": ["d1", "d2"], "g2": ["d3"]}


def test_explicit_covers_guard_only_named_later_steps() -> None:
    """A gate with covers guards exactly the named steps after it, and stops implicit cover."""
    plan = steps(
        action("early"),
        gate("g1"),
        action("d1"),
        gate("g2", covers=["d3", "early", "nowhere"]),
        action("d2"),
        action("d3"),
    )
    assert covered_by(plan, CATALOG) == {"d1": "g1", "d3": "g2"}
    assert gate_targets(plan, CATALOG) == {"g1": ["d1"], "g2": ["d3"]}


def test_first_covering_gate_wins_and_targets_are_in_step_order() -> None:
    """A step covered by two gates belongs to the first; gate_targets lists steps in order."""
    plan = steps(
        gate("g1", covers=["d2", "d1"]),
        gate("g2", covers=["d2"]),
        action("d1"),
        action("d2"),
        gate("g3"),
    )
    assert covered_by(plan, CATALOG) == {"d2": "g1", "d1": "g1"}
    assert gate_targets(plan, CATALOG) == {"g1": ["d1", "d2"], "g2": [], "g3": []}
