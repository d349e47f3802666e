"""The static validator: one test per kind of problem it reports, each pinned to file:line:col.

Playbook texts are built with :func:`playbook` / :func:`doc`; expected positions are computed
from marker substrings with :func:`pos`, so a test says *which* text a diagnostic points at.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bot.core import expressions
from bot.core.catalog import default_catalog
from bot.core.coverage import covered_by
from bot.core.diagnostics import Diagnostic
from bot.core.errors import ExpressionError, PlaybookInvalid
from bot.core.library import Library, read
from bot.core.validate import Result, check, load

FILE = "pb.yaml"

HEADER = """\
name: demo
version: 1
inputs:
  x: {type: string, default: a}
  deployments: {type: list, default: []}
"""


def doc(text: str) -> str:
    """A whole YAML document, written indented in a test."""
    return textwrap.dedent(text).lstrip("\n")


def playbook(steps: str, *, header: str = HEADER) -> str:
    """A playbook with the standard header and the given steps (written indented in a test)."""
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), "  ")
    return header + "steps:\n" + body + "\n"


def pos(text: str, marker: str, nth: int = 1) -> tuple[int, int]:
    """The 1-based (line, column) of the ``nth`` occurrence of ``marker`` in ``text``."""
    if nth == 1:
        assert text.count(marker) == 1, f"marker {marker!r} is not unique"
    index = -1
    for _ in range(nth):
        index = text.index(marker, index + 1)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


def where(diagnostic: Diagnostic) -> tuple[int, int]:
    return diagnostic.location.line, diagnostic.location.column


def run(text: str) -> Result:
    return check(text, FILE)


def only(result: Result, code: str) -> Diagnostic:
    """The single diagnostic with ``code``; fails if there are none or several."""
    found = [d for d in result.diagnostics if d.code == code]
    assert len(found) == 1, [d.format() for d in result.diagnostics]
    return found[0]


# --------------------------------------------------------------------------- baseline


def test_a_sound_playbook_has_no_diagnostics() -> None:
    """The helpers build a valid playbook, so every later diagnostic is caused by the test."""
    result = run(
        playbook("""
        - id: hello
          action: slack.post
          with: {text: "hi {{ inputs.x }}"}
        """)
    )
    assert result.diagnostics == []
    assert result.ok
    assert result.playbook is not None


# --------------------------------------------------------------------------- yaml


def test_yaml_syntax_error_is_located() -> None:
    """A YAML syntax error is reported as `yaml` at the offending line and column."""
    text = doc("""
        name: demo
        version: 1
        steps:
          - id: a
            action: slack.post
            with: {text: hi}
          - id: b
             action: slack.post
        """)
    result = run(text)
    diag = only(result, "yaml")
    assert diag.message.startswith("YAML syntax:")
    assert "mapping values are not allowed" in diag.message
    line, column = pos(text, "     action: slack.post")
    assert where(diag) == (line, column + len("     action"))
    assert result.playbook is None
    assert not result.ok


def test_duplicate_key_points_at_second_key() -> None:
    """A key given twice is `duplicate-key` at the second one, naming the first one's line."""
    text = playbook("""
        - id: a
          action: slack.post
          with: {text: hi}
          action: slack.update
        """)
    diag = only(run(text), "duplicate-key")
    first_line, _ = pos(text, "action: slack.post")
    assert diag.message == f"duplicate key 'action' (first defined at line {first_line})"
    assert where(diag) == pos(text, "action: slack.update")


# --------------------------------------------------------------------------- schema


def test_schema_unknown_key_suggests_the_right_one() -> None:
    """An unknown step key is `schema` at the key, with a did-you-mean and the allowed keys."""
    text = playbook("""
        - id: a
          action: slack.post
          wiht: {text: hi}
        """)
    diag = only(run(text), "schema")
    assert diag.message == "unknown key 'wiht'; did you mean 'with'?"
    assert diag.hint is not None
    assert "allowed keys:" in diag.hint
    assert "on_failure" in diag.hint
    assert where(diag) == pos(text, "wiht")


def test_schema_missing_required_key() -> None:
    """A missing required key is `schema` at the mapping that lacks it, naming its path."""
    text = playbook("""
        - id: gate
          approval: {min: 2}
        """)
    diag = only(run(text), "schema")
    assert diag.message == "missing required key 'from' in steps[0].approval"
    assert where(diag) == pos(text, "approval:")


