"""Kubernetes actions: rollout restart and status of Deployments, Secret updates.

``k8s.rollout_restart`` does what ``kubectl rollout restart`` does and marks the pod
template with the step's idempotency key, so a repeated call (a retry, a resumed run)
finds its own restart and follows it instead of restarting the pods again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bot.actions import k8s_secret
from bot.actions.k8s_client import Cluster, Target, acall, connect, not_configured
from bot.actions.k8s_rollout import Rollout, follow, read
from bot.core.catalog.k8s import RolloutRestart, RolloutStatus
from bot.engine.actions import ActionContext, ActionError, Registry

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
RESTART_KEY = "irbot.dev/restart-key"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
CONFLICT_ATTEMPTS = 5
"""The patch carries the resourceVersion it was decided on; a conflict re-reads."""


async def rollout_restart(inputs: RolloutRestart, ctx: ActionContext) -> Mapping[str, Any]:
    """Restart a Deployment's pods (once per idempotency key); optionally wait."""
    cluster = await asyncio.to_thread(connect, inputs.context)
    try:
        generation, restarted_at = await _restart(cluster, inputs, ctx)
        if inputs.wait:
            timeout = inputs.timeout.total_seconds()
            await follow(cluster, inputs.namespace, inputs.name, timeout, ctx)
            status = "complete"
        else:
            _, rollout = await read(cluster, inputs.namespace, inputs.name)
            status = "complete" if rollout.done() else "progressing"
    finally:
        cluster.close()
    return {
        "name": inputs.name,
        "namespace": inputs.namespace,
        "restarted_at": restarted_at,
        "generation": generation,
        "status": status,
    }


async def _restart(cluster: Cluster, inputs: RolloutRestart, ctx: ActionContext) -> tuple[int, str]:
    """Patch the restart annotation unless our key is there; (generation, restarted_at)."""
    log = ctx.logger()
    ns, name = inputs.namespace, inputs.name
    target = Target("patch", "deployments.apps", ns, name)
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        deployment, rollout = await read(cluster, ns, name)
        template_meta = deployment.spec.template.metadata
        annotations = (template_meta.annotations if template_meta else None) or {}
        if annotations.get(RESTART_KEY) == ctx.idempotency_key:
            log.info("rollout.restart_found", namespace=ns, name=name, key=ctx.idempotency_key)
            return rollout.generation, str(annotations.get(RESTARTED_AT, ""))
        _refuse_paused(rollout)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "metadata": {"resourceVersion": deployment.metadata.resource_version},
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {RESTARTED_AT: now, RESTART_KEY: ctx.idempotency_key}
                    }
                }
            },
        }
        try:
            patched = await acall(
                cluster,
                target,
                cluster.apps().patch_namespaced_deployment,
                name=name,
                namespace=ns,
                body=body,
                _content_type=STRATEGIC_MERGE,
            )
        except ActionError as exc:
            if exc.code == "conflict" and attempt < CONFLICT_ATTEMPTS:
                continue
            raise
        generation = int(patched.metadata.generation or 0)
        log.info("rollout.restarted", namespace=ns, name=name, generation=generation)
        return generation, now
    raise AssertionError("unreachable: the last attempt returns or raises")


def _refuse_paused(rollout: Rollout) -> None:
    if rollout.paused:
        raise ActionError(
            f"deployment {rollout.namespace}/{rollout.name} is paused, so a restart would not "
            f"roll out: resume it first (kubectl rollout resume deployment/{rollout.name} "
            f"-n {rollout.namespace}); nothing was changed",
            code="paused",
        )


async def rollout_status(inputs: RolloutStatus, ctx: ActionContext) -> Mapping[str, Any]:
    """Wait until the Deployment's rollout is complete; its replica counts."""
    cluster = await asyncio.to_thread(connect, inputs.context)
    try:
        rollout = await follow(
            cluster, inputs.namespace, inputs.name, inputs.timeout.total_seconds(), ctx
        )
    finally:
        cluster.close()
    return {
        "name": inputs.name,
        "namespace": inputs.namespace,
        "status": "complete",
        "replicas": rollout.replicas,
        "updated_replicas": rollout.updated_replicas,
        "available_replicas": rollout.available_replicas,
    }


def register(registry: Registry) -> None:
    registry.function("k8s.rollout_restart", check=not_configured)(rollout_restart)
    registry.function("k8s.rollout_status", check=not_configured)(rollout_status)
    registry.function("k8s.update_secret", check=k8s_secret.not_configured)(
        k8s_secret.update_secret
    )
