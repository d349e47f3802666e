"""The four seed playbooks: valid, with pinned inputs, and every destructive step gated."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core import library
from bot.core.catalog import default_catalog
from bot.core.coverage import covered_by, needs_gate
from bot.core.playbook import ActionStep, ApprovalStep, InputType, ManualStep, WaitStep
from bot.core.validate import LoadedPlaybook

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
SEEDS = ("leak-response", "compromise-detection", "lost-access", "rotate-api-key")


@pytest.fixture(scope="module")
def books() -> dict[str, LoadedPlaybook]:
    return library.read([PLAYBOOKS]).loaded()


def test_all_seed_playbooks_validate_without_warnings() -> None:
    """The shipped playbooks load, with no errors and no warnings."""
    lib = library.read([PLAYBOOKS])
    assert lib.diagnostics == []
    assert set(SEEDS) <= set(lib.names())


def _actions(book: LoadedPlaybook) -> list[str]:
    return [s.action for s in book.playbook.steps if isinstance(s, ActionStep)]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "leak-response",
            {
                "secret_id": (InputType.STRING, True, None),
                "deployments": (InputType.LIST, False, []),
                "namespace": (InputType.STRING, False, "production"),
            },
        ),
        (
            "compromise-detection",
            {
                "access_key_id": (InputType.STRING, True, None),
                "window": (InputType.DURATION, False, "24h"),
            },
        ),
        (
            "lost-access",
            {
                "iam_user": (InputType.STRING, True, None),
                "secret_id": (InputType.STRING, True, None),
                "deployments": (InputType.LIST, False, []),
                "namespace": (InputType.STRING, False, "production"),
                "grace": (InputType.DURATION, False, "7d"),
            },
        ),
        (
            "rotate-api-key",
            {
                "service": (InputType.STRING, True, None),
                "secret_id": (InputType.STRING, True, None),
                "deployments": (InputType.LIST, False, []),
                "namespace": (InputType.STRING, False, "production"),
            },
        ),
    ],
)
def test_pinned_inputs(
    books: dict[str, LoadedPlaybook],
    name: str,
    expected: dict[str, tuple[InputType, bool, object]],
) -> None:
    """Users and triggers rely on these input names, types and defaults."""
    inputs = books[name].playbook.inputs
    for key, (kind, required, default) in expected.items():
        assert key in inputs, key
        assert inputs[key].type is kind
        assert inputs[key].is_required is required
        assert inputs[key].default == default


@pytest.mark.parametrize("name", SEEDS)
def test_every_destructive_step_is_gated_by_sre_and_security(
    books: dict[str, LoadedPlaybook], name: str
) -> None:
    """Each destructive step has a gate of >= 2 people from sre/security before it."""
    book = books[name].playbook
    catalog = default_catalog()
    guard = covered_by(book.steps, catalog)
    destructive = [s for s in book.steps if needs_gate(s, catalog)]
    assert destructive
    for step in destructive:
        gate = book.step(guard[step.id])
        assert isinstance(gate, ApprovalStep)
        assert gate.approval.min >= 2
        assert set(gate.approval.from_) == {"group:sre", "group:security"}
        assert book.steps.index(gate) < book.steps.index(step)


@pytest.mark.parametrize("name", SEEDS)
def test_paging_and_email_are_optional(books: dict[str, LoadedPlaybook], name: str) -> None:
    """PagerDuty and e-mail steps skip cleanly where they are not configured."""
    for step in books[name].playbook.steps:
        if isinstance(step, ActionStep) and step.action.split(".")[0] in ("pagerduty", "notify"):
            assert step.optional, step.id


def test_leak_response_shape(books: dict[str, LoadedPlaybook]) -> None:
    """Announce and page; gate; rotate; restart each deployment and wait; verify; notify;
    manual revoke-at-source and scrub-history tasks."""
    book = books["leak-response"].playbook
    actions = _actions(books["leak-response"])
    assert actions[:2] == ["slack.post", "pagerduty.trigger"]
    assert actions.index("aws.secretsmanager.rotate") < actions.index("k8s.rollout_restart")
    restart = book.step("restart")
    assert isinstance(restart, ActionStep)
    assert restart.for_each == "{{ inputs.deployments }}"
    assert restart.with_["wait"] is True
    assert "k8s.rollout_status" in actions
    manual = [s.id for s in book.steps if isinstance(s, ManualStep)]
    assert manual == ["revoke_at_source", "scrub_history"]


def test_compromise_detection_shape(books: dict[str, LoadedPlaybook]) -> None:
    """Evidence and its summary come before the gate; deactivate and quarantine after."""
    book = books["compromise-detection"].playbook
    ids = [s.id for s in book.steps]
    evidence = book.step("evidence")
    assert isinstance(evidence, ActionStep)
    assert evidence.action == "aws.cloudtrail.lookup"
    assert ids.index("evidence") < ids.index("summary") < ids.index("approve")
    assert ids.index("approve") < ids.index("deactivate") < ids.index("quarantine")
    assert {"aws.iam.deactivate_access_key", "aws.iam.quarantine_user"} <= set(
        _actions(books["compromise-detection"])
    )


def test_lost_access_shape(books: dict[str, LoadedPlaybook]) -> None:
    """Two gates: one before the new key, one before retiring the old key; wait grace; delete."""
    book = books["lost-access"].playbook
    ids = [s.id for s in book.steps]
    gates = [s.id for s in book.steps if isinstance(s, ApprovalStep)]
    assert len(gates) == 2
    order = ["new_key", "store", "restart", "verify", "deactivate_old", "grace", "delete_old"]
    assert [ids.index(i) for i in order] == sorted(ids.index(i) for i in order)
    assert ids.index(gates[0]) < ids.index("new_key")
    assert ids.index("verify") < ids.index(gates[1]) < ids.index("deactivate_old")
    grace = book.step("grace")
    assert isinstance(grace, WaitStep)
    assert grace.wait == "{{ inputs.grace }}"
    guard = covered_by(book.steps, default_catalog())
    assert guard["delete_old"] == gates[1]


def test_rotate_api_key_hands_over_a_secret(books: dict[str, LoadedPlaybook]) -> None:
    """A manual task with secret input feeds the store step by reference only."""
    book = books["rotate-api-key"].playbook
    handover = book.step("handover")
    assert isinstance(handover, ManualStep)
    assert handover.manual.secret is not None
    store = book.step("store")
    assert isinstance(store, ActionStep)
    assert store.with_["value_ref"] == "{{ steps.handover.outputs.secret_ref }}"
    assert isinstance(book.step("revoke_old"), ManualStep)


def test_example_drill_and_its_config_are_valid() -> None:
    """The README's local session uses examples/: the drill validates, and its irbot.yaml
    lets sre start it."""
    from bot.core.config import load_config

    root = PLAYBOOKS.parent / "examples"
    lib = library.read([root / "playbooks"])
    assert lib.diagnostics == []
    assert lib.names() == ["approval-drill"]
    assert load_config(root / "irbot.yaml").can_start("U01", "approval-drill")
