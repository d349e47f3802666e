"""Secret references resolved and created in AWS Secrets Manager.

A step that produces secret material (a new IAM key, a value a person handed over)
:func:`stash`-es it under ``IRBOT_HANDOVER_PREFIX/<run>/<step>`` and outputs the
:class:`~bot.core.refs.SecretRef`; the step that consumes it calls :func:`resolve`.
Both are idempotent under the step's client token, so a repeated call after a crash
finds the version it wrote the first time.
"""

from __future__ import annotations

from typing import Any

from bot.actions.aws.client import action_error, aws_call, error_code
from bot.core.errors import UsageError
from bot.core.refs import SecretRef
from bot.engine.actions import ActionContext, ActionError


def resolve(sm: Any, ref_text: str, ctx: ActionContext) -> str:
    """The secret string a reference points at; added to the call's redaction set."""
    try:
        ref = SecretRef.parse(ref_text)
    except UsageError as exc:
        raise ActionError(exc.message, code="input") from exc
    response = aws_call(
        f"reading the secret reference to {ref.secret_id} (version {ref.version_id})",
        sm.get_secret_value,
        SecretId=ref.secret_id,
        VersionId=ref.version_id,
    )
    value = response.get("SecretString")
    if not isinstance(value, str):
        raise ActionError(
            f"the secret reference to {ref.secret_id} holds binary data; irbot moves text only",
            code="input",
        )
    return ctx.mark_secret(value)


def existing(sm: Any, name: str, token: str) -> SecretRef | None:
    """The version ``token`` of secret ``name`` if it was stored already (a repeat)."""
    from botocore.exceptions import ClientError

    try:
        described = sm.describe_secret(SecretId=name)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise
    if token in (described.get("VersionIdsToStages") or {}):
        return SecretRef(secret_id=described["ARN"], version_id=token)
    return None


def stash(sm: Any, name: str, value: str, ctx: ActionContext, description: str) -> SecretRef:
    """Store ``value`` as version ``ctx.client_token`` of secret ``name``; return its ref."""
    from botocore.exceptions import ClientError

    ctx.mark_secret(value)
    token = ctx.client_token
    doing = f"storing the handed-over secret {name}"
    found = aws_call(doing, existing, sm, name, token)
    if found is not None:
        return found
    try:
        created = sm.create_secret(
            Name=name,
            SecretString=value,
            ClientRequestToken=token,
            Description=description,
            Tags=[
                {"Key": "irbot:run", "Value": ctx.run_id},
                {"Key": "irbot:step", "Value": ctx.step_id},
            ],
        )
        return SecretRef(secret_id=created["ARN"], version_id=created["VersionId"])
    except ClientError as exc:
        if error_code(exc) != "ResourceExistsException":
            raise action_error(exc, doing) from exc
    put = aws_call(
        doing, sm.put_secret_value, SecretId=name, SecretString=value, ClientRequestToken=token
    )
    return SecretRef(secret_id=put["ARN"], version_id=put["VersionId"])
