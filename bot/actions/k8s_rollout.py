"""Rollout progress of a Deployment, judged as ``kubectl rollout status`` does.

:class:`Rollout` is a snapshot of the fields that matter; :func:`follow` polls until
the rollout completes, fails (ProgressDeadlineExceeded, paused) or the time is up.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

from bot.actions.k8s_client import Cluster, Target, acall
from bot.engine.actions import ActionContext, ActionError

POLL_FIRST = 0.25
POLL_MAX = 2.0
"""Polls start quick (small rollouts finish in seconds) and back off to every 2 s."""

DEADLINE_REASON = "ProgressDeadlineExceeded"


@dataclass(frozen=True)
class Rollout:
    """What ``kubectl rollout status`` looks at, read from one Deployment."""

    namespace: str
    name: str
    generation: int
    observed_generation: int
    desired: int | None
    replicas: int
    updated_replicas: int
    available_replicas: int
    paused: bool
    deadline: str | None
    """The Progressing condition's message when its reason is ProgressDeadlineExceeded."""

    @classmethod
    def of(cls, deployment: Any) -> Rollout:
        meta, spec, status = deployment.metadata, deployment.spec, deployment.status
        deadline = None
        for condition in (status.conditions if status else None) or []:
            if condition.type == "Progressing" and condition.reason == DEADLINE_REASON:
                deadline = condition.message or DEADLINE_REASON
        return cls(
            namespace=meta.namespace,
            name=meta.name,
            generation=meta.generation or 0,
            observed_generation=(status.observed_generation if status else None) or 0,
            desired=spec.replicas,
            replicas=(status.replicas if status else None) or 0,
            updated_replicas=(status.updated_replicas if status else None) or 0,
            available_replicas=(status.available_replicas if status else None) or 0,
            paused=bool(spec.paused),
            deadline=deadline,
        )

    @property
    def observed(self) -> bool:
        return self.generation <= self.observed_generation

    def done(self) -> bool:
        """Complete, by kubectl's rules; raises if it has failed for good."""
        if not self.observed:
            return False
        if self.deadline is not None:
            raise ActionError(
                f"deployment {self.namespace}/{self.name} exceeded its progress deadline "
                f"(Progressing: {DEADLINE_REASON}: {self.deadline}); {self.counts()}",
                code="progress_deadline",
            )
        if self.desired is not None and self.updated_replicas < self.desired:
            return False
        return self.replicas <= self.updated_replicas <= self.available_replicas

    def counts(self) -> str:
        desired = "?" if self.desired is None else self.desired
        return (
            f"{self.updated_replicas} of {desired} replicas updated, "
            f"{self.replicas} total, {self.available_replicas} available, "
            f"observed generation {self.observed_generation} of {self.generation}"
        )

    def waiting_for(self) -> str:
        """Why it is not done yet, in kubectl's words."""
        if not self.observed:
            return "the deployment controller to observe the new spec"
        if self.desired is not None and self.updated_replicas < self.desired:
            return "new replicas to be updated"
        if self.replicas > self.updated_replicas:
            return "old replicas to terminate"
        return "updated replicas to become available"

    def fields(self) -> dict[str, Any]:
        return asdict(self)


async def read(cluster: Cluster, namespace: str, name: str) -> tuple[Any, Rollout]:
    """The Deployment and its rollout snapshot."""
    target = Target("get", "deployments.apps", namespace, name)
    deployment = await acall(
        cluster, target, cluster.apps().read_namespaced_deployment, name=name, namespace=namespace
    )
    return deployment, Rollout.of(deployment)


async def follow(
    cluster: Cluster, namespace: str, name: str, timeout: float, ctx: ActionContext
) -> Rollout:
    """Poll until the rollout completes; a deadline, a pause or the timeout fails it.

    Timing out is not retryable: a stuck rollout stays stuck, and restarting again would
    only stack another rollout on top; people have to look at it.
    """
    log = ctx.logger()
    deadline = time.monotonic() + timeout
    interval = POLL_FIRST
    last: tuple[int, ...] | None = None
    while True:
        _, rollout = await read(cluster, namespace, name)
        if rollout.done():
            log.info("rollout.complete", **rollout.fields())
            return rollout
        if rollout.paused:
            raise ActionError(
                f"deployment {namespace}/{name} is paused mid-rollout ({rollout.counts()}): "
                f"resume it (kubectl rollout resume deployment/{name} -n {namespace})",
                code="paused",
            )
        state = (
            rollout.observed_generation,
            rollout.replicas,
            rollout.updated_replicas,
            rollout.available_replicas,
        )
        if state != last:  # log changes, not every poll
            log.info("rollout.waiting", waiting_for=rollout.waiting_for(), **rollout.fields())
            last = state
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ActionError(
                f"deployment {namespace}/{name} did not finish rolling out within "
                f"{timeout:g}s, still waiting for {rollout.waiting_for()}: {rollout.counts()}",
                code="rollout_timeout",
            )
        await asyncio.sleep(min(interval, remaining))
        interval = min(interval * 2, POLL_MAX)
