"""The Kubernetes actions against the fake API server in tests/fake_kube.py.

The official client (37) talks HTTP to the fake through a kubeconfig, exactly as it
would to a cluster; the fake's controller bumps generations and completes rollouts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import socket
from collections.abc import Coroutine, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from bot.actions import k8s
from bot.actions.aws import client as aws
from bot.actions.aws import handover
from bot.actions.k8s_rollout import Rollout
from bot.actions.k8s_secret import update_secret
from bot.core.catalog import default_catalog
from bot.core.catalog.k8s import RolloutRestart, RolloutStatus, UpdateSecret
from bot.core.redaction import Redactor
from bot.engine.actions import ActionContext, ActionError, Registry
from tests.fake_kube import TOKEN, FakeKube, kube_fixture, kubeconfig_fixture  # noqa: F401

NS = "prod"


def make_ctx(step: str = "restart", item: int | None = None, run: str = "run-1") -> ActionContext:
    return ActionContext(
        run_id=run,
        step_id=step,
        item_index=item,
        attempt=1,
        incident_id="inc-1",
        redactor=Redactor(),
    )


def restart(name: str = "api", **kw: object) -> RolloutRestart:
    return RolloutRestart.model_validate({"name": name, "namespace": NS, **kw})


def run(coro: Coroutine[Any, Any, Mapping[str, Any]]) -> dict[str, Any]:
    return dict(asyncio.run(coro))


def fails(coro: Coroutine[Any, Any, Mapping[str, Any]]) -> ActionError:
    with pytest.raises(ActionError) as info:
        asyncio.run(coro)
    return info.value


def outputs_of(action: str) -> set[str]:
    return set(default_catalog()[action].outputs or ())


# --------------------------------------------------------------------------- restart


@pytest.mark.usefixtures("kubeconfig")
def test_restart_annotates_template_and_waits_until_complete(kube: FakeKube) -> None:
    """A restart patches restartedAt (strategic merge), bumps the generation and, with
    wait, returns "complete" only once the controller has converged."""
    kube.add_deployment(NS, "api", replicas=3)
    kube.set_delay(0.3)
    ctx = make_ctx()

    out = run(k8s.rollout_restart(restart(), ctx))

    assert set(out) == outputs_of("k8s.rollout_restart")
    assert out["status"] == "complete"
    assert out["generation"] == 2
    deployment = kube.deployment(NS, "api")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["kubectl.kubernetes.io/restartedAt"] == out["restarted_at"]
    assert str(out["restarted_at"]).endswith("Z")
    assert annotations["irbot.dev/restart-key"] == ctx.idempotency_key
    assert deployment["metadata"]["generation"] == 2
    assert deployment["status"]["observedGeneration"] == 2
    assert deployment["status"]["updatedReplicas"] == 3
    (patch,) = kube.patches
    assert patch["content_type"] == "application/strategic-merge-patch+json"


@pytest.mark.usefixtures("kubeconfig")
def test_restart_without_wait_reports_progressing(kube: FakeKube) -> None:
    """wait: false returns right after the patch, while the rollout is still going."""
    kube.add_deployment(NS, "api")
    kube.set_delay(30)

    out = run(k8s.rollout_restart(restart(wait=False), make_ctx()))

    assert out["status"] == "progressing"
    assert out["generation"] == 2
    assert kube.deployment(NS, "api")["status"]["observedGeneration"] == 1


@pytest.mark.usefixtures("kubeconfig")
def test_paused_deployment_is_refused_and_not_patched(kube: FakeKube) -> None:
    """A paused deployment would never roll out: refuse it, change nothing."""
    kube.add_deployment(NS, "api", paused=True)

    error = fails(k8s.rollout_restart(restart(), make_ctx()))

    assert error.code == "paused"
    assert not error.retryable
    assert "prod/api is paused" in error.message
    assert "kubectl rollout resume" in error.message
    assert kube.patches == []
    assert kube.deployment(NS, "api")["metadata"]["generation"] == 1


@pytest.mark.usefixtures("kubeconfig")
def test_stalled_rollout_fails_after_timeout_with_counts(kube: FakeKube) -> None:
    """A rollout stuck half-way fails at the timeout, not retryable, naming the counts."""
    kube.add_deployment(NS, "api", replicas=2)
    kube.set_delay(0.1)
    kube.stall(NS, "api")

    error = fails(k8s.rollout_restart(restart(timeout=timedelta(seconds=1)), make_ctx()))

    assert error.code == "rollout_timeout"
    assert not error.retryable
    assert "prod/api did not finish rolling out within 1s" in error.message
    assert "1 of 2 replicas updated, 3 total, 2 available" in error.message
    assert "new replicas to be updated" in error.message


@pytest.mark.usefixtures("kubeconfig")
def test_progress_deadline_exceeded_fails_with_the_reason(kube: FakeKube) -> None:
    """Progressing=False/ProgressDeadlineExceeded fails at once with the condition."""
    kube.add_deployment(NS, "api")
    kube.set_delay(0.1)
    kube.deadline_exceeded(NS, "api")

    error = fails(k8s.rollout_restart(restart(timeout=timedelta(seconds=30)), make_ctx()))

    assert error.code == "progress_deadline"
    assert not error.retryable
    assert "ProgressDeadlineExceeded" in error.message
    assert "has timed out progressing" in error.message
    assert "1 of 2 replicas updated" in error.message


@pytest.mark.usefixtures("kubeconfig")
def test_repeat_with_same_key_does_not_restart_twice(kube: FakeKube) -> None:
    """A repeated call (retry, resumed run) finds its own restart and only follows it;
    another step's key restarts again."""
    kube.add_deployment(NS, "api")
    kube.set_delay(0.05)
    ctx = make_ctx()

    first = run(k8s.rollout_restart(restart(), ctx))
    again = run(k8s.rollout_restart(restart(), make_ctx()))

    assert again == first
    assert kube.patch_count("deployments", NS, "api") == 1
    other = run(k8s.rollout_restart(restart(), make_ctx(step="restart-2")))
    assert other["generation"] == 3
    assert kube.patch_count("deployments", NS, "api") == 2