def test_schema_missing_top_level_key_is_at_start_of_file() -> None:
    """A missing top-level key (version) is reported at line 1, column 1."""
    text = doc("""
        name: demo
        steps:
          - id: a
            action: slack.post
            with: {text: hi}
        """)
    diag = only(run(text), "schema")
    assert diag.message == "missing required key 'version'"
    assert where(diag) == (1, 1)


def test_schema_wrong_type() -> None:
    """A value of the wrong type is `schema` at the value, prefixed by its dotted path."""
    text = playbook(
        """
        - id: a
          action: slack.post
          with: {text: hi}
        """,
        header="name: demo\nversion: one\n",
    )
    diag = only(run(text), "schema")
    assert diag.message.startswith("version: Input should be a valid integer")
    assert where(diag) == pos(text, "one")


@pytest.mark.parametrize(
    "step",
    [
        pytest.param("- id: a\n  name: nothing to do\n", id="no-kind"),
        pytest.param("- id: a\n  action: slack.post\n  wait: 5m\n", id="two-kinds"),
    ],
)
def test_schema_step_needs_exactly_one_kind(step: str) -> None:
    """A step with no kind key, or two, is `schema` at the step, listing the five kinds."""
    text = playbook(step)
    diag = only(run(text), "schema")
    assert diag.message == (
        "a step needs exactly one of the keys: action, approval, manual, wait, playbook"
    )
    assert where(diag) == pos(text, "id: a")


def test_schema_bad_trigger() -> None:
    """A trigger of an unknown kind is `schema` at the trigger, listing the known kinds."""
    text = doc("""
        name: demo
        version: 1
        triggers:
          - jira: {project: SEC}
        steps:
          - id: a
            action: slack.post
            with: {text: hi}
        """)
    diag = only(run(text), "schema")
    assert diag.message.startswith("triggers[0]: a trigger is a mapping with one key")
    assert "github_secret_scanning, pagerduty, alertmanager, generic" in diag.message
    assert where(diag) == pos(text, "jira")


# --------------------------------------------------------------------------- actions


def test_unknown_action_suggests_a_close_name() -> None:
    """An action missing from the catalog is `unknown-action` at its name, with a suggestion."""
    text = playbook("""
        - id: a
          action: slack.pots
          with: {text: hi}
        """)
    diag = only(run(text), "unknown-action")
    assert diag.message == "unknown action 'slack.pots'; did you mean 'slack.post'?"
    assert diag.hint is not None
    assert "irbot playbook schema" in diag.hint
    assert where(diag) == pos(text, "slack.pots")


def test_action_input_unknown_with_key() -> None:
    """An unknown `with` key is `action-input` at the key, named after the action."""
    text = playbook("""
        - id: a
          action: slack.post
          with:
            text: hi
            chanel: "#sec"
        """)
    diag = only(run(text), "action-input")
    assert diag.message == "slack.post: unknown key 'chanel'; did you mean 'channel'?"
    assert where(diag) == pos(text, "chanel")


def test_action_input_missing_required_with_key() -> None:
    """A required action input left out is `action-input` at the `with` key."""
    text = playbook("""
        - id: a
          action: slack.post
          with:
            channel: "#sec"
        """)
    diag = only(run(text), "action-input")
    assert diag.message == "slack.post: missing required key 'text'"
    assert where(diag) == pos(text, "with:")


def test_action_input_literal_of_wrong_type() -> None:
    """A literal that does not fit the action's input model is `action-input` at the value."""
    text = playbook("""
        - id: a
          action: slack.post
          with:
            text: hi
            thread: maybe
        """)
    diag = only(run(text), "action-input")
    assert diag.message.startswith("slack.post: thread: Input should be a valid boolean")
    assert where(diag) == pos(text, "maybe")


def test_action_input_templated_values_are_not_type_checked() -> None:
    """A templated `with` value is known only at run time: its type and pattern go unchecked."""
    text = playbook("""
        - id: a
          action: slack.post
          with:
            text: hi
            thread: "{{ inputs.x }}"
        - id: b
          action: k8s.rollout_status
          with:
            name: "{{ inputs.x }}-Not_A_DNS_Name"
        """)
    result = run(text)
    assert result.diagnostics == []
    assert result.ok


