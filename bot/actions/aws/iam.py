"""IAM and STS actions: find a key's owner, create, deactivate and delete access keys,
quarantine a user, and prove that handed-over credentials work.

IAM has no client token, so every destructive action here first looks at what IAM
holds and only then acts; running one again with the same context does no harm.
The secret half of a new key leaves this module only into Secrets Manager
(:func:`bot.actions.aws.handover.stash`); outputs carry the reference.

create_access_key, crash-safe (a crash can repeat any call in flight):

1. The handover secret holds version ``ctx.client_token`` -> this step finished
   before: answer from its description (no IAM write).
2. Plan from the user's keys: the previous active key, and which inactive key to
   delete when the user already holds two (the quota).
3. Tag the user (one call): ``irbot:creating`` = client token, ``-since`` = time, and
   the plan with the key ids present now. A mark of another token younger than
   ``MARK_TTL`` means another run is creating a key: retry later.
4. Delete the planned inactive key, create the key, stash the pair, drop the tags.

A repeat that finds its own mark but no handover secret crashed between CreateAccessKey
and the stash: the secret half of any key not listed in the mark is lost, so that key
is deleted before a new one is created, and the outputs come from the stored plan.
A stash that fails with an error (not a crash) deletes the new key at once; the mark
stays, so a retry keeps the plan. Two runs must not create keys for one user at once:
the ``busy`` refusal is what keeps a repeat from deleting the other run's new key.

delete_access_key tags the user ``irbot:deleted-key`` = ``<key id> <client token>``
before it deletes. A key absent from the user counts as deleted already (``deleted:
false``) only when that receipt names it; otherwise the id was never the user's key as
far as IAM can tell (a typo, another account), and the error says so. The user must
exist either way. Without ``user_name`` the owner of a deleted key cannot be found, so
playbooks pass it (both seed playbooks do).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from bot.actions.aws import handover
from bot.actions.aws.client import (
    AWS_ERRORS,
    action_error,
    aws_call,
    client,
    credentials_client,
    error_code,
    handover_prefix,
    not_configured,
)
from bot.core.catalog.aws import (
    IamAccessKey,
    IamCreateAccessKey,
    IamFindKeyOwner,
    IamQuarantineUser,
    StsVerifyCredentials,
)
from bot.core.errors import UsageError
from bot.core.refs import SecretRef, handover_name
from bot.engine.actions import ActionContext, ActionError, Registry

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_iam.type_defs import AccessKeyMetadataTypeDef
    from mypy_boto3_secretsmanager import SecretsManagerClient

MARK = "irbot:creating"
MARK_SINCE = "irbot:creating-since"
MARK_KEYS = "irbot:creating-keys-before"
MARK_PREVIOUS = "irbot:creating-previous"
MARK_DELETED = "irbot:creating-deleted"
MARK_TAGS = (MARK, MARK_SINCE, MARK_KEYS, MARK_PREVIOUS, MARK_DELETED)
MARK_TTL = timedelta(minutes=15)
"""A mark of another run older than this is from a run that died: it no longer blocks."""

RECEIPT = "irbot:deleted-key"
"""Tag left on a user before irbot deletes one of its keys: ``<key id> <client token>``."""

DENY_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "IrbotQuarantine", "Effect": "Deny", "Action": "*", "Resource": "*"}],
}

# STS rejects a brand-new key for a few seconds while IAM propagates it.
_REJECTED = frozenset({"InvalidClientTokenId", "SignatureDoesNotMatch"})


# --------------------------------------------------------------------------- helpers


def _iam_call(doing: str, missing: str, fn: Any, /, **kwargs: Any) -> Any:
    """Like :func:`aws_call`, but a not-found error says ``missing`` (what and what to do)."""
    try:
        return fn(**kwargs)
    except AWS_ERRORS as exc:
        error = action_error(exc, doing)
        if error.code == "not_found":
            error = ActionError(missing, code="not_found")
        raise error from exc


def _user_missing(user: str) -> str:
    return f"IAM user {user} not found in this AWS account: check user_name (names are exact)"


def _keys(iam: IAMClient, user: str) -> list[AccessKeyMetadataTypeDef]:
    response = _iam_call(
        f"listing the access keys of IAM user {user}",
        _user_missing(user),
        iam.list_access_keys,
        UserName=user,
    )
    keys: list[AccessKeyMetadataTypeDef] = response.get("AccessKeyMetadata", [])
    return keys


def _user_tags(iam: IAMClient, user: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    marker: dict[str, str] = {}
    while True:
        page = _iam_call(
            f"reading the tags of IAM user {user}",
            _user_missing(user),
            iam.list_user_tags,
            UserName=user,
            **marker,
        )
        tags.update({tag["Key"]: tag["Value"] for tag in page.get("Tags", [])})
        if not page.get("IsTruncated"):
            return tags
        marker = {"Marker": page["Marker"]}


def _tag(iam: IAMClient, user: str, tags: Mapping[str, str]) -> None:
    _iam_call(
        f"tagging IAM user {user}",
        _user_missing(user),
        iam.tag_user,
        UserName=user,
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )


def _owner(iam: IAMClient, key_id: str) -> Any:
    return _iam_call(
        f"looking up the owner of access key {key_id}",
        f"access key {key_id} not found in this AWS account: check the key id "
        "(a deleted key has no owner any more; give user_name to act on it)",
        iam.get_access_key_last_used,
        AccessKeyId=key_id,
    )


def _owner_name(key_id: str, response: Any) -> str:
    user = response.get("UserName")
    if not user:
        raise ActionError(
            f"access key {key_id} belongs to the account's root user, not an IAM user: "
            "irbot does not manage root keys; act in the AWS console",
            code="input",
        )
    return str(user)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _known(value: str | None) -> str | None:
    """IAM says ``N/A`` for a key never used; None reads better downstream."""
    return None if value in (None, "", "N/A") else value


def _key_list(keys: list[AccessKeyMetadataTypeDef]) -> str:
    return ", ".join(f"{k['AccessKeyId']} ({k['Status']})" for k in keys) or "none"


# --------------------------------------------------------------------------- find owner


def _find_key_owner(inputs: IamFindKeyOwner, ctx: ActionContext) -> dict[str, Any]:
    iam: IAMClient = client("iam")
    response = _owner(iam, inputs.access_key_id)
    user = _owner_name(inputs.access_key_id, response)
    used = response.get("AccessKeyLastUsed") or {}
    return {
        "user_name": user,
        "last_used_at": _iso(used.get("LastUsedDate")),
        "last_used_service": _known(used.get("ServiceName")),
        "last_used_region": _known(used.get("Region")),
    }


# --------------------------------------------------------------------------- create


@dataclass(frozen=True)
class _Plan:
    """What one create_access_key call does, kept on the user while it runs."""

    token: str
    since: datetime
    keys_before: tuple[str, ...]
    previous: str | None
    deleted: str | None

    def tags(self) -> dict[str, str]:
        return {
            MARK: self.token,
            MARK_SINCE: self.since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            MARK_KEYS: " ".join(self.keys_before),
            MARK_PREVIOUS: self.previous or "",
            MARK_DELETED: self.deleted or "",
        }

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> _Plan | None:
        if not tags.get(MARK):
            return None
        try:
            since = datetime.fromisoformat(tags.get(MARK_SINCE, ""))
        except ValueError:
            since = datetime.min.replace(tzinfo=UTC)  # unreadable: treat the mark as stale
        return cls(
            token=tags[MARK],
            since=since if since.tzinfo else since.replace(tzinfo=UTC),
            keys_before=tuple(tags.get(MARK_KEYS, "").split()),
            previous=tags.get(MARK_PREVIOUS) or None,
            deleted=tags.get(MARK_DELETED) or None,
        )


def _plan(
    user: str, keys: list[AccessKeyMetadataTypeDef], delete_inactive: bool, token: str
) -> _Plan:
    """Decide before touching anything; refuse if the 2-key quota leaves no room."""
    active = [k for k in keys if k["Status"] == "Active"]
    inactive = sorted((k for k in keys if k["Status"] != "Active"), key=lambda k: k["CreateDate"])
    deleted = None
    if len(keys) >= 2:
        if len(active) >= 2:
            raise ActionError(
                f"IAM user {user} already has two active access keys ({_key_list(active)}): "
                "deactivate and delete the one no longer in use, then run this step again",
                code="limit",
            )
        if not delete_inactive:
            raise ActionError(
                f"IAM user {user} already has two access keys ({_key_list(keys)}): delete the "
                f"inactive key {inactive[0]['AccessKeyId']} or set delete_inactive: true",
                code="limit",
            )
        deleted = inactive[0]["AccessKeyId"]
    return _Plan(
        token=token,
        since=datetime.now(UTC),
        keys_before=tuple(k["AccessKeyId"] for k in keys),
        previous=active[0]["AccessKeyId"] if active else None,
        deleted=deleted,
    )


def _delete_key(iam: IAMClient, user: str, key_id: str) -> bool:
    """Delete a key; False if it was gone already."""
    try:
        iam.delete_access_key(UserName=user, AccessKeyId=key_id)
    except ClientError as exc:
        if error_code(exc) in ("NoSuchEntity", "NoSuchEntityException"):
            return False
        raise action_error(exc, f"deleting access key {key_id} of IAM user {user}") from exc
    except AWS_ERRORS as exc:
        raise action_error(exc, f"deleting access key {key_id} of IAM user {user}") from exc
    return True


def _unmark(iam: IAMClient, user: str, token: str) -> None:
    """Drop this call's mark (never another run's)."""
    if _user_tags(iam, user).get(MARK) == token:
        _iam_call(
            f"untagging IAM user {user}",
            _user_missing(user),
            iam.untag_user,
            UserName=user,
            TagKeys=list(MARK_TAGS),
        )


def _outputs(user: str, key_id: str, ref: SecretRef, plan: _Plan) -> dict[str, Any]:
    return {
        "user_name": user,
        "access_key_id": key_id,
        "key_ref": str(ref),
        "previous_access_key_id": plan.previous,
        "deleted_access_key_id": plan.deleted,
    }


def _handed_over(
    sm: SecretsManagerClient, ref: SecretRef, user: str, ctx: ActionContext
) -> dict[str, Any]:
    """The outputs of a finished call, from the description stored with the secret."""
    described = aws_call(
        f"reading the handover secret {ref.secret_id}", sm.describe_secret, SecretId=ref.secret_id
    )
    try:
        meta = json.loads(described.get("Description", ""))
        return _outputs(
            user,
            str(meta["access_key_id"]),
            ref,
            _Plan(ctx.client_token, datetime.now(UTC), (), meta["previous"], meta["deleted"]),
        )
    except (ValueError, KeyError, TypeError):
        # Someone edited the description: the key id is in the value; the plan is lost.
        key_id, _ = _pair(handover.resolve(sm, str(ref), ctx), str(ref), ctx)
        return _outputs(
            user, key_id, ref, _Plan(ctx.client_token, datetime.now(UTC), (), None, None)
        )


def _create_access_key(inputs: IamCreateAccessKey, ctx: ActionContext) -> dict[str, Any]:
    iam: IAMClient = client("iam")
    sm: SecretsManagerClient = client("secretsmanager")
    user, token = inputs.user_name, ctx.client_token
    log = ctx.logger()
    name = handover_name(handover_prefix(), ctx.run_id, ctx.step_id, ctx.item_index)
    done = aws_call(f"looking for the handover secret {name}", handover.existing, sm, name, token)
    if done is not None:
        outputs = _handed_over(sm, done, user, ctx)
        _unmark(iam, user, token)  # a crash may have come between the stash and the untag
        return outputs

    keys = _keys(iam, user)
    mark = _Plan.from_tags(_user_tags(iam, user))
    if mark is not None and mark.token == token:
        plan = mark
        for key in keys:
            if key["AccessKeyId"] not in plan.keys_before:
                log.warning(
                    "iam.create_access_key.orphan_deleted",
                    user=user,
                    access_key_id=key["AccessKeyId"],
                    why="created by an earlier try of this step whose secret half was lost",
                )
                _delete_key(iam, user, key["AccessKeyId"])
    else:
        if mark is not None and datetime.now(UTC) - mark.since < MARK_TTL:
            raise ActionError(
                f"another irbot run is creating an access key for IAM user {user} (since "
                f"{_iso(mark.since)}): retry later, or remove the user's {MARK} tag if that "
                "run is dead",
                retryable=True,
                code="busy",
            )
        plan = _plan(user, keys, inputs.delete_inactive, token)
        _tag(iam, user, plan.tags())

    if plan.deleted is not None:
        _delete_key(iam, user, plan.deleted)
    try:
        created = iam.create_access_key(UserName=user)["AccessKey"]
    except ClientError as exc:
        if error_code(exc) != "LimitExceeded":
            raise _create_error(exc, user) from exc
        keys = _keys(iam, user)
        _unmark(iam, user, token)
        raise ActionError(
            f"IAM user {user} already has two access keys ({_key_list(keys)}): delete one "
            "that is no longer used, then run this step again",
            code="limit",
        ) from exc
    except AWS_ERRORS as exc:
        raise _create_error(exc, user) from exc
    secret = ctx.mark_secret(created["SecretAccessKey"])
    key_id = created["AccessKeyId"]
    value = json.dumps({"aws_access_key_id": key_id, "aws_secret_access_key": secret})
    description = json.dumps(
        {
            "irbot": f"new access key of IAM user {user}",
            "access_key_id": key_id,
            "previous": plan.previous,
            "deleted": plan.deleted,
        }
    )
    try:
        ref = handover.stash(sm, name, value, ctx, description)
    except ActionError:
        # Nobody can ever use a key whose secret half was not stored: take it back now
        # rather than leave it to a repeat that may never come. The mark stays, so a
        # retry keeps the plan (and its outputs).
        try:
            _delete_key(iam, user, key_id)
        except ActionError as cleanup:
            log.warning("iam.create_access_key.cleanup_failed", error=cleanup.message)
        raise
    _unmark(iam, user, token)
    log.info(
        "iam.access_key.created",
        user=user,
        access_key_id=key_id,
        previous=plan.previous,
        deleted=plan.deleted,
    )
    return _outputs(user, key_id, ref, plan)


def _create_error(exc: BaseException, user: str) -> ActionError:
    error = action_error(exc, f"creating an access key for IAM user {user}")
    if error.code == "not_found":
        return ActionError(_user_missing(user), code="not_found")
    return error


# --------------------------------------------------------------------------- deactivate / delete


def _key_missing(key_id: str, user: str) -> ActionError:
    return ActionError(
        f"access key {key_id} is not a key of IAM user {user}: check access_key_id and "
        "user_name (if it was deleted outside irbot, nothing is left to do)",
        code="not_found",
    )


def _deactivate(inputs: IamAccessKey, ctx: ActionContext) -> dict[str, Any]:
    iam: IAMClient = client("iam")
    key_id = inputs.access_key_id
    user = inputs.user_name or _owner_name(key_id, _owner(iam, key_id))
    key = next((k for k in _keys(iam, user) if k["AccessKeyId"] == key_id), None)
    if key is None:
        raise _key_missing(key_id, user)
    previous = key["Status"]
    if previous == "Active":
        _iam_call(
            f"deactivating access key {key_id} of IAM user {user}",
            str(_key_missing(key_id, user)),
            iam.update_access_key,
            UserName=user,
            AccessKeyId=key_id,
            Status="Inactive",
        )
        ctx.logger().info("iam.access_key.deactivated", user=user, access_key_id=key_id)
    return {"user_name": user, "access_key_id": key_id, "previous_status": previous}


def _delete(inputs: IamAccessKey, ctx: ActionContext) -> dict[str, Any]:
    """A key missing from the user is fine only if irbot's receipt on the user names it:
    then an earlier try (or another step) deleted it. Otherwise it never was the user's
    key, as far as anyone can tell, and that is reported."""
    iam: IAMClient = client("iam")
    key_id = inputs.access_key_id
    user = inputs.user_name or _owner_name(key_id, _owner(iam, key_id))
    outputs = {"user_name": user, "access_key_id": key_id, "deleted": False}
    if not any(k["AccessKeyId"] == key_id for k in _keys(iam, user)):
        receipt = _user_tags(iam, user).get(RECEIPT, "").split()
        if receipt[:1] == [key_id]:
            return outputs
        raise _key_missing(key_id, user)
    _tag(iam, user, {RECEIPT: f"{key_id} {ctx.client_token}"})
    outputs["deleted"] = _delete_key(iam, user, key_id)
    ctx.logger().info("iam.access_key.deleted", user=user, access_key_id=key_id)
    return outputs


# --------------------------------------------------------------------------- quarantine


def _quarantine(inputs: IamQuarantineUser, ctx: ActionContext) -> dict[str, Any]:
    iam: IAMClient = client("iam")
    user = inputs.user_name
    # PutUserPolicy replaces a policy of the same name: a repeat changes nothing.
    _iam_call(
        f"attaching the deny-all policy {inputs.policy_name} to IAM user {user}",
        _user_missing(user),
        iam.put_user_policy,
        UserName=user,
        PolicyName=inputs.policy_name,
        PolicyDocument=json.dumps(DENY_ALL),
    )
    ctx.logger().info("iam.user.quarantined", user=user, policy=inputs.policy_name)
    return {"user_name": user, "policy_name": inputs.policy_name}


# --------------------------------------------------------------------------- STS


def _pair(value: str, ref: str, ctx: ActionContext) -> tuple[str, str]:
    """(key id, secret key) from the handover JSON. The error says nothing of the value
    and is raised outside the ``except``, so no chained parser error carries the text."""
    try:
        data = json.loads(value)
    except ValueError:
        data = None
    fields = data if isinstance(data, dict) else {}
    key_id, secret = fields.get("aws_access_key_id"), fields.get("aws_secret_access_key")
    if not isinstance(key_id, str) or not isinstance(secret, str):
        raise ActionError(
            f"the secret reference {ref} does not hold an AWS access key pair (JSON with "
            "aws_access_key_id and aws_secret_access_key, as create_access_key stores it)",
            code="input",
        )
    ctx.mark_secret(secret)
    return key_id, secret


def _ref_region(ref_text: str) -> str | None:
    """A handover secret given by ARN lives in the ARN's region."""
    try:
        ref = SecretRef.parse(ref_text)
    except UsageError:
        return None  # handover.resolve reports it
    parts = ref.secret_id.split(":")
    return parts[3] if ref.secret_id.startswith("arn:") and len(parts) > 3 else None


