"""Plans and plan digests: what approvers sign."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core import library
from bot.core import plan as planning
from bot.core.inputs import parse_pairs
from bot.core.validate import LoadedPlaybook, load

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"


@pytest.fixture(scope="module")
def leak() -> LoadedPlaybook:
    return library.read([PLAYBOOKS]).get("leak-response")


def _plan(book: LoadedPlaybook, *pairs: str, **kw: object) -> planning.Plan:
    return planning.build(book, parse_pairs(pairs, book.playbook), **kw)  # type: ignore[arg-type]


def test_plan_resolves_inputs_and_items(leak: LoadedPlaybook) -> None:
    """Arguments are resolved from inputs; for_each gets one argument set per item."""
    result = _plan(leak, "secret_id=prod/db", "deployments=api,worker", "namespace=pay")
    restart = next(s for s in result.steps if s.id == "restart")
    assert restart.items == ["api", "worker"]
    assert restart.arguments == [
        {"name": "api", "namespace": "pay", "wait": True, "timeout": "10m"},
        {"name": "worker", "namespace": "pay", "wait": True, "timeout": "10m"},
    ]
    assert restart.destructive
    assert restart.guarded_by == "approve"
    rotate = next(s for s in result.steps if s.id == "rotate")
    assert rotate.arguments == {"secret_id": "prod/db"}


def test_unknown_values_are_placeholders(leak: LoadedPlaybook) -> None:
    """Outputs of steps that have not run appear as <steps.x.outputs.y>."""
    result = _plan(leak, "secret_id=prod/db")
    notify = next(s for s in result.steps if s.id == "notify")
    assert "<steps.rotate.outputs.version_id>" in notify.arguments["text"]


def test_when_is_evaluated_where_possible(leak: LoadedPlaybook) -> None:
    """A `when` that depends only on inputs is decided in the plan."""
    assert next(s for s in _plan(leak, "secret_id=a").steps if s.id == "email").when is False
    with_mail = _plan(leak, "secret_id=a", "email_to=sec@example.com")
    assert next(s for s in with_mail.steps if s.id == "email").when is True


def test_digest_is_deterministic(leak: LoadedPlaybook) -> None:
    """The same playbook and inputs give the same digest, every time."""
    first = _plan(leak, "secret_id=prod/db", "deployments=api").gates[0].digest
    second = _plan(leak, "deployments=api", "secret_id=prod/db").gates[0].digest
    assert first == second
    assert len(first) == 64


@pytest.mark.parametrize(
    "change",
    ["secret_id=prod/other", "deployments=api,worker", "namespace=staging", "deployments="],
)
def test_digest_changes_with_what_the_gate_covers(leak: LoadedPlaybook, change: str) -> None:
    """Any change to a covered step's resolved arguments changes the digest."""
    base = _plan(leak, "secret_id=prod/db", "deployments=api").gates[0].digest
    key = change.split("=", 1)[0]
    pairs = [p for p in ("secret_id=prod/db", "deployments=api") if not p.startswith(key)]
    assert _plan(leak, *pairs, change).gates[0].digest != base


def test_digest_binds_playbook_content(leak: LoadedPlaybook) -> None:
    """An edited playbook (different content hash) gives a different digest."""
    edited = load(leak.source.replace("timeout: 10m", "timeout: 11m"), "edited.yaml")
    inputs = parse_pairs(["secret_id=prod/db"], leak.playbook)
    assert (
        planning.build(edited, inputs).gates[0].digest
        != planning.build(leak, inputs).gates[0].digest
    )


def test_digest_ignores_outputs_the_gate_does_not_cover(leak: LoadedPlaybook) -> None:
    """Known outputs of earlier, uncovered steps do not change what approvers sign."""
    inputs = parse_pairs(["secret_id=prod/db", "deployments=api"], leak.playbook)
    before = planning.build(leak, inputs).gates[0].digest
    during = (
        planning.build(
            leak,
            inputs,
            outputs={"announce": {"channel": "C1", "ts": "1.2"}, "page": {"dedup_key": "k"}},
            run={"id": "run-1", "requester": "U9"},
            incident={"id": "INC-1"},
        )
        .gates[0]
        .digest
    )
    assert before == during


def test_digest_covers_values_known_at_gate_time() -> None:
    """A covered step fed by an earlier step's output signs the resolved value."""
    text = """\
name: chain
version: 1
steps:
  - id: owner
    action: aws.iam.find_key_owner
    with: {access_key_id: AKIAABCDEFGHIJKLMNOP}
  - id: gate
    approval: {from: [group:sre]}
  - id: quarantine
    action: aws.iam.quarantine_user
    with: {user_name: "{{ steps.owner.outputs.user_name }}"}
"""
    book = load(text, "chain.yaml")
    alice = planning.build(book, {}, outputs={"owner": {"user_name": "alice"}})
    bob = planning.build(book, {}, outputs={"owner": {"user_name": "bob"}})
    unknown = planning.build(book, {})
    assert len({alice.gates[0].digest, bob.gates[0].digest, unknown.gates[0].digest}) == 3
    step = next(s for s in unknown.steps if s.id == "quarantine")
    assert step.arguments == {"user_name": "<steps.owner.outputs.user_name>"}


def test_plan_to_dict_is_json_safe(leak: LoadedPlaybook) -> None:
    """The --json form round-trips through JSON with the gate digest."""
    data = _plan(leak, "secret_id=prod/db").to_dict()
    assert data["gates"][0]["id"] == "approve"
    assert data["gates"][0]["covers"] == ["rotate", "restart"]
    assert [s["id"] for s in data["steps"]][:3] == ["announce", "page", "approve"]


def test_digest_binds_every_input(leak: LoadedPlaybook) -> None:
    """Approvers sign the run's inputs as a whole: even an input no covered step uses
    (email_to) changes the digest, so nothing about the run can change after approval."""
    base = _plan(leak, "secret_id=prod/db").gates[0].digest
    assert _plan(leak, "secret_id=prod/db", "email_to=sec@example.com").gates[0].digest != base


def test_digest_refuses_objects_that_are_not_plain_data() -> None:
    """Nothing that could print a memory address can reach a digest."""
    with pytest.raises(TypeError, match="plan digest"):
        planning.canonical_json({"x": object()})


def test_input_named_like_a_dict_method_is_planned_by_value() -> None:
    """`{{ inputs.items }}` resolves to the input, so the digest is stable across processes."""
    text = """\
name: fan
version: 1
inputs:
  items: {type: list, default: [a, b]}
steps:
  - id: gate
    approval: {from: [group:sre]}
  - id: boom
    action: test.destructive
    for_each: "{{ inputs.items }}"
    with: {target: "{{ item }}"}
"""
    book = load(text, "fan.yaml")
    result = planning.build(book, {"items": ["a", "b"]})
    boom = next(s for s in result.steps if s.id == "boom")
    assert boom.items == ["a", "b"]
    assert boom.arguments == [{"target": "a"}, {"target": "b"}]
