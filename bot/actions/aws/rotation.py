"""The Secrets Manager rotation contract, run by irbot itself (no rotation Lambda).

The four steps, all under one ``ClientRequestToken`` (the step's ``ctx.client_token``):

1. createSecret — store the new value (:mod:`rotation_values`) as version *token* with
   the label AWSPENDING;
2. setSecret — for a database secret, change the password in PostgreSQL or Redis
   (:mod:`dbpassword`);
3. testSecret — log in with the AWSPENDING value;
4. finishSecret — move AWSCURRENT to *token* (``RemoveFromVersionId`` = the old version,
   which AWS labels AWSPREVIOUS), then remove AWSPENDING.

Every step looks at the secret's labels first, so a call repeated after a crash resumes:
the token's AWSPENDING version is reused rather than regenerated (and setSecret falls
back to it when the old password no longer works); a token that already holds AWSCURRENT
means the rotation is done. An AWSPENDING left by *another* token is a rotation in
progress: it is reported with the command that clears it, never overwritten.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from bot.actions.aws.client import action_error, aws_call, error_code
from bot.actions.aws.dbpassword import AUTH_FAILED, set_secret, test_secret
from bot.actions.aws.rotation_values import (
    DbSecret,
    db_secret,
    holds_secret,
    kind_of,
    new_password,
    parse_object,
    regenerate,
)
from bot.engine.actions import ActionContext, ActionError

CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"


class TokenState(enum.Enum):
    """Where this step's version (its client token) stands."""

    FRESH = "no version yet"
    PENDING = "AWSPENDING"
    DONE = "AWSCURRENT"
    SUPERSEDED = "labelled, but no longer AWSCURRENT"
    UNLABELLED = "present without a label"


@dataclass(frozen=True)
class Versions:
    """A secret's version id -> staging labels, from DescribeSecret."""

    stages: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(cls, described: Mapping[str, Any]) -> Versions:
        raw = described.get("VersionIdsToStages") or {}
        return cls({vid: tuple(labels) for vid, labels in raw.items()})

    def holder(self, stage: str) -> str | None:
        return next((vid for vid, labels in self.stages.items() if stage in labels), None)

    def has(self, version_id: str, stage: str) -> bool:
        return stage in self.stages.get(version_id, ())

    def state(self, token: str) -> TokenState:
        if token not in self.stages:
            return TokenState.FRESH
        if self.has(token, CURRENT):
            return TokenState.DONE
        if self.has(token, PENDING):
            return TokenState.PENDING
        return TokenState.SUPERSEDED if self.stages[token] else TokenState.UNLABELLED

    def foreign_pending(self, token: str) -> str | None:
        """A version other than ``token`` holding AWSPENDING without AWSCURRENT."""
        vid = self.holder(PENDING)
        return vid if vid not in (None, token) and not self.has(vid, CURRENT) else None

    def summary(self) -> str:
        """``<id> [AWSCURRENT], <id> [AWSPENDING]`` for labelled versions."""
        shown = [f"{vid} [{', '.join(labels)}]" for vid, labels in self.stages.items() if labels]
        return "; ".join(shown) or "no labelled versions"


def describe(sm: Any, secret_id: str, region: str) -> dict[str, Any]:
    """DescribeSecret, with a clear not-found and scheduled-for-deletion error."""
    try:
        described: dict[str, Any] = sm.describe_secret(SecretId=secret_id)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise ActionError(
                f"secret {secret_id} not found in {region}: check the secret_id and region",
                code="not_found",
            ) from exc
        raise action_error(exc, f"describing secret {secret_id} in {region}") from exc
    if described.get("DeletedDate"):
        raise ActionError(
            f"secret {secret_id} in {region} is scheduled for deletion: restore it first "
            f"(aws secretsmanager restore-secret --secret-id {secret_id} --region {region})",
            code="input",
        )
    return described


def conflict(described: Mapping[str, Any], pending: str, region: str) -> ActionError:
    """Another rotation's AWSPENDING blocks this one: say which and how to clear it."""
    name = described["Name"]
    return ActionError(
        f"secret {name} has a rotation in progress: version {pending} is AWSPENDING for "
        f"another request. Let it finish, or clear it with: {clear_pending(name, pending, region)}",
        code="conflict",
    )


def clear_pending(name: str, version: str, region: str) -> str:
    """The aws CLI command that takes AWSPENDING off ``version``."""
    return (
        f"aws secretsmanager update-secret-version-stage --secret-id {name} "
        f"--version-stage AWSPENDING --remove-from-version-id {version} --region {region}"
    )


def read(sm: Any, described: Mapping[str, Any], ctx: ActionContext, **version: str) -> str:
    """A version's SecretString (``VersionStage=`` and/or ``VersionId=``), marked secret."""
    name = described["Name"]
    shown = version.get("VersionId") or version.get("VersionStage")
    response = aws_call(
        f"reading version {shown} of secret {name}",
        sm.get_secret_value,
        SecretId=described["ARN"],
        **version,
    )
    value = response.get("SecretString")
    if not isinstance(value, str):
        raise ActionError(
            f"secret {name} holds binary data; irbot rotates text secrets only", code="input"
        )
    return mark(ctx, value)