# --------------------------------------------------------------------------- expressions


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        pytest.param("{{ inputs.x + }}", "template syntax:", id="syntax"),
        pytest.param("{{ inputs.x | shout }}", "No filter named 'shout'", id="unknown-filter"),
    ],
)
def test_expression_that_does_not_compile(template: str, fragment: str) -> None:
    """A template that does not parse, or uses an unknown filter, is `expression` at its value."""
    text = playbook(f"""
        - id: a
          action: slack.post
          with:
            text: "{template}"
        """)
    diag = only(run(text), "expression")
    assert fragment in diag.message
    assert where(diag) == pos(text, f'"{template}"')


@pytest.mark.parametrize(
    ("template", "blocked"),
    [
        pytest.param("{{ ''.__class__.__mro__ }}", "'__class__', '__mro__'", id="dunder-attr"),
        pytest.param("{{ x['__globals__'] }}", "'__globals__'", id="dunder-item"),
    ],
)
def test_expression_escape_attempts_are_blocked(template: str, blocked: str) -> None:
    """Sandbox-escape attempts via underscore names are `expression` errors, never evaluated."""
    text = playbook(f"""
        - id: a
          action: slack.post
          with:
            text: "{template}"
        """)
    diag = only(run(text), "expression")
    assert diag.message == (
        f"access to {blocked} is not allowed: names starting with '_' are blocked in expressions"
    )
    assert where(diag) == pos(text, f'"{template}"')


# --------------------------------------------------------------------------- references


def test_reference_unknown_input_suggests() -> None:
    """An undeclared input is `reference` at the template, with a did-you-mean."""
    text = playbook("""
        - id: a
          action: slack.post
          with:
            text: "{{ inputs.deployment }}"
        """)
    diag = only(run(text), "reference")
    assert diag.message == "unknown input 'deployment'; did you mean 'deployments'?"
    assert where(diag) == pos(text, '"{{ inputs.deployment }}"')


def test_reference_to_a_step_defined_later() -> None:
    """Using the outputs of a step that runs later is `reference`: it does not run before."""
    text = playbook("""
        - id: early
          action: slack.post
          with:
            text: "{{ steps.late.outputs.ts }}"
        - id: late
          action: slack.post
          with: {text: hi}
        """)
    diag = only(run(text), "reference")
    assert diag.message == "unknown step 'late', or it does not run before this one"
    assert where(diag) == pos(text, '"{{ steps.late.outputs.ts }}"')


def test_reference_to_an_unknown_step_suggests() -> None:
    """A step id that exists nowhere is `reference`, with a suggestion among earlier steps."""
    text = playbook("""
        - id: announce
          action: slack.post
          with: {text: hi}
        - id: follow_up
          action: slack.post
          with:
            text: "{{ steps.anounce.outputs.ts }}"
        """)
    diag = only(run(text), "reference")
    assert diag.message.startswith("unknown step 'anounce', or it does not run before this one")
    assert "did you mean 'announce'?" in diag.message
    assert where(diag) == pos(text, '"{{ steps.anounce')


def test_reference_to_an_unknown_output_of_an_action() -> None:
    """An output the action does not return is `reference`, listing the real outputs."""
    text = playbook("""
        - id: announce
          action: slack.post
          with: {text: hi}
        - id: follow_up
          action: slack.post
          with:
            text: "{{ steps.announce.outputs.tss }}"
        """)
    diag = only(run(text), "reference")
    assert diag.message == (
        "step 'announce' has no output 'tss'; did you mean 'ts'? (outputs: channel, ts)"
    )
    assert where(diag) == pos(text, '"{{ steps.announce.outputs.tss }}"')


def test_reference_item_outside_for_each() -> None:
    """`item` in a step without for_each is `reference`."""
    text = playbook("""
        - id: a
          action: slack.post
          with:
            text: "{{ item }}"
        """)
    diag = only(run(text), "reference")
    assert diag.message == "'item' is only defined in a step with for_each"
    assert where(diag) == pos(text, '"{{ item }}"')


def test_reference_unknown_root_name() -> None:
    """A name that is not one of the expression roots is `reference`, with a suggestion."""
    text = playbook("""
        - id: a
          action: slack.post
          with:
            text: "{{ input.x }}"
        """)
    diag = only(run(text), "reference")
    assert diag.message.startswith("unknown name 'input'; did you mean 'inputs'?")
    assert diag.message.endswith("expressions can use inputs, steps, run, incident, item")
    assert where(diag) == pos(text, '"{{ input.x }}"')


