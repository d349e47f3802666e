"""Faults through the engine: throttling bursts, AWS 5xx, stalled rollouts, bad targets.

Each fault meets a real action inside a real run (moto, the fake cluster); the test
checks the run's end state, its detail, the timeline, and that compensation ran.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from bot.engine import runtime
from bot.store import RunRecord
from tests.aws_faults import json_error
from tests.engine_support import FINISHED, Harness
from tests.fake_kube import FakeKube, kube_fixture, kubeconfig_fixture  # noqa: F401

ROTATE = """
name: rotate-one
version: 1
inputs:
  secret_id: {type: string}
steps:
  - id: gate
    approval: {min: 1, from: [group:sre], ttl: 10m}
  - id: rotate
    action: aws.secretsmanager.rotate
    with: {secret_id: "{{ inputs.secret_id }}"}
    retry: {attempts: 3, backoff: fixed, delay: 1s}
    on_failure:
      - action: test.noop
        with: {compensated: "{{ inputs.secret_id }}"}
"""

RESTART = """
name: restart-one
version: 1
inputs:
  deployment: {type: string}
steps:
  - id: gate
    approval: {min: 1, from: [group:sre], ttl: 10m}
  - id: restart
    action: k8s.rollout_restart
    with: {name: "{{ inputs.deployment }}", namespace: production, wait: true, timeout: 2s}
    on_failure:
      - action: test.noop
        with: {compensated: "{{ inputs.deployment }}"}
"""

OWNER = """
name: owner
version: 1
inputs:
  key: {type: string}
steps:
  - id: owner
    action: aws.iam.find_key_owner
    with: {access_key_id: "{{ inputs.key }}"}
"""


@pytest.fixture
def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws: str, kubeconfig: Path) -> Harness:
    harness = Harness(tmp_path / "irbot", None, monkeypatch)
    for text in (ROTATE, RESTART, OWNER):
        harness.add_playbook(text)
    return harness


def run(h: Harness, playbook: str, **inputs: Any) -> tuple[RunRecord, list[Any]]:
    """Run ``playbook`` as U01, approve its gate as U02; return the run and its timeline."""

    async def main() -> tuple[RunRecord, list[Any]]:
        await h.start()
        try:
            run_id = h.submit(playbook, "U01", **inputs)
            for _ in range(600):
                status = h.store.get_run(run_id).status
                if status == "waiting":
                    await h.vote(run_id, "U02")
                if status in FINISHED:
                    break
                await asyncio.sleep(0.1)
            record = await h.wait_for(run_id, timeout=60)
            return record, list(h.store.events(run_id=run_id))
        finally:
            h.stop()

    return asyncio.run(main())


def of(events: list[Any], step: str, kind: str) -> list[Any]:
    return [e for e in events if e.step_id == step and e.kind == kind]


def secret(name: str, value: str) -> str:
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=value)
    return name


def current(name: str) -> str:
    sm = boto3.client("secretsmanager")
    return str(sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")["SecretString"])


def test_a_throttling_burst_is_retried_and_the_run_finishes(h: Harness) -> None:
    """Five ThrottlingExceptions on PutSecretValue: botocore's own retries absorb some,
    the engine retries the step after the rest (visible on the timeline), and the
    rotation completes."""
    name = secret("prod/throttled", json.dumps({"api_key": "a" * 32}))
    with json_error(
        "before-send.secrets-manager.PutSecretValue", 400, "ThrottlingException", times=5
    ) as fault:
        record, events = run(h, "rotate-one", secret_id=name)
    assert record.status == "succeeded", record.detail
    assert fault.answered == 5
    retrying = of(events, "rotate", "step.retrying")
    assert retrying, [e.kind for e in events]
    assert "throttling" in retrying[0].payload["error"]
    assert json.loads(current(name))["api_key"] != "a" * 32
    assert of(events, "rotate.on_failure.0", "step.succeeded") == []


def test_aws_5xx_beyond_the_retries_fails_the_run_and_compensates(h: Harness) -> None:
    """PutSecretValue always answers 500: every attempt fails, the run fails naming the
    secret and the error, `on_failure` runs, and the secret is untouched."""
    name = secret("prod/broken", json.dumps({"api_key": "b" * 32}))
    with json_error("before-send.secrets-manager.PutSecretValue", 500, "InternalServiceError"):
        record, events = run(h, "rotate-one", secret_id=name)
    assert record.status == "failed"
    assert "prod/broken" in (record.detail or "")
    assert "500" in (record.detail or "")
    assert len(of(events, "rotate", "step.retrying")) == 2
    (compensation,) = of(events, "rotate.on_failure.0", "step.succeeded")
    assert compensation.payload["outputs"] == {"compensated": "prod/broken"}
    assert json.loads(current(name))["api_key"] == "b" * 32


def test_a_stalled_rollout_fails_after_its_timeout_with_the_reason(
    h: Harness, kube: FakeKube
) -> None:
    """The deployment never converges: the step fails after its 2 s timeout saying what
    it waited for, and compensation runs."""
    kube.add_deployment("production", "stuck")
    kube.stall("production", "stuck")
    record, events = run(h, "restart-one", deployment="stuck")
    assert record.status == "failed"
    (failed,) = of(events, "restart", "step.failed")
    error = failed.payload["error"]
    assert "stuck" in error
    assert "updated" in error  # the replica counts it was waiting on
    assert of(events, "restart.on_failure.0", "step.succeeded")


def test_a_missing_secret_fails_clearly_and_leaves_a_consistent_run(h: Harness) -> None:
    """A secret that does not exist: one attempt (not retryable), a message naming the
    secret and what to check; the run is failed (not left waiting or running) and its
    incident stays open for people to handle."""
    record, events = run(h, "rotate-one", secret_id="prod/nope")
    assert record.status == "failed"
    assert "prod/nope" in (record.detail or "")
    assert "not found" in (record.detail or "")
    assert of(events, "rotate", "step.retrying") == []
    assert events[-1].kind == "run.failed"
    store = runtime.open_store(h.settings)
    try:
        assert store.get_incident(record.incident_id).status == "open"
        assert store.list_runs(status="running") == []
        assert store.list_runs(status="waiting") == []
    finally:
        store.close()


def test_an_unknown_access_key_fails_naming_it(h: Harness) -> None:
    """find_key_owner on a key nobody owns: the run fails and says which key."""
    record, _ = run(h, "owner", key="AKIAIOSFODNN7EXAMPLE")
    assert record.status == "failed"
    assert "AKIAIOSFODNN7EXAMPLE" in (record.detail or "")