def mark(ctx: ActionContext, value: str) -> str:
    """Mark a secret string and, for a JSON object, each secret field inside it."""
    ctx.mark_secret(value)
    for key, field in (parse_object(value) or {}).items():
        if isinstance(field, str) and (key == "password" or holds_secret(key)):
            ctx.mark_secret(field)
    return value


def outputs(
    described: Mapping[str, Any], version_id: str, previous: str | None, method: str
) -> dict[str, Any]:
    return {
        "arn": described["ARN"],
        "name": described["Name"],
        "version_id": version_id,
        "previous_version_id": previous,
        "method": method,
    }


def method_of(sm: Any, described: Mapping[str, Any], ctx: ActionContext) -> str:
    """How this secret is rotated: lambda, postgres, redis or generic."""
    if described.get("RotationEnabled"):
        return "lambda"
    return kind_of(read(sm, described, ctx, VersionStage=CURRENT), described["Name"])


def rotate_in_place(
    sm: Any, described: Mapping[str, Any], region: str, ctx: ActionContext
) -> dict[str, Any]:
    """Run (or resume) the four steps; returns the action's outputs."""
    log = ctx.logger()
    name, token = described["Name"], ctx.client_token
    versions = Versions.of(described)
    current = read(sm, described, ctx, VersionStage=CURRENT)
    kind = kind_of(current, name)
    current_db = (
        db_secret(current, kind, name, versions.holder(CURRENT) or "")
        if kind != "generic"
        else None
    )
    pending = _create(sm, described, ctx, current, current_db)
    if current_db is not None:
        pending_db = db_secret(pending, kind, name, token)
        stage = set_secret(current_db, pending_db, log)
        log.info("rotation.step", step="setSecret", secret_id=name, logged_in_with=stage)
        _test(pending_db, name, token, region)
        log.info("rotation.step", step="testSecret", secret_id=name, version_id=token)
    previous = finish(sm, described, token, region)
    log.info("rotation.step", step="finishSecret", secret_id=name, version_id=token)
    return outputs(described, token, previous, kind)


def finish(sm: Any, described: Mapping[str, Any], token: str, region: str) -> str | None:
    """finishSecret (idempotent): AWSCURRENT to ``token``, then drop its AWSPENDING.

    Returns the version AWSCURRENT left (now AWSPREVIOUS)."""
    arn, name = described["ARN"], described["Name"]
    versions = Versions.of(describe(sm, arn, region))
    doing = f"finishing the rotation of secret {name} (version {token})"
    previous = versions.holder(CURRENT)
    if previous != token:
        aws_call(
            doing,
            sm.update_secret_version_stage,
            SecretId=arn,
            VersionStage=CURRENT,
            MoveToVersionId=token,
            **({"RemoveFromVersionId": previous} if previous else {}),
        )
    else:
        previous = versions.holder(PREVIOUS)
    if versions.has(token, PENDING):
        aws_call(
            doing,
            sm.update_secret_version_stage,
            SecretId=arn,
            VersionStage=PENDING,
            RemoveFromVersionId=token,
        )
    return previous


def _create(
    sm: Any,
    described: Mapping[str, Any],
    ctx: ActionContext,
    current: str,
    current_db: DbSecret | None,
) -> str:
    """createSecret: the token's AWSPENDING value, made now or found from an earlier try."""
    arn, name, token = described["ARN"], described["Name"], ctx.client_token
    log = ctx.logger()
    state = Versions.of(described).state(token)
    doing = f"storing the new version {token} of secret {name} as AWSPENDING"
    if state is TokenState.FRESH:
        new = current_db.with_password(new_password()) if current_db else regenerate(current, name)
        mark(ctx, new)
        aws_call(
            doing,
            sm.put_secret_value,
            SecretId=arn,
            ClientRequestToken=token,
            SecretString=new,
            VersionStages=[PENDING],
        )
        log.info("rotation.step", step="createSecret", secret_id=name, version_id=token)
        return new
    if state is TokenState.UNLABELLED:  # someone cleared our AWSPENDING: take it up again
        aws_call(
            doing,
            sm.update_secret_version_stage,
            SecretId=arn,
            VersionStage=PENDING,
            MoveToVersionId=token,
        )
    log.info("rotation.resumed", secret_id=name, version_id=token, state=state.name)
    return read(sm, described, ctx, VersionId=token, VersionStage=PENDING)


def _test(pending: DbSecret, name: str, token: str, region: str) -> None:
    try:
        test_secret(pending)
    except ActionError as exc:
        if exc.code != AUTH_FAILED:
            raise
        raise ActionError(
            f"testSecret failed for secret {name}: {exc.message} after setSecret. "
            f"AWSPENDING version {token} stays, so a retry resumes; to abandon it: "
            f"{clear_pending(name, token, region)}",
            code=AUTH_FAILED,
        ) from exc