@pytest.mark.parametrize(
    ("template", "message"),
    [
        pytest.param(
            "{{ run.user }}",
            "run has no field 'user' (it has: id, requester, playbook, started_at, trigger)",
            id="run",
        ),
        pytest.param(
            "{{ incident.sev }}",
            "incident has no field 'sev' (it has: id, title, severity, url, channel, thread_ts)",
            id="incident",
        ),
    ],
)
def test_reference_unknown_run_or_incident_field(template: str, message: str) -> None:
    """An unknown field of `run` or `incident` is `reference`, listing the real fields."""
    text = playbook(f"""
        - id: a
          action: slack.post
          with:
            text: "{template}"
        """)
    diag = only(run(text), "reference")
    assert diag.message == message
    assert where(diag) == pos(text, f'"{template}"')


def test_reference_for_each_outputs_need_an_index() -> None:
    """A for_each step's outputs are a list: `.outputs.status` is `reference`, `[0]` is fine."""
    text = playbook("""
        - id: verify
          action: k8s.rollout_status
          for_each: "{{ inputs.deployments }}"
          with: {name: "{{ item }}"}
        - id: report
          action: slack.post
          with:
            text: "{{ steps.verify.outputs.status }}"
        - id: first
          action: slack.post
          with:
            text: "{{ steps.verify.outputs[0].status }} of {{ steps.verify.outputs | length }}"
        """)
    diag = only(run(text), "reference")
    assert diag.message == (
        "step 'verify' runs for each item, so its outputs are a list: "
        "use steps.verify.outputs[0].status or loop over them"
    )
    assert where(diag) == pos(text, '"{{ steps.verify.outputs.status }}"')


def test_reference_trigger_fills_unknown_input() -> None:
    """A trigger that fills an input the playbook does not declare is `reference` at its key."""
    text = doc("""
        name: demo
        version: 1
        inputs:
          secret_id: {type: string}
        triggers:
          - pagerduty:
              inputs:
                secret: "{{ event.title }}"
        steps:
          - id: a
            action: slack.post
            with: {text: hi}
        """)
    diag = only(run(text), "reference")
    assert diag.message == "trigger fills unknown input 'secret'; did you mean 'secret_id'?"
    assert where(diag) == pos(text, "secret:")


# --------------------------------------------------------------------------- steps


def test_duplicate_step_id() -> None:
    """A step id used twice is `duplicate-step` at the second id, naming the first step."""
    text = playbook("""
        - id: notify
          action: slack.post
          with: {text: one}
        - id: notify
          action: slack.post
          with: {text: two}
        """)
    diag = only(run(text), "duplicate-step")
    assert diag.message == "duplicate step id 'notify' (first used by step 1)"
    line, column = pos(text, "id: notify", nth=2)
    assert where(diag) == (line, column + len("id: "))


@pytest.mark.parametrize(
    "when",
    [
        pytest.param("false", id="literal-false"),
        pytest.param('"1 > 2"', id="constant-expression"),
        pytest.param('"{{ [] | length > 0 }}"', id="constant-template"),
    ],
)
def test_unreachable_when_always_false(when: str) -> None:
    """A `when` that is false without any input makes the step `unreachable`, at the `when` key."""
    text = playbook(f"""
        - id: never
          action: slack.post
          when: {when}
          with: {{text: hi}}
        """)
    diag = only(run(text), "unreachable")
    assert diag.message == "step 'never' is unreachable: its `when` is always false"
    assert where(diag) == pos(text, "when:")


def test_when_depending_on_inputs_is_not_unreachable() -> None:
    """A `when` that depends on inputs is not constant, so nothing is reported."""
    text = playbook("""
        - id: maybe
          action: slack.post
          when: "inputs.deployments | length > 0"
          with: {text: hi}
        """)
    assert run(text).diagnostics == []


def test_unreachable_step_using_outputs_of_unreachable_step() -> None:
    """A step that uses outputs of a step that never runs is itself `unreachable`, at its id."""
    text = playbook("""
        - id: never
          action: slack.post
          when: false
          with: {text: hi}
        - id: reply
          action: slack.post
          with:
            text: "{{ steps.never.outputs.ts }}"
        """)
    found = [d for d in run(text).diagnostics if d.code == "unreachable"]
    assert len(found) == 2
    diag = found[1]
    assert diag.message == (
        "step 'reply' can never run usefully: it uses the outputs of step 'never', which never runs"
    )
    line, column = pos(text, "id: reply")
    assert where(diag) == (line, column + len("id: "))