@pytest.mark.usefixtures("kubeconfig")
def test_conflict_rereads_and_patches_once(kube: FakeKube) -> None:
    """A 409 (the deployment changed between read and patch) is retried in the call."""
    kube.add_deployment(NS, "api")
    kube.fail(409, times=1, verb="patch")

    out = run(k8s.rollout_restart(restart(wait=False), make_ctx()))

    assert out["generation"] == 2
    assert kube.patch_count("deployments", NS, "api") == 1


@pytest.mark.usefixtures("kubeconfig")
def test_restart_at_concurrency_five(kube: FakeKube) -> None:
    """Twenty restarts, five at a time (leak-response's fan-out), all complete once."""
    names = [f"svc-{i}" for i in range(20)]
    for name in names:
        kube.add_deployment(NS, name)
    kube.set_delay(0.1)
    gate = asyncio.Semaphore(5)

    async def one(index: int, name: str) -> dict[str, Any]:
        async with gate:
            return dict(await k8s.rollout_restart(restart(name), make_ctx(item=index)))

    async def all_of() -> list[dict[str, Any]]:
        return await asyncio.gather(*(one(i, n) for i, n in enumerate(names)))

    results = asyncio.run(all_of())

    assert [r["status"] for r in results] == ["complete"] * 20
    assert all(kube.patch_count("deployments", NS, n) == 1 for n in names)
    keys = {
        kube.deployment(NS, n)["spec"]["template"]["metadata"]["annotations"][
            "irbot.dev/restart-key"
        ]
        for n in names
    }
    assert keys == {f"run-1:restart:{i}" for i in range(20)}


# --------------------------------------------------------------------------- status


