"""The Secrets Manager actions: ``aws.secretsmanager.rotate`` and ``.put_value``.

rotate — a secret with rotation enabled is rotated by its own Lambda: ``RotateSecret``
(``RotateImmediately``, ``ClientRequestToken`` = the step's token), then irbot polls until
AWSCURRENT reaches that version (``method: lambda``). Any other secret is rotated by irbot
itself (:mod:`bot.actions.aws.rotation`): ``method`` is ``postgres``, ``redis`` or ``generic``.

put_value — store a value handed over by reference as the new AWSCURRENT version.

Both are safe to repeat: the step's token names the version they create, so a repeat
finds it (or the rotation in progress) and finishes or reports it instead of starting
over. Outputs are references only; every value read is added to ``ctx.secrets``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from bot.actions.aws import handover, rotation
from bot.actions.aws.client import aws_call, client, not_configured
from bot.actions.aws.rotation import CURRENT, PREVIOUS, TokenState, Versions
from bot.core.catalog.aws import SecretsManagerPutValue, SecretsManagerRotate
from bot.core.errors import UsageError
from bot.core.refs import SecretRef
from bot.engine.actions import ActionContext, ActionError, Registry

POLL_FIRST, POLL_MAX = 0.5, 5.0
"""Seconds between DescribeSecret polls while a rotation Lambda works (doubling)."""


async def rotate(inputs: SecretsManagerRotate, ctx: ActionContext) -> Mapping[str, Any]:
    """Rotate the secret (with its Lambda, or the four steps here); see the module doc."""
    sm = client("secretsmanager", inputs.region)  # built here: boto3 sessions are not thread-safe
    region = inputs.region or sm.meta.region_name
    described = await asyncio.to_thread(rotation.describe, sm, inputs.secret_id, region)
    versions, token = Versions.of(described), ctx.client_token
    state = versions.state(token)
    if state in (TokenState.DONE, TokenState.SUPERSEDED):
        return await asyncio.to_thread(_already_rotated, sm, described, state, region, ctx)
    pending = versions.foreign_pending(token)
    if pending is not None:
        raise rotation.conflict(described, pending, region)
    if described.get("RotationEnabled"):
        return await _rotate_with_lambda(sm, described, region, inputs.wait_timeout, ctx)
    return await asyncio.to_thread(rotation.rotate_in_place, sm, described, region, ctx)


def _already_rotated(
    sm: Any, described: Mapping[str, Any], state: TokenState, region: str, ctx: ActionContext
) -> dict[str, Any]:
    """A repeat of a finished rotation: the same outputs, nothing rotated twice."""
    token, name = ctx.client_token, described["Name"]
    method = rotation.method_of(sm, described, ctx)
    if state is TokenState.DONE:
        previous = rotation.finish(sm, described, token, region)  # drops a leftover AWSPENDING
    else:
        previous = None
        ctx.logger().warning("rotation.superseded", secret_id=name, version_id=token)
    ctx.logger().info("rotation.already_done", secret_id=name, version_id=token, method=method)
    return rotation.outputs(described, token, previous, method)


async def _rotate_with_lambda(
    sm: Any, described: Mapping[str, Any], region: str, timeout: timedelta, ctx: ActionContext
) -> dict[str, Any]:
    name, token, log = described["Name"], ctx.client_token, ctx.logger()
    versions = Versions.of(described)
    state = versions.state(token)
    if state is TokenState.UNLABELLED:
        raise ActionError(
            f"version {token} of secret {name} (this step's rotation request) lost its "
            "AWSPENDING label before it became AWSCURRENT: check the rotation Lambda's logs, "
            "then start a new run to rotate again",
            code="conflict",
        )
    before = versions.holder(CURRENT)
    if state is TokenState.FRESH:
        await asyncio.to_thread(
            aws_call,
            f"asking the rotation Lambda of secret {name} in {region} to rotate it",
            sm.rotate_secret,
            SecretId=described["ARN"],
            ClientRequestToken=token,
            RotateImmediately=True,
        )
        log.info("rotation.requested", secret_id=name, version_id=token, method="lambda")
    deadline = time.monotonic() + timeout.total_seconds()
    delay = POLL_FIRST
    while True:
        now = await asyncio.to_thread(rotation.describe, sm, described["ARN"], region)
        versions = Versions.of(now)
        if versions.has(token, CURRENT):
            log.info("rotation.finished", secret_id=name, version_id=token, method="lambda")
            return rotation.outputs(described, token, versions.holder(PREVIOUS) or before, "lambda")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ActionError(
                f"the rotation Lambda of secret {name} did not finish within "
                f"{timeout.total_seconds():g}s: AWSCURRENT has not moved to version {token}. "
                f"Stages found: {versions.summary()}. Check the Lambda's logs; a retry keeps "
                "waiting for the same rotation",
                retryable=True,
                code="timeout",
            )
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, POLL_MAX)


async def put_value(inputs: SecretsManagerPutValue, ctx: ActionContext) -> Mapping[str, Any]:
    """Store the referenced value as the secret's new AWSCURRENT version (idempotent)."""
    sm = client("secretsmanager", inputs.region)
    region = inputs.region or sm.meta.region_name
    source = client("secretsmanager", _ref_region(inputs.value_ref))
    return await asyncio.to_thread(_put_value, sm, source, inputs, region, ctx)


def _put_value(
    sm: Any, source: Any, inputs: SecretsManagerPutValue, region: str, ctx: ActionContext
) -> dict[str, Any]:
    described = rotation.describe(sm, inputs.secret_id, region)
    versions, token, name = Versions.of(described), ctx.client_token, described["Name"]
    state = versions.state(token)
    result = {"arn": described["ARN"], "name": name, "version_id": token}
    if state is not TokenState.FRESH:  # a repeat: this step's version is stored already
        previous = versions.holder(PREVIOUS) if state is TokenState.DONE else None
        ctx.logger().info("put_value.already_done", secret_id=name, version_id=token)
        return {**result, "previous_version_id": previous}
    pending = versions.foreign_pending(token)
    if pending is not None:  # finishing that rotation would overwrite the value put now
        raise rotation.conflict(described, pending, region)
    value = handover.resolve(source, inputs.value_ref, ctx)
    rotation.mark(ctx, value)
    put = aws_call(
        f"storing the new value of secret {name} in {region}",
        sm.put_secret_value,
        SecretId=described["ARN"],
        SecretString=value,
        ClientRequestToken=token,
    )
    ctx.logger().info("put_value.stored", secret_id=name, version_id=put["VersionId"])
    return {
        **result,
        "version_id": put["VersionId"],
        "previous_version_id": versions.holder(CURRENT),
    }


def _ref_region(ref_text: str) -> str | None:
    """The region of a reference given as an ARN (else the default region)."""
    try:
        secret_id = SecretRef.parse(ref_text).secret_id
    except UsageError:
        return None  # handover.resolve reports the malformed reference
    parts = secret_id.split(":")  # arn:aws:secretsmanager:<region>:<account>:secret:<name>
    if secret_id.startswith("arn:") and len(parts) > 3 and parts[3]:
        return parts[3]
    return None


def register(registry: Registry) -> None:
    registry.function("aws.secretsmanager.rotate", check=not_configured)(rotate)
    registry.function("aws.secretsmanager.put_value", check=not_configured)(put_value)