# --------------------------------------------------------------------------- gates


def test_gate_cannot_be_conditional() -> None:
    """An approval gate with `when` is a `gate` error at the `when` key, with a hint."""
    text = playbook("""
        - id: approve
          when: "{{ inputs.x }}"
          approval: {from: ["group:sre"]}
        - id: destroy
          action: test.destructive
        """)
    diag = only(run(text), "gate")
    assert diag.severity == "error"
    assert diag.message.startswith("approval gate 'approve' cannot be conditional")
    assert diag.hint == "put `when` on the guarded steps instead"
    assert where(diag) == pos(text, "when:")


def test_gate_covers_unknown_step() -> None:
    """A `covers` entry naming no step is a `gate` error at that entry, with a suggestion."""
    text = playbook("""
        - id: approve
          approval:
            from: ["group:sre"]
            covers: [rotate, rotat]
        - id: rotate
          action: test.destructive
        """)
    diag = only(run(text), "gate")
    assert diag.message == "gate 'approve' covers unknown step 'rotat'; did you mean 'rotate'?"
    assert where(diag) == pos(text, "rotat]")


def test_gate_covers_step_that_runs_before_it() -> None:
    """A gate cannot cover an earlier step: `gate` error at that entry, and that step is ungated."""
    text = playbook("""
        - id: destroy
          action: test.destructive
        - id: approve
          approval:
            from: ["group:sre"]
            covers: [destroy]
        """)
    result = run(text)
    diag = next(d for d in result.diagnostics if d.code == "gate" and d.severity == "error")
    assert diag.message == "gate 'approve' cannot cover step 'destroy', which runs before it"
    assert where(diag) == pos(text, "destroy]")
    assert only(result, "ungated-destructive").message.startswith("step 'destroy'")


def test_gate_guarding_nothing_is_a_warning() -> None:
    """A gate with no destructive step after it is a `gate` warning; the playbook stays valid."""
    text = playbook("""
        - id: approve
          approval: {from: ["group:sre"]}
        - id: say
          action: slack.post
          with: {text: hi}
        """)
    result = run(text)
    diag = only(result, "gate")
    assert diag.severity == "warning"
    assert diag.message == "gate 'approve' guards no destructive step"
    assert where(diag) == pos(text, "approval:")
    assert result.ok


# --------------------------------------------------------------------------- safety rule


def test_destructive_step_without_gate() -> None:
    """A destructive step with no gate before it is `ungated-destructive` at its action key."""
    text = playbook("""
        - id: rotate
          action: aws.secretsmanager.rotate
          with: {secret_id: "{{ inputs.x }}"}
        """)
    result = run(text)
    diag = only(result, "ungated-destructive")
    assert diag.message == (
        "step 'rotate' runs destructive action aws.secretsmanager.rotate but no approval gate "
        "before it covers it"
    )
    assert diag.hint is not None
    assert "'rotate'" in diag.hint
    assert where(diag) == pos(text, "action: aws")
    assert not result.ok


def test_destructive_step_not_in_explicit_covers() -> None:
    """A gate with explicit `covers` guards only those steps, not the next destructive one."""
    text = playbook("""
        - id: approve
          approval:
            from: ["group:sre"]
            covers: [first]
        - id: first
          action: test.destructive
        - id: second
          action: test.destructive
        """)
    diag = only(run(text), "ungated-destructive")
    assert diag.message.startswith("step 'second' runs destructive action test.destructive")
    assert where(diag) == pos(text, "action: test.destructive", nth=2)


def test_destructive_on_failure_needs_a_gate() -> None:
    """A harmless step whose on_failure action is destructive needs a gate, too."""
    text = playbook("""
        - id: say
          action: slack.post
          with: {text: hi}
          on_failure:
            - action: test.destructive
        """)
    diag = only(run(text), "ungated-destructive")
    assert diag.message.startswith("step 'say' runs destructive action test.destructive")
    assert where(diag) == pos(text, "action: slack.post")