@pytest.mark.usefixtures("kubeconfig")
def test_rollout_status_waits_and_returns_counts(kube: FakeKube) -> None:
    """rollout_status follows a rollout in progress and returns the final counts."""
    kube.add_deployment(NS, "api", replicas=4)
    kube.set_delay(0.4)
    run(k8s.rollout_restart(restart(wait=False), make_ctx()))

    out = run(k8s.rollout_status(RolloutStatus(name="api", namespace=NS), make_ctx("verify")))

    assert set(out) == outputs_of("k8s.rollout_status")
    assert out == {
        "name": "api",
        "namespace": NS,
        "status": "complete",
        "replicas": 4,
        "updated_replicas": 4,
        "available_replicas": 4,
    }
    assert kube.deployment(NS, "api")["status"]["observedGeneration"] == 2


@pytest.mark.usefixtures("kubeconfig")
def test_rollout_status_logs_progress_and_times_out(kube: FakeKube) -> None:
    """A stalled rollout is logged as rollout.waiting with counts, then times out."""
    kube.add_deployment(NS, "api")
    kube.set_delay(0.05)
    kube.stall(NS, "api")
    run(k8s.rollout_restart(restart(wait=False), make_ctx()))
    inputs = RolloutStatus(name="api", namespace=NS, timeout=timedelta(seconds=0.6))

    with capture_logs() as logs:
        error = fails(k8s.rollout_status(inputs, make_ctx("verify")))

    assert error.code == "rollout_timeout"
    waiting = [e for e in logs if e["event"] == "rollout.waiting"]
    assert waiting
    assert waiting[-1]["updated_replicas"] == 1
    assert waiting[-1]["replicas"] == 3
    assert waiting[-1]["log_level"] == "info"


@pytest.mark.parametrize(
    ("fields", "done"),
    [
        ({"generation": 3, "observed_generation": 2}, False),
        ({"updated_replicas": 1}, False),
        ({"replicas": 3}, False),
        ({"available_replicas": 1}, False),
        ({"desired": None}, True),
        ({}, True),
    ],
)
def test_rollout_done_follows_kubectl_rules(fields: dict[str, object], done: bool) -> None:
    """Each kubectl rollout-status rule on its own: observed generation, updated vs
    desired, old replicas pending termination, available vs updated."""
    base: dict[str, object] = {
        "namespace": NS,
        "name": "api",
        "generation": 2,
        "observed_generation": 2,
        "desired": 2,
        "replicas": 2,
        "updated_replicas": 2,
        "available_replicas": 2,
        "paused": False,
        "deadline": None,
    }
    assert Rollout(**{**base, **fields}).done() is done  # type: ignore[arg-type]


def test_deadline_is_ignored_until_the_generation_is_observed() -> None:
    """As in kubectl: a stale ProgressDeadlineExceeded of an older generation is not
    judged before the controller has observed the new spec."""
    stale = Rollout(NS, "api", 3, 2, 2, 2, 2, 2, False, "timed out")
    assert stale.done() is False
    with pytest.raises(ActionError, match="ProgressDeadlineExceeded"):
        Rollout(NS, "api", 3, 3, 2, 2, 2, 2, False, "timed out").done()


# --------------------------------------------------------------------------- API errors


@pytest.mark.usefixtures("kubeconfig")
def test_missing_deployment_is_a_clear_error(kube: FakeKube) -> None:
    """404 names the namespace/name and the context; not retryable."""
    error = fails(k8s.rollout_restart(restart("nope"), make_ctx()))

    assert error.code == "not_found"
    assert not error.retryable
    assert "deployment prod/nope not found (context fake)" in error.message
    assert kube.patches == []


@pytest.mark.usefixtures("kubeconfig")
def test_forbidden_patch_gives_an_rbac_message(kube: FakeKube) -> None:
    """403 on patch says which verb on which resource in which namespace to grant."""
    kube.add_deployment(NS, "api")
    kube.forbid(verb="patch", resource="deployments")

    error = fails(k8s.rollout_restart(restart(), make_ctx()))

    assert error.code == "denied"
    assert not error.retryable
    assert "RBAC denies irbot 'patch' on deployments.apps in namespace prod" in error.message
    assert "Role and RoleBinding" in error.message
    assert 'User "system:serviceaccount:irbot:irbot" cannot patch' in error.message
    assert kube.deployment(NS, "api")["metadata"]["generation"] == 1


