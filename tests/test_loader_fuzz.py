"""Property tests: the YAML loader and validator never crash, whatever text they are given.

``check`` is what ``irbot playbook validate`` runs on files people are still writing, and
what a future editor integration will run on every keystroke: any input, however broken,
must come back as diagnostics, never as an exception or a hang.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.catalog import default_catalog
from bot.core.errors import InputError, PlaybookInvalid
from bot.core.inputs import parse_pairs
from bot.core.playbook import STEP_TAGS, Playbook
from bot.core.validate import Result, check, load

REPO = Path(__file__).resolve().parents[1]
FILE = "fuzz.yaml"
SEVERITIES = {"error", "warning"}

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PLAYBOOK_KEYS = (
    "name",
    "version",
    "steps",
    "id",
    "action",
    "with",
    "approval",
    "from",
    "covers",
    "when",
    "for_each",
    "inputs",
    "type",
    "default",
    "triggers",
    "manual",
    "wait",
    "playbook",
)
OTHER_KEYS = (
    "description",
    "min",
    "ttl",
    "exclude_requester",
    "message",
    "instructions",
    "assignee",
    "secret_input",
    "retry",
    "attempts",
    "backoff",
    "timeout",
    "on_failure",
    "optional",
    "concurrency",
    "pattern",
    "items",
    "values",
    "text",
    "secret_id",
    "alertmanager",
    "github_secret_scanning",
    "pagerduty",
    "generic",
    "alertname",
    "title_matches",
)
TEMPLATES = (
    "{{ inputs.x }}",
    "{{ inputs.secret_id }}",
    "{{ inputs['x'] }}",
    "{{ inputs.xs | length > 0 }}",
    "{{ inputs.xs | join(', ') or 'none' }}",
    "{{ inputs.x | nosuchfilter }}",
    "{{ inputs.x is nosuchtest }}",
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ inputs['__class__'] }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ lipsum() }}",
    "{{ range(10) }}",
    "{{ self }}",
    "{% for %}",
    "{% for x in inputs.xs %}{{ x }}{% endfor %}",
    "{% set y = 1 %}{{ y }}",
    "{% raw %}",
    "{# comment #}",
    "{{",
    "}}",
    "{{ }}",
    "{{ 1/0 }}",
    "{{ item }}",
    "{{ run.requester }}",
    "{{ run.nope }}",
    "{{ incident.id }}",
    "{{ event.labels.x }}",
    "{{ steps.a.outputs.b }}",
    "{{ steps.a.outputs[0].b }}",
    "{{ steps['a'].status }}",
    "{{ steps.missing.outputs }}",
    "{{ steps.a.nope }}",
    "{{ undefined_name }}",
    "inputs.xs | length > 0",
    "hello {{ inputs.x }} and {{ item }}",
)
ACTIONS = tuple(sorted(default_catalog()))
WORDS = (
    "a",
    "b",
    "approve",
    "rotate",
    "x",
    "xs",
    "group:sre",
    "group:security",
    "user:U123",
    "nobody",
    "string",
    "list",
    "int",
    "bool",
    "duration",
    "enum",
    "fixed",
    "exponential",
    "production",
    "",
    " ",
    "^[a-z]+$",
    "(",
)

# Up to 10**20: huge durations must be refused (durations.MAX), never overflow timedelta.
durations = st.builds(
    lambda n, unit: f"{n}{unit}", st.integers(0, 10**20), st.sampled_from("smhdwx")
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(TEMPLATES),
    st.sampled_from(ACTIONS),
    st.sampled_from(WORDS),
    durations,
)
# Keys spelled like pydantic's internal union tags ("wait-step", "[key]") once crashed
# the error translation; they are drawn on purpose.
INTERNAL_KEYS = sorted(STEP_TAGS | {"[key]"})
keys = st.one_of(
    st.sampled_from(PLAYBOOK_KEYS),
    st.sampled_from(OTHER_KEYS),
    st.sampled_from(INTERNAL_KEYS),
    st.text(max_size=10),
    st.integers(-3, 3),
)
anything = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=20,
)
step_ids = st.one_of(st.sampled_from(("a", "b", "approve", "rotate", "c_1")), st.text(max_size=6))
principals = st.one_of(st.sampled_from(WORDS), st.text(max_size=8))
approvals = st.fixed_dictionaries(
    {},
    optional={
        "min": st.integers(-1, 12),
        "from": st.one_of(st.lists(principals, max_size=3), anything),
        "covers": st.one_of(st.lists(step_ids, max_size=3), anything),
        "ttl": st.one_of(durations, anything),
        "exclude_requester": st.booleans(),
        "message": st.sampled_from(TEMPLATES),
    },
)
manuals = st.fixed_dictionaries(
    {},
    optional={
        "instructions": st.one_of(st.sampled_from(TEMPLATES), st.text(max_size=10)),
        "assignee": st.one_of(principals, st.sampled_from(TEMPLATES)),
        "secret_input": st.one_of(st.booleans(), st.fixed_dictionaries({"label": scalars})),
        "ttl": durations,
    },
)
with_values = st.dictionaries(keys, anything, max_size=4)
compensations = st.fixed_dictionaries(
    {"action": st.sampled_from(ACTIONS)}, optional={"with": with_values}
)
steps = st.fixed_dictionaries(
    {"id": step_ids},
    optional={
        "name": scalars,
        "action": st.one_of(st.sampled_from(ACTIONS), scalars),
        "with": st.one_of(with_values, anything),
        "approval": st.one_of(approvals, anything),
        "manual": manuals,
        "wait": st.one_of(durations, st.sampled_from(TEMPLATES)),
        "playbook": st.one_of(st.sampled_from(("leak-response", "self")), scalars),
        "when": st.one_of(st.booleans(), st.sampled_from(TEMPLATES)),
        "for_each": st.one_of(st.sampled_from(TEMPLATES), st.lists(scalars, max_size=3)),
        "concurrency": st.integers(-1, 200),
        "optional": st.booleans(),
        "timeout": durations,
        "retry": st.fixed_dictionaries(
            {}, optional={"attempts": st.integers(-1, 30), "backoff": st.sampled_from(WORDS)}
        ),
        "on_failure": st.lists(compensations, max_size=2),
    },
)
# Steps that are mostly well formed, so the checks after the shape check (references,
# expressions, gates, the safety rule, reachability) run on them.
sound_ids = st.sampled_from(("a", "b", "c", "approve", "rotate", "notify"))
good_principals = st.lists(
    st.sampled_from(("group:sre", "group:security", "user:U1")), min_size=1, max_size=2
)
arg_names = st.sampled_from(
    (
        "text",
        "secret_id",
        "name",
        "namespace",
        "access_key_id",
        "user_name",
        "to",
        "subject",
        "body",
        "summary",
        "severity",
        "value_ref",
        "window",
        "wait",
    )
)
arg_values = st.one_of(
    st.sampled_from(TEMPLATES),
    st.sampled_from(("prod/db", "api", "production", "AKIAABCDEFGHIJKLMNOP", "critical")),
    st.text(max_size=8),
    st.booleans(),
    st.lists(st.sampled_from(("a@example.com", "{{ item }}")), max_size=2),
)
sound_with = st.dictionaries(arg_names, arg_values, max_size=3)
sound_action = st.fixed_dictionaries(
    {"id": sound_ids, "action": st.sampled_from(ACTIONS), "with": sound_with},
    optional={
        "when": st.one_of(st.booleans(), st.sampled_from(TEMPLATES)),
        "for_each": st.one_of(
            st.sampled_from(TEMPLATES), st.lists(st.text(max_size=4), max_size=3)
        ),
        "concurrency": st.integers(1, 5),
        "optional": st.booleans(),
        "timeout": durations,
        "on_failure": st.lists(
            st.fixed_dictionaries({"action": st.sampled_from(ACTIONS), "with": sound_with}),
            max_size=2,
        ),
    },
)
sound_approval = st.fixed_dictionaries(
    {
        "id": sound_ids,
        "approval": st.fixed_dictionaries(
            {"from": good_principals},
            optional={
                "min": st.integers(1, 3),
                "covers": st.lists(sound_ids, max_size=3),
                "ttl": durations,
                "message": st.sampled_from(TEMPLATES),
            },
        ),
    },
    optional={"when": st.sampled_from(TEMPLATES)},
)
sound_manual = st.fixed_dictionaries(
    {"id": sound_ids, "manual": st.fixed_dictionaries({"instructions": arg_values})},
)
sound_wait = st.fixed_dictionaries(
    {"id": sound_ids, "wait": st.one_of(durations, st.sampled_from(TEMPLATES))}
)
sound_call = st.fixed_dictionaries(
    {"id": sound_ids, "playbook": st.sampled_from(("fuzz", "leak-response")), "with": sound_with}
)
sound_steps = st.one_of(sound_action, sound_approval, sound_manual, sound_wait, sound_call)
sound_inputs = {
    "x": {"type": "string"},
    "xs": {"type": "list", "default": []},
    "secret_id": {"type": "string", "pattern": "^[a-z/]+$"},
    "grace": {"type": "duration", "default": "1d"},
}
input_specs = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.sampled_from(WORDS), scalars),
        "default": anything,
        "description": scalars,
        "pattern": st.sampled_from(("^[a-z]+$", "(", "[", ".*", "^\\d+$")),
        "items": st.sampled_from(WORDS),
        "values": st.lists(st.text(max_size=5), max_size=3),
    },
)
input_names = st.one_of(
    st.sampled_from(("x", "xs", "secret_id", "9bad", "")),
    st.text(max_size=6).filter(lambda key: key not in INTERNAL_KEYS),
)
triggers = st.one_of(
    st.dictionaries(
        st.sampled_from(("alertmanager", "github_secret_scanning", "pagerduty", "generic", "x")),
        st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "inputs": st.dictionaries(input_names, st.sampled_from(TEMPLATES), max_size=2),
                    "alertname": scalars,
                    "title_matches": st.sampled_from(("(?i)leak", "(", "[a-")),
                    "source": scalars,
                },
            ),
            anything,
        ),
        min_size=1,
        max_size=2,
    ),
    anything,
)
playbook_like = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.sampled_from(("leak-response", "x", "Bad Name")), scalars),
        "version": st.one_of(st.integers(-1, 3), scalars),
        "description": scalars,
        "inputs": st.one_of(st.dictionaries(input_names, input_specs, max_size=3), anything),
        "triggers": st.one_of(st.lists(triggers, max_size=2), anything),
        "steps": st.one_of(st.lists(st.one_of(steps, anything), max_size=6), anything),
        "extra": anything,
    },
)
documents = st.one_of(playbook_like, anything)

# YAML punctuation, indentation and playbook words glued together: text that gets far
# into the YAML parser, unlike uniformly random unicode. Explicit scalar tags and
# impossible dates are included: they once escaped the loader as bare ValueErrors.
yaml_tokens = st.sampled_from(
    (
        "\n",
        "\n  ",
        "\n    ",
        "  ",
        ": ",
        ":",
        "- ",
        "-",
        "[",
        "]",
        "{",
        "}",
        ",",
        "? ",
        "!!int ",
        "!!float ",
        "!!timestamp ",
        "2024-02-30",
        "0000-00-00",
        "&a ",
        "*a",
        "&b ",
        "*b",
        "<<: *a",
        "!!str ",
        "!!map ",
        "!!seq ",
        "!!python/object:os.system ",
        "!custom ",
        "|",
        ">-",
        "'",
        '"',
        "#",
        "%YAML 1.1\n",
        "---\n",
        "...\n",
        "\t",
        "\r\n",
        "\x00",
        "\ufeff",
        "\u2028",
        "\x85",
        "true",
        "null",
        "~",
        "1",
        "-1",
        ".inf",
        "0x1f",
        "0o17",
        "1_000",
        "1e3",
        "15m",
        *PLAYBOOK_KEYS,
        *TEMPLATES,
        *ACTIONS[:4],
    )
)
yaml_text = st.lists(yaml_tokens, max_size=40).map("".join)


def dump(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def assert_well_formed(result: Result, text: str) -> None:
    """The invariants of a check result, whatever the input was."""
    assert isinstance(result, Result)
    assert result.file == FILE
    assert result.source == text
    errors = [d for d in result.diagnostics if d.severity == "error"]
    assert errors or result.playbook is not None
    assert result.ok is (not errors)
    last_line = len(text.splitlines()) + 1
    for diag in result.diagnostics:
        assert diag.severity in SEVERITIES
        assert diag.code
        assert diag.message
        assert diag.location.file == FILE
        assert 1 <= diag.location.line <= last_line, (diag, last_line)
        assert diag.location.column >= 1
        assert diag.format().startswith(f"{diag.location}: {diag.severity}[{diag.code}]: ")


def assert_load_agrees(result: Result, text: str) -> None:
    """``load`` returns exactly when ``check`` found no error, else raises PlaybookInvalid."""
    if result.ok:
        loaded = load(text, FILE)
        assert result.playbook is not None
        assert loaded.name == result.playbook.name
        assert re.fullmatch(r"[0-9a-f]{64}", loaded.sha256)
    else:
        with pytest.raises(PlaybookInvalid) as info:
            load(text, FILE)
        assert any(d.severity == "error" for d in info.value.diagnostics)


# --------------------------------------------------------------------------- check / load


@FUZZ
@given(st.text())
def test_check_never_raises_on_text(text: str) -> None:
    """check() turns any unicode text into a result: errors, or a playbook."""
    result = check(text, FILE)
    assert_well_formed(result, text)
    assert_load_agrees(result, text)


@FUZZ
@given(st.text(st.characters(categories=("Cc", "Cf", "Co", "Cs", "Zl", "Zp", "Zs")), max_size=50))
def test_check_never_raises_on_control_characters(text: str) -> None:
    """check() survives control, format and separator characters (most not allowed in YAML)."""
    result = check(text, FILE)
    assert_well_formed(result, text)


@FUZZ
@given(yaml_text)
def test_check_never_raises_on_yaml_like_text(text: str) -> None:
    """check() survives YAML punctuation, anchors, aliases, tags and templates glued at random."""
    result = check(text, FILE)
    assert_well_formed(result, text)
    assert_load_agrees(result, text)


@FUZZ
@given(documents)
def test_check_never_raises_on_yaml_documents(document: Any) -> None:
    """check() survives any YAML document built from playbook keys, templates and junk."""
    text = dump(document)
    result = check(text, FILE)
    assert_well_formed(result, text)
    assert_load_agrees(result, text)


@FUZZ
@given(st.lists(st.one_of(sound_steps, sound_steps, steps), min_size=1, max_size=6))
def test_check_never_raises_on_step_lists(step_list: list[dict[str, Any]]) -> None:
    """check() survives a sound header with mostly sound steps (reaching every later check)."""
    text = dump({"name": "fuzz", "version": 1, "inputs": sound_inputs, "steps": step_list})
    result = check(text, FILE)
    assert_well_formed(result, text)
    assert_load_agrees(result, text)


@FUZZ
@given(st.sampled_from(sorted(REPO.glob("playbooks/*.yaml"))), st.data())
def test_check_never_raises_on_mutated_seed(path: Path, data: st.DataObject) -> None:
    """check() survives a seed playbook with a slice cut out or a token spliced in."""
    source = path.read_text("utf-8")
    start = data.draw(st.integers(0, len(source)), label="start")
    end = data.draw(st.integers(start, min(len(source), start + 200)), label="end")
    insert = data.draw(st.one_of(st.just(""), yaml_tokens, st.text(max_size=5)), label="insert")
    text = source[:start] + insert + source[end:]
    result = check(text, FILE)
    assert_well_formed(result, text)
    assert_load_agrees(result, text)


def test_seed_playbooks_load() -> None:
    """The property tests start from sound ground: every seed playbook loads cleanly."""
    for path in sorted(REPO.glob("playbooks/*.yaml")):
        result = check(path.read_text("utf-8"), FILE)
        assert result.ok, [d.format() for d in result.diagnostics]
        assert_load_agrees(result, path.read_text("utf-8"))


# --------------------------------------------------------------------------- hostile YAML


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    lines = ["l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def timed_check(text: str) -> tuple[Result, float]:
    start = time.monotonic()
    result = check(text, FILE)
    return result, time.monotonic() - start


def test_alias_bomb_is_a_diagnostic() -> None:
    """A billion-laughs document (9**10 expanded nodes) fails fast with a yaml diagnostic."""
    result, elapsed = timed_check(billion_laughs())
    assert elapsed < 10
    assert result.playbook is None
    (diag,) = result.diagnostics
    assert diag.code == "yaml"
    assert "expands to more than" in diag.message
    with pytest.raises(PlaybookInvalid):
        load(billion_laughs(), FILE)


def test_alias_bomb_inside_a_step_is_a_diagnostic() -> None:
    """An alias bomb hidden in a step's `with` is caught before validation walks it."""
    bomb = billion_laughs().replace("\n", "\n      ")
    text = (
        "name: x\nversion: 1\nsteps:\n  - id: a\n    action: slack.post\n"
        f"    with:\n      text: hi\n      {bomb}"
    )
    result, elapsed = timed_check(text)
    assert elapsed < 10
    assert [d.code for d in result.diagnostics] == ["yaml"]