def test_implicit_gate_covers_destructive_steps_up_to_next_gate() -> None:
    """A gate without `covers` guards every destructive step until the next gate."""
    text = playbook("""
        - id: approve
          approval: {from: ["group:sre"]}
        - id: rotate
          action: test.destructive
        - id: say
          action: slack.post
          with: {text: hi}
        - id: restart
          action: test.destructive
        - id: approve_again
          approval: {from: ["group:security"]}
        - id: revoke
          action: test.destructive
        """)
    result = run(text)
    assert result.diagnostics == []
    assert result.playbook is not None
    guard = covered_by(result.playbook.steps, default_catalog())
    assert guard == {"rotate": "approve", "restart": "approve", "revoke": "approve_again"}


def test_explicit_covers_guards_named_steps() -> None:
    """A gate with `covers` guards the named destructive steps, even past other steps."""
    text = playbook("""
        - id: approve
          approval:
            from: ["group:sre"]
            covers: [rotate, restart]
        - id: say
          action: slack.post
          with: {text: hi}
        - id: rotate
          action: test.destructive
        - id: restart
          action: test.destructive
        """)
    result = run(text)
    assert result.diagnostics == []
    assert result.ok


# --------------------------------------------------------------------------- library


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(doc(text), encoding="utf-8")
    return path


def test_library_duplicate_playbook_name(tmp_path: Path) -> None:
    """Two files with the same playbook name: `duplicate-playbook` at the second file's name."""
    body = "version: 1\nsteps:\n  - id: w\n    wait: 1m\n"
    first = _write(tmp_path, "a.yaml", "name: alpha\n" + body)
    second = _write(tmp_path, "b.yaml", "name: alpha\n" + body)
    library = read([tmp_path])
    diags = [d for d in library.diagnostics if d.code == "duplicate-playbook"]
    assert len(diags) == 1
    diag = diags[0]
    assert diag.message == f"playbook name 'alpha' is also used by {first}"
    assert diag.location.file == str(second)
    assert where(diag) == (1, 7)
    assert not library.ok


def test_library_unknown_playbook(tmp_path: Path) -> None:
    """A sub-playbook that no file defines is `unknown-playbook`, with a suggestion."""
    _write(tmp_path, "child.yaml", "name: contain\nversion: 1\nsteps:\n  - id: w\n    wait: 1m\n")
    text = doc("""
        name: parent
        version: 1
        steps:
          - id: call
            playbook: contian
        """)
    parent = _write(tmp_path, "parent.yaml", text)
    library = read([tmp_path])
    diag = only(_result_of(library, parent), "unknown-playbook")
    assert diag.message == "unknown playbook 'contian'; did you mean 'contain'?"
    assert where(diag) == pos(text, "contian")


def test_library_sub_playbook_inputs(tmp_path: Path) -> None:
    """A sub-playbook call missing a required input or giving an unknown one: `playbook-input`."""
    _write(
        tmp_path,
        "child.yaml",
        """
        name: contain
        version: 1
        inputs:
          secret_id: {type: string}
          namespace: {type: string, default: production}
        steps:
          - id: w
            wait: 1m
        """,
    )
    text = doc("""
        name: parent
        version: 1
        steps:
          - id: call
            playbook: contain
            with:
              namespac: staging
        """)
    parent = _write(tmp_path, "parent.yaml", text)
    result = _result_of(read([tmp_path]), parent)
    diags = [d for d in result.diagnostics if d.code == "playbook-input"]
    locations = {d.message: where(d) for d in diags}
    assert locations == {
        "playbook 'contain' needs input 'secret_id'": pos(text, "with:"),
        "playbook 'contain' has no input 'namespac'; did you mean 'namespace'?": pos(
            text, "namespac:"
        ),
    }
    assert not result.ok


def test_library_playbook_cycle_is_named(tmp_path: Path) -> None:
    """a -> b -> a is `playbook-cycle`, reported once, naming the whole cycle."""
    text_a = doc("""
        name: alpha
        version: 1
        steps:
          - id: call
            playbook: beta
        """)
    path_a = _write(tmp_path, "a.yaml", text_a)
    _write(
        tmp_path,
        "b.yaml",
        """
        name: beta
        version: 1
        steps:
          - id: call_alpha
            playbook: alpha
        """,
    )
    library = read([tmp_path])
    cycles = [d for d in library.diagnostics if d.code == "playbook-cycle"]
    assert len(cycles) == 1
    diag = cycles[0]
    assert diag.message == "sub-playbook cycle: alpha -> beta -> alpha"
    assert diag.location.file == str(path_a)
    assert where(diag) == pos(text_a, "beta")
    assert not library.ok