def _arn_user(arn: str) -> str | None:
    """The IAM user name of ``arn:aws:iam::<account>:user[/path]/<name>``, else None."""
    resource = arn.split(":", 5)[-1]
    return resource.rsplit("/", 1)[-1] if resource.startswith("user/") else None


def _verify(inputs: StsVerifyCredentials, ctx: ActionContext) -> dict[str, Any]:
    ref = inputs.credentials_ref
    sm: SecretsManagerClient = client("secretsmanager", _ref_region(ref))
    key_id, secret = _pair(handover.resolve(sm, ref, ctx), ref, ctx)
    sts = credentials_client("sts", key_id, secret, inputs.region)
    try:
        identity = sts.get_caller_identity()
    except ClientError as exc:
        code = error_code(exc)
        if code not in _REJECTED:
            raise action_error(exc, f"verifying the credentials in {ref}") from exc
        raise ActionError(
            f"STS rejected access key {key_id} from {ref} ({code}): a new key takes a few "
            "seconds to work everywhere; if this persists, the key is deleted or wrong",
            retryable=True,
            code="rejected",
        ) from exc
    except AWS_ERRORS as exc:
        raise action_error(exc, f"verifying the credentials in {ref}") from exc
    arn = str(identity["Arn"])
    if inputs.expect_user is not None and _arn_user(arn) != inputs.expect_user:
        raise ActionError(
            f"access key {key_id} from {ref} works but belongs to {arn}, not IAM user "
            f"{inputs.expect_user}: check which key the reference holds",
            code="mismatch",
        )
    return {"account": identity["Account"], "arn": arn, "user_id": identity["UserId"]}


