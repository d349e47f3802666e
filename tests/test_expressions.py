"""Sandboxed expressions: native values, references, and escape attempts."""

from __future__ import annotations

import pytest

from bot.core import expressions
from bot.core.errors import ExpressionError

CTX = {
    "inputs": {"deployments": ["api", "worker"], "secret_id": "prod/db", "n": 3},
    "steps": {"rotate": {"outputs": {"arn": "arn:aws:secretsmanager:x"}, "status": "succeeded"}},
    "run": {"id": "run-1", "requester": "U01"},
    "incident": {"id": "INC-7"},
}


def test_single_expression_keeps_native_type() -> None:
    """`{{ inputs.deployments }}` is a list, not the string of a list."""
    assert expressions.evaluate("{{ inputs.deployments }}", CTX) == ["api", "worker"]
    assert expressions.evaluate("{{ inputs.n + 1 }}", CTX) == 4


def test_mixed_template_renders_text() -> None:
    """Text around expressions makes the result a string."""
    text = expressions.evaluate("{{ incident.id }}: {{ inputs.deployments | join(',') }}", CTX)
    assert text == "INC-7: api,worker"


def test_render_walks_nested_values() -> None:
    """Mappings and lists are resolved leaf by leaf; literals pass through."""
    value = {"a": ["{{ run.id }}", 5], "b": {"c": "{{ steps.rotate.outputs.arn }}"}, "d": True}
    assert expressions.render(value, CTX) == {
        "a": ["run-1", 5],
        "b": {"c": "arn:aws:secretsmanager:x"},
        "d": True,
    }


def test_bare_condition() -> None:
    """`when` accepts a bare expression and literal booleans."""
    assert expressions.truthy("inputs.deployments | length > 1", CTX) is True
    assert expressions.truthy("{{ inputs.n == 4 }}", CTX) is False
    assert expressions.truthy(False, CTX) is False


def test_bare_mode_rejects_templates_with_text() -> None:
    """A condition must be one expression, not a text template."""
    with pytest.raises(ExpressionError, match="one expression"):
        expressions.analyse("{{ a }} and {{ b }}", bare=True)


def test_references_are_found_without_evaluation() -> None:
    """analyse() lists every input/step/run reference, with subscripts, and skips locals."""
    analysis = expressions.analyse(
        "{% for d in inputs.deployments %}{{ d }}{% endfor %}"
        "{{ steps.rotate.outputs['arn'] }}{{ run.requester }}"
    )
    assert set(analysis.references) == {
        ("inputs", "deployments"),
        ("steps", "rotate", "outputs", "arn"),
        ("run", "requester"),
    }


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ inputs['__class__'] }}",
        "{{ run.__init__.__globals__ }}",
        "{{ (inputs|attr('x')).__dict__ }}",
    ],
)
def test_escape_attempts_are_rejected_statically(source: str) -> None:
    """Any name starting with '_' is refused before anything is evaluated."""
    with pytest.raises(ExpressionError, match="not allowed"):
        expressions.analyse(source)
    with pytest.raises(ExpressionError):
        expressions.evaluate(source, CTX)


def test_sandbox_blocks_dynamic_escape() -> None:
    """A private name built at run time is still blocked by the sandbox itself."""
    with pytest.raises(ExpressionError, match=r"sandbox|undefined"):
        expressions.evaluate("{{ inputs | attr('_' ~ '_class__') }}", CTX)


def test_sandbox_is_immutable() -> None:
    """Templates cannot mutate the data they are given."""
    with pytest.raises(ExpressionError):
        expressions.evaluate("{{ inputs.deployments.append('evil') }}", CTX)
    assert CTX["inputs"]["deployments"] == ["api", "worker"]


def test_no_globals_are_available() -> None:
    """range(), lipsum() and friends are removed: templates only see the context."""
    with pytest.raises(ExpressionError, match="undefined"):
        expressions.evaluate("{{ range(10) }}", CTX)


def test_strict_undefined() -> None:
    """A missing value is an error, never an empty string."""
    with pytest.raises(ExpressionError, match="undefined"):
        expressions.evaluate("{{ inputs.nope }}", CTX)
    with pytest.raises(ExpressionError, match="undefined"):
        expressions.evaluate("x {{ steps.rotate.outputs.nope }}", CTX)


def test_syntax_and_filter_errors() -> None:
    """Broken templates and unknown filters fail at analysis."""
    with pytest.raises(ExpressionError, match="syntax"):
        expressions.analyse("{{ inputs.x ")
    with pytest.raises(ExpressionError, match="nofilter"):
        expressions.analyse("{{ inputs.x | nofilter }}")


def test_unresolved_placeholders_render_as_paths() -> None:
    """Values not known yet render as <path>, so a plan shows what will be substituted."""
    ctx = {"steps": {"new_key": expressions.Unresolved("steps.new_key")}}
    assert (
        expressions.evaluate("key {{ steps.new_key.outputs.key_ref }}", ctx)
        == "key <steps.new_key.outputs.key_ref>"
    )
    value = expressions.evaluate("{{ steps.new_key.outputs['x'] }}", ctx)
    assert value == expressions.Unresolved("steps.new_key.outputs.x")


def test_is_template() -> None:
    """Only strings with Jinja markers are templates."""
    assert expressions.is_template("a {{ b }}")
    assert expressions.is_template("{% if x %}y{% endif %}")
    assert not expressions.is_template("plain")
    assert not expressions.is_template(5)


@pytest.mark.parametrize("name", ["items", "keys", "values", "get", "update", "pop"])
def test_data_keys_win_over_dict_methods(name: str) -> None:
    """An input called `items` is the input, not dict.items (that printed a memory address)."""
    ctx = {"inputs": {name: ["a", "b"]}}
    assert expressions.evaluate(f"{{{{ inputs.{name} }}}}", ctx) == ["a", "b"]
    assert expressions.evaluate(f"{{{{ inputs.{name} | join(',') }}}}", ctx) == "a,b"