def _result_of(library: Library, path: Path) -> Result:
    return next(r for r in library.results if r.file == str(path))


# --------------------------------------------------------------------------- all at once


def test_independent_errors_are_all_reported() -> None:
    """One bad step hides no problem in another: every independent error is reported at once."""
    text = playbook("""
        - id: a
          action: slack.pots
          with: {text: hi}
        - id: b
          action: slack.post
          with: {text: hi, chanel: x}
        - id: c
          action: slack.post
          wiht: {text: hi}
        - id: d
          action: slack.post
          with:
            text: "{{ inputs.nope }}"
        - id: e
          action: test.destructive
        """)
    result = run(text)
    found = {(d.code, where(d)) for d in result.diagnostics}
    assert found == {
        ("unknown-action", pos(text, "slack.pots")),
        ("action-input", pos(text, "chanel")),
        ("schema", pos(text, "wiht")),
        ("reference", pos(text, '"{{ inputs.nope }}"')),
        ("ungated-destructive", pos(text, "action: test.destructive")),
    }


def test_diagnostics_are_sorted_by_location() -> None:
    """Diagnostics come in file order, whatever order the checks found them in."""
    text = playbook("""
        - id: destroy
          action: test.destructive
        - id: say
          action: slack.post
          with:
            text: "{{ inputs.nope }}"
        - id: last
          action: slack.post
          with: {text: bye}
          name: one
          name: two
        """)
    result = run(text)
    codes = [d.code for d in result.diagnostics]
    assert codes == ["ungated-destructive", "reference", "duplicate-key"]
    locations = [d.location for d in result.diagnostics]
    assert locations == sorted(locations)


def test_load_raises_playbook_invalid_with_locations() -> None:
    """`load()` refuses an invalid playbook; `.show()` prints file:line:col for each error."""
    text = playbook("""
        - id: destroy
          action: test.destructive
        """)
    with pytest.raises(PlaybookInvalid) as caught:
        load(text, FILE)
    line, column = pos(text, "action:")
    shown = caught.value.show()
    assert f"{FILE}:{line}:{column}: error[ungated-destructive]:" in shown
    assert caught.value.message == "1 error(s) in playbook"
    assert [d.code for d in caught.value.diagnostics] == ["ungated-destructive"]


def test_warnings_alone_do_not_make_a_playbook_invalid() -> None:
    """A playbook with only warnings loads, and carries its warnings."""
    text = playbook("""
        - id: approve
          approval: {from: ["group:sre"]}
        - id: say
          action: slack.post
          concurrency: 3
          with: {text: hi}
        """)
    loaded = load(text, FILE)
    assert loaded.name == "demo"
    assert {(w.code, w.severity) for w in loaded.warnings} == {
        ("gate", "warning"),
        ("concurrency", "warning"),
    }


# --------------------------------------------------------------------------- robustness


@pytest.mark.parametrize(
    "snippet",
    [
        "- id: g\n  approval: {from: [group:sre], ttl: 1000000000d}",
        "- id: w\n  wait: 99999999999999d",
        "- id: s\n  action: k8s.rollout_status\n  with: {name: api, timeout: 1000000000d}",
    ],
)
def test_absurd_durations_are_diagnostics_not_crashes(snippet: str) -> None:
    """A duration too large for timedelta is a located error, never an OverflowError."""
    result = run(playbook(snippet))
    assert not result.ok
    assert any("longer than the maximum" in d.message for d in result.diagnostics)


def test_malformed_step_causes_no_follow_on_reference_errors() -> None:
    """A step with a shape error is still a known id: its users get no 'unknown step' noise."""
    result = run(
        playbook("""
        - id: a
          action: slack.post
          with: {text: hi}
          bogus: 1
        - id: b
          action: slack.post
          with: {text: "{{ steps.a.outputs.ts }}"}
        """)
    )
    assert [d.code for d in result.diagnostics] == ["schema"]