@pytest.mark.parametrize(
    ("status", "code"), [(503, "k8s_5xx"), (500, "k8s_5xx"), (429, "throttled")]
)
@pytest.mark.usefixtures("kubeconfig")
def test_server_errors_and_throttling_are_retryable(kube: FakeKube, status: int, code: str) -> None:
    """5xx and 429 from the API server come back retryable, for the engine's backoff.
    (On PATCH: urllib3 itself retries GETs that carry Retry-After.)"""
    kube.add_deployment(NS, "api")
    kube.fail(status, times=1, verb="patch")

    error = fails(k8s.rollout_restart(restart(), make_ctx()))

    assert error.retryable
    assert error.code == code
    assert "deployment prod/api" in error.message
    assert kube.deployment(NS, "api")["metadata"]["generation"] == 1


@pytest.mark.usefixtures("kubeconfig")
def test_rejected_token_is_unauthorized(kube: FakeKube) -> None:
    """401 (an expired or rotated token) says to refresh the credentials."""
    kube.add_deployment(NS, "api")
    kube.token = "rotated"

    error = fails(k8s.rollout_status(RolloutStatus(name="api", namespace=NS), make_ctx()))

    assert error.code == "unauthorized"
    assert "rejected irbot's credentials (context fake)" in error.message


def test_unreachable_api_server_is_retryable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused connection is a retryable network error naming the server."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = {
        "apiVersion": "v1",
        "clusters": [{"name": "gone", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": TOKEN}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
        "current-context": "gone",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("KUBECONFIG", str(path))

    error = fails(k8s.rollout_status(RolloutStatus(name="api", namespace=NS), make_ctx()))

    assert error.code == "network"
    assert error.retryable
    assert f"http://127.0.0.1:{port}" in error.message


# --------------------------------------------------------------------------- configuration


def test_without_kubeconfig_the_actions_are_not_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No KUBECONFIG, no ~/.kube/config, not in a pod: every action says why."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    registry = Registry()
    k8s.register(registry)

    for name in ("k8s.rollout_restart", "k8s.rollout_status", "k8s.update_secret"):
        reason = registry.get(name).not_configured()
        assert reason is not None
        assert "KUBECONFIG" in reason
    error = fails(k8s.rollout_status(RolloutStatus(name="api"), make_ctx()))
    assert error.code == "config"


def test_kubeconfig_naming_a_missing_file_is_not_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KUBECONFIG pointing nowhere is reported as such (kubectl would not fall back)."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    registry = Registry()
    k8s.register(registry)

    assert "names no existing file" in (registry.get("k8s.rollout_status").not_configured() or "")


@pytest.mark.usefixtures("kubeconfig")
def test_configured_with_a_kubeconfig(kube: FakeKube) -> None:
    """With a kubeconfig the restart and status actions have nothing missing."""
    registry = Registry()
    k8s.register(registry)
    assert registry.get("k8s.rollout_restart").not_configured() is None
    assert registry.get("k8s.rollout_status").not_configured() is None


@pytest.mark.usefixtures("kubeconfig")
def test_unknown_context_is_a_clear_error(kube: FakeKube) -> None:
    """A context not in the kubeconfig is named, with the contexts that exist; no request
    reaches any server."""
    kube.add_deployment(NS, "api")

    error = fails(k8s.rollout_restart(restart(context="staging"), make_ctx()))

    assert error.code == "config"
    assert not error.retryable
    assert "context 'staging' is not in the kubeconfig" in error.message
    assert "contexts there: fake" in error.message
    assert kube.requests == []


@pytest.mark.usefixtures("kubeconfig")
def test_explicit_context_is_used(kube: FakeKube) -> None:
    """Naming the kubeconfig's context explicitly works like the current one."""
    kube.add_deployment(NS, "api")

    out = run(
        k8s.rollout_status(RolloutStatus(name="api", namespace=NS, context="fake"), make_ctx())
    )

    assert out["status"] == "complete"


# --------------------------------------------------------------------------- update_secret


def stash_canary(ctx: ActionContext) -> tuple[str, str]:
    """A canary value handed over into (moto's) Secrets Manager; (value, reference)."""
    canary = f"canary-{secrets.token_hex(12)}"
    sm = aws.client("secretsmanager")
    ref = handover.stash(sm, "irbot/handover/run-1/collect", canary, ctx, "test value")
    return canary, str(ref)


@pytest.mark.usefixtures("aws", "kubeconfig")
def test_update_secret_writes_one_key_and_keeps_the_others(kube: FakeKube) -> None:
    """The referenced value lands base64 in data[key]; other keys are untouched; the
    outputs, logs and redaction set keep the value out of sight."""
    kube.add_secret(NS, "db", {"password": "old-password", "user": "app"})
    canary, ref = stash_canary(make_ctx("collect"))
    ctx = make_ctx("write")
    inputs = UpdateSecret(name="db", namespace=NS, key="password", value_ref=ref)

    with capture_logs() as logs:
        out = run(update_secret(inputs, ctx))

    assert kube.secret_value(NS, "db", "password") == canary
    assert kube.secret_value(NS, "db", "user") == "app"
    assert set(out) == outputs_of("k8s.update_secret")
    assert out["key"] == "password"
    assert out["resource_version"] == kube.secret(NS, "db")["metadata"]["resourceVersion"]
    encoded = base64.b64encode(canary.encode()).decode()
    assert {canary, encoded} <= ctx.secrets
    for text in (json.dumps(out), json.dumps(logs, default=str)):
        assert canary not in text
        assert encoded not in text
    assert any(e["event"] == "secret.updated" for e in logs)
    assert kube.patches[-1]["content_type"] == "application/merge-patch+json"
    assert kube.patches[-1]["body"] == {"data": {"password": encoded}}


@pytest.mark.usefixtures("aws", "kubeconfig")
def test_update_secret_again_changes_nothing(kube: FakeKube) -> None:
    """Writing the same value again (a repeat) leaves the resource version as it was."""
    kube.add_secret(NS, "db", {"password": "old-password"})
    _, ref = stash_canary(make_ctx("collect"))
    inputs = UpdateSecret(name="db", namespace=NS, key="password", value_ref=ref)

    first = run(update_secret(inputs, make_ctx("write")))
    again = run(update_secret(inputs, make_ctx("write")))

    assert again == first


@pytest.mark.usefixtures("aws", "kubeconfig")
def test_update_secret_of_missing_secret_fails_without_creating_it(kube: FakeKube) -> None:
    """A missing Secret is an error naming it (irbot never creates one); the value is
    nowhere in the error or the logs."""
    canary, ref = stash_canary(make_ctx("collect"))
    ctx = make_ctx("write")
    inputs = UpdateSecret(name="missing", namespace=NS, key="password", value_ref=ref)

    with capture_logs() as logs:
        error = fails(update_secret(inputs, ctx))

    assert error.code == "not_found"
    assert "secret prod/missing not found (context fake)" in error.message
    assert canary not in error.message
    assert canary not in json.dumps(logs, default=str)
    with pytest.raises(KeyError):
        kube.secret(NS, "missing")


@pytest.mark.usefixtures("aws", "kubeconfig")
def test_update_secret_with_a_bad_reference_is_an_input_error(kube: FakeKube) -> None:
    """A value_ref that is not an sm: reference fails before anything is written."""
    kube.add_secret(NS, "db", {"password": "old-password"})
    inputs = UpdateSecret(name="db", namespace=NS, key="password", value_ref="plain-text")

    error = fails(update_secret(inputs, make_ctx("write")))

    assert error.code == "input"
    assert kube.secret_value(NS, "db", "password") == "old-password"