def test_mapping_alias_bomb_is_a_diagnostic() -> None:
    """An alias bomb made of mappings is caught like one made of lists."""
    lines = ["m0: &m0 {" + ", ".join(f"k{i}: v" for i in range(10)) + "}"]
    for level in range(1, 8):
        body = ", ".join(f"k{i}: *m{level - 1}" for i in range(10))
        lines.append(f"m{level}: &m{level} {{{body}}}")
    result, elapsed = timed_check("\n".join(lines) + "\n")
    assert elapsed < 10
    assert [d.code for d in result.diagnostics] == ["yaml"]


def test_small_aliases_still_work() -> None:
    """Ordinary anchors and aliases below the budget load normally."""
    text = (
        "name: x\nversion: 1\nsteps:\n"
        "  - id: a\n    action: slack.post\n    with: &w {text: hi}\n"
        "  - id: b\n    action: slack.post\n    with: *w\n"
    )
    result = check(text, FILE)
    assert result.ok, [d.format() for d in result.diagnostics]


@pytest.mark.parametrize(
    "text",
    ["a: &a [*a]\n", "a: &a {b: *a}\n", "&top {name: x, self: *top}\n"],
    ids=["list", "mapping", "document"],
)
def test_recursive_alias_is_a_diagnostic(text: str) -> None:
    """A self-referencing alias is a yaml diagnostic, not an infinite walk."""
    result, elapsed = timed_check(text)
    assert elapsed < 10
    assert [d.code for d in result.diagnostics] == ["yaml"]
    assert "recursive" in result.diagnostics[0].message