def test_malformed_gate_causes_no_follow_on_ungated_error() -> None:
    """A gate with a shape error is reported once; the steps it meant to guard are not."""
    result = run(
        playbook("""
        - id: gate
          approval: {from: [group:sre], exclude_requester: false}
        - id: boom
          action: test.destructive
        """)
    )
    assert [d.code for d in result.diagnostics] == ["schema"]
    assert "ungated-destructive" not in {d.code for d in result.diagnostics}


def test_malformed_gate_after_destructive_step_still_flags_it() -> None:
    """Only steps after the malformed gate are spared; an earlier destructive step is not."""
    result = run(
        playbook("""
        - id: boom
          action: test.destructive
        - id: gate
          approval: {from: [group:sre], bogus: 1}
        """)
    )
    assert {d.code for d in result.diagnostics} == {"schema", "ungated-destructive"}


@pytest.mark.parametrize(
    "text",
    [
        "a: 2024-02-30",
        "a: 0000-00-00",
        "a: !!int x",
        "a: !!int ",
        "a: !!float x",
        "a: !!timestamp 2024-13-45",
        "a: !!timestamp ",
        "a: " + "9" * 5000,
    ],
)
def test_unreadable_scalars_are_located_yaml_errors(text: str) -> None:
    """Scalars PyYAML cannot build (impossible dates, bad tags) are `yaml` at the value."""
    diag = only(run(text), "yaml")
    assert where(diag) == (1, 4)
    assert "cannot read value" in diag.message


def test_lone_surrogate_is_a_diagnostic() -> None:
    """Text that cannot be encoded is reported, not raised."""
    assert "UTF-8" in only(run("name: \ud800"), "yaml").message


def test_nesting_limit_inside_with() -> None:
    """Deep nesting anywhere (here inside `with`) is refused before anything recurses."""
    deep = "[" * 200 + "]" * 200
    text = playbook(f"- id: a\n  action: slack.post\n  with: {{text: hi, blocks: {deep}}}")
    assert "nested more than" in only(run(text), "yaml").message


@pytest.mark.parametrize("key", ["wait-step", "action-step", "[key]"])
def test_keys_spelled_like_internal_tags_are_plain_unknown_keys(key: str) -> None:
    """A user key that matches a pydantic tag is reported as that key, with the right hint."""
    text = playbook(f"- id: a\n  wait: 1m\n  retry: {{'{key}': 1}}")
    diags = [d for d in run(text).diagnostics if d.code == "schema"]
    assert [d.message for d in diags] == ["unknown key 'retry'"]
    text = playbook(f"- id: a\n  wait: 1m\n  '{key}': 1")
    (diag,) = [d for d in run(text).diagnostics if d.code == "schema"]
    assert diag.message.startswith(f"unknown key {key!r}")
    assert diag.hint == "allowed keys: id, name, wait, when"


def test_ambiguous_regex_pattern_is_an_error() -> None:
    """A pattern Python warns about (possible nested set) is rejected, not half-accepted."""
    text = doc("""
        name: demo
        version: 1
        inputs:
          x: {type: string, pattern: "[[a]"}
        steps:
          - id: w
            wait: 1m
        """)
    diag = only(run(text), "schema")
    assert "not a valid regular expression" in diag.message


@pytest.mark.parametrize(
    "template",
    ["{{ 10**5000 }}", "{{ 'a' * 1000000000 }}", "{{ [0] * 10**9 }}"],
)
def test_huge_constants_are_never_built(template: str) -> None:
    """Validation does not evaluate templates; at run time the sandbox refuses huge values."""
    text = playbook(f'- id: a\n  action: slack.post\n  when: "{template}"\n  with: {{text: "x"}}')
    assert run(text).ok
    with pytest.raises(ExpressionError, match="not allowed"):
        expressions.evaluate(template, {})


def test_an_unknown_action_beside_a_destructive_compensation_is_reported_not_a_crash() -> None:
    """Found by tests/test_loader_fuzz.py: an empty action name next to a destructive
    on_failure action raised KeyError while naming the ungated action."""
    text = (
        "name: x\nversion: 1\nsteps:\n"
        "  - id: a\n    action: ''\n"
        "    on_failure: [{action: aws.iam.create_access_key}]\n"
    )
    result = check(text, "x.yaml")
    messages = [d.message for d in result.diagnostics]
    assert not result.ok
    assert "unknown action ''" in messages
    assert any("aws.iam.create_access_key but no approval gate" in m for m in messages)