# --------------------------------------------------------------------------- registration


async def find_key_owner(inputs: IamFindKeyOwner, ctx: ActionContext) -> Mapping[str, Any]:
    """The IAM user owning an access key, and when and where it was last used."""
    return await asyncio.to_thread(_find_key_owner, inputs, ctx)


async def create_access_key(inputs: IamCreateAccessKey, ctx: ActionContext) -> Mapping[str, Any]:
    """A new access key for a user; the pair goes to Secrets Manager, the output is its ref."""
    return await asyncio.to_thread(_create_access_key, inputs, ctx)


async def deactivate_access_key(inputs: IamAccessKey, ctx: ActionContext) -> Mapping[str, Any]:
    """Set a key Inactive; an Inactive key stays so (``previous_status`` says which)."""
    return await asyncio.to_thread(_deactivate, inputs, ctx)


async def delete_access_key(inputs: IamAccessKey, ctx: ActionContext) -> Mapping[str, Any]:
    """Delete a key; ``deleted`` is False when irbot had deleted it already."""
    return await asyncio.to_thread(_delete, inputs, ctx)


async def quarantine_user(inputs: IamQuarantineUser, ctx: ActionContext) -> Mapping[str, Any]:
    """Attach an inline deny-all policy to a user."""
    return await asyncio.to_thread(_quarantine, inputs, ctx)


async def verify_credentials(inputs: StsVerifyCredentials, ctx: ActionContext) -> Mapping[str, Any]:
    """GetCallerIdentity with credentials given by reference; optionally check the user."""
    return await asyncio.to_thread(_verify, inputs, ctx)


def register(registry: Registry) -> None:
    """Register the IAM and STS actions."""
    for name, fn in (
        ("aws.iam.find_key_owner", find_key_owner),
        ("aws.iam.create_access_key", create_access_key),
        ("aws.iam.deactivate_access_key", deactivate_access_key),
        ("aws.iam.delete_access_key", delete_access_key),
        ("aws.iam.quarantine_user", quarantine_user),
        ("aws.sts.verify_credentials", verify_credentials),
    ):
        registry.function(name, check=not_configured)(fn)
