"""k8s.update_secret: write one key of an existing Kubernetes Secret from a reference.

The value never passes through the workflow: the step gets a Secrets Manager reference
(``sm:<version>:<secret-id>``) and resolves it here, inside the call. Writing the same
value again is a no-op on the API server, so a repeated call is harmless.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any

from bot.actions import k8s_client
from bot.actions.aws import client as aws
from bot.actions.aws import handover
from bot.core.catalog.k8s import UpdateSecret
from bot.engine.actions import ActionContext

MERGE_PATCH = "application/merge-patch+json"
"""A JSON merge patch of ``data`` touches one key and keeps the others."""


def not_configured() -> str | None:
    """The value comes from AWS Secrets Manager, so both integrations must be there."""
    reason = k8s_client.not_configured()
    if reason is not None:
        return reason
    reason = aws.not_configured()
    return None if reason is None else f"{reason} (the value is read from Secrets Manager)"


def _resolve(ref: str, ctx: ActionContext) -> str:
    return handover.resolve(aws.client("secretsmanager"), ref, ctx)


async def update_secret(inputs: UpdateSecret, ctx: ActionContext) -> Mapping[str, Any]:
    """Set ``data[key]`` of Secret ``namespace/name``; a missing Secret is an error."""
    cluster = await asyncio.to_thread(k8s_client.connect, inputs.context)
    try:
        value = await asyncio.to_thread(_resolve, inputs.value_ref, ctx)  # marked secret
        encoded = ctx.mark_secret(base64.b64encode(value.encode()).decode())
        patched = await k8s_client.acall(
            cluster,
            k8s_client.Target("patch", "secrets", inputs.namespace, inputs.name),
            cluster.core().patch_namespaced_secret,
            name=inputs.name,
            namespace=inputs.namespace,
            body={"data": {inputs.key: encoded}},
            _content_type=MERGE_PATCH,
        )
    finally:
        cluster.close()
    resource_version = str(patched.metadata.resource_version)
    ctx.logger().info(
        "secret.updated",
        namespace=inputs.namespace,
        name=inputs.name,
        key=inputs.key,
        resource_version=resource_version,
    )
    return {
        "name": inputs.name,
        "namespace": inputs.namespace,
        "key": inputs.key,
        "resource_version": resource_version,
    }