@pytest.mark.parametrize(
    "text",
    [
        "[" * 5000,
        "[" * 5000 + "]" * 5000,
        "{a: " * 5000,
        "- " * 5000 + "x",
        "name: x\nversion: 1\nsteps: " + "[" * 5000 + "]" * 5000 + "\n",
        "name: x\nversion: 1\nsteps:\n  - id: a\n    action: slack.post\n    with:\n"
        "      blocks: " + "- " * 5000 + "x\n",
    ],
    ids=["open-flow", "balanced-flow", "flow-mappings", "block", "in-steps", "in-with"],
)
def test_deep_nesting_is_a_diagnostic(text: str) -> None:
    """Deeply nested lists and mappings give a yaml diagnostic, not RecursionError or a hang."""
    result, elapsed = timed_check(text)
    assert elapsed < 10
    assert result.playbook is None
    assert [d.code for d in result.diagnostics] == ["yaml"]
    assert result.diagnostics[0].location.line >= 1


def test_oversized_file_is_a_diagnostic() -> None:
    """A file over the size limit is refused before parsing."""
    result, elapsed = timed_check("# " + "x" * 1_100_000 + "\n")
    assert elapsed < 10
    assert [d.code for d in result.diagnostics] == ["yaml"]
    assert "larger than" in result.diagnostics[0].message


