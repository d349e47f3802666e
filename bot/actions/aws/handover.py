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
from bot.core.errors import ConfigError, UsageError
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


def stash(
    sm: Any,
    name: str,
    value: str,
    ctx: ActionContext,
    description: str,
    *,
    token: str | None = None,
) -> SecretRef:
    """Store ``value`` as version ``token`` (default ``ctx.client_token``) of secret
    ``name``; return its ref. A person handing over a secret twice gets two tokens."""
    from botocore.exceptions import ClientError

    ctx.mark_secret(value)
    token = token or ctx.client_token
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


def hand_over(run_id: str, step_id: str, incident_id: str, value: str, nonce: str) -> str:
    """Store a secret a person hands over for a manual task; return its reference.

    Called by the CLI and the Slack modal, never by the workflow: the value goes from
    the person straight into Secrets Manager and the run only ever sees the reference.
    ``nonce`` makes each hand-over its own version, so a second try after a refusal
    does not collide with the first.
    """
    from bot.actions.aws import client as aws
    from bot.core.redaction import Redactor
    from bot.core.refs import client_token, handover_name

    if not value.strip():
        raise UsageError("the secret is empty; nothing was sent")
    reason = aws.not_configured()
    if reason is not None:
        raise ConfigError(f"handing over a secret needs AWS Secrets Manager: {reason}")
    ctx = ActionContext(
        run_id=run_id,
        step_id=step_id,
        item_index=None,
        attempt=1,
        incident_id=incident_id,
        redactor=Redactor(),
    )
    try:
        ref = stash(
            aws.client("secretsmanager"),
            handover_name(aws.handover_prefix(), run_id, step_id),
            value,
            ctx,
            f"irbot: secret handed over for {run_id} step {step_id}",
            token=client_token(f"{ctx.idempotency_key}:{nonce}"),
        )
    except ActionError as exc:
        raise ConfigError(f"could not store the secret: {exc.message}") from exc
    return str(ref)