# --------------------------------------------------------------------------- inputs

LEAK = load((REPO / "playbooks" / "leak-response.yaml").read_text("utf-8"), "leak.yaml").playbook
LEAK_INPUTS = tuple(LEAK.inputs)

pair_keys = st.one_of(
    st.sampled_from(LEAK_INPUTS),
    st.sampled_from(("secret", "namespce", "", " secret_id ", "SECRET_ID", "x=y")),
    st.text(max_size=8),
)
pair_values = st.one_of(
    st.sampled_from(
        ("prod/db", "api,worker", "", ",", " api , worker ", "a,,b", "production", "Prod", "x=y")
    ),
    st.text(max_size=20),
)
pairs = st.lists(
    st.one_of(
        st.builds(lambda k, v: f"{k}={v}", pair_keys, pair_values),
        st.text(max_size=20),
    ),
    max_size=6,
)


def parse_or_error(given: list[str], book: Playbook) -> dict[str, Any] | InputError:
    """parse_pairs' result, or the InputError it raised; any other exception propagates."""
    try:
        return parse_pairs(given, book)
    except InputError as exc:
        return exc


@FUZZ
@given(pairs)
def test_parse_pairs_returns_inputs_or_raises_input_error(given_pairs: list[str]) -> None:
    """parse_pairs gives exactly the playbook's inputs, typed, or raises InputError only."""
    values = parse_or_error(given_pairs, LEAK)
    if isinstance(values, InputError):
        assert values.problems
        assert values.exit_code == 2
        assert values.to_dict()["problems"] == values.problems
        return
    assert set(values) == set(LEAK_INPUTS)
    assert isinstance(values["secret_id"], str)
    assert re.fullmatch(LEAK.inputs["secret_id"].pattern or ".*", values["secret_id"])
    assert isinstance(values["namespace"], str)
    for name in ("deployments", "email_to"):
        assert isinstance(values[name], list)
        assert all(isinstance(item, str) and item for item in values[name])


@FUZZ
@given(st.permutations(["secret_id=prod/db", "deployments=api,worker", "namespace=staging"]))
def test_parse_pairs_ignores_order(ordered: list[str]) -> None:
    """The order of --input pairs does not change the result."""
    assert parse_pairs(ordered, LEAK) == {
        "secret_id": "prod/db",
        "deployments": ["api", "worker"],
        "namespace": "staging",
        "email_to": [],
    }


SEED_BOOKS = {
    path.stem: load(path.read_text("utf-8"), path.name).playbook
    for path in sorted(REPO.glob("playbooks/*.yaml"))
}


@FUZZ
@given(st.sampled_from(sorted(SEED_BOOKS)), st.data())
def test_parse_pairs_on_every_seed(name: str, data: st.DataObject) -> None:
    """For every seed playbook (durations included) parse_pairs returns its inputs or InputError."""
    book = SEED_BOOKS[name]
    declared = sorted(book.inputs)
    key = st.one_of(st.sampled_from(declared), st.text(max_size=6))
    value = st.one_of(
        st.sampled_from(("15m", "99999999999999d", "0s", "AKIAABCDEFGHIJKLMNOP", "a,b", "")),
        st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 10**30), st.sampled_from("smhdw")),
        st.text(max_size=12),
    )
    given_pairs = data.draw(
        st.lists(st.builds(lambda k, v: f"{k}={v}", key, value), max_size=5), label="pairs"
    )
    values = parse_or_error(given_pairs, book)
    if isinstance(values, InputError):
        assert values.problems
        return
    assert set(values) == set(declared)
