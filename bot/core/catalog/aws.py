"""AWS actions: Secrets Manager, IAM, STS, CloudTrail."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, model_validator

from bot.core.catalog import ActionInput, ActionSpec
from bot.core.playbook import Duration

SECRET_ID = r"^[A-Za-z0-9/_+=.@:-]{1,2048}$"  # noqa: S105 - a name pattern, not a secret
ACCESS_KEY_ID = r"^(AKIA|ASIA)[A-Z0-9]{12,124}$"
IAM_USER = r"^[\w+=,.@-]{1,64}$"


class _Regional(ActionInput):
    region: str | None = None
    """Default: the region boto3 finds (AWS_REGION, profile)."""


class SecretsManagerRotate(_Regional):
    secret_id: str = Field(pattern=SECRET_ID)
    wait_timeout: Duration = timedelta(minutes=5)
    """How long to wait for AWSCURRENT to move when the secret's own Lambda rotates it."""


class SecretsManagerPutValue(_Regional):
    secret_id: str = Field(pattern=SECRET_ID)
    value_ref: str = Field(min_length=1)
    """A reference to the new value (for example ``steps.new_key.outputs.key_ref``)."""


class IamUser(ActionInput):
    user_name: str = Field(pattern=IAM_USER)


class IamCreateAccessKey(IamUser):
    delete_inactive: bool = True
    """If the user already has two keys and one is inactive, delete that one first."""


class IamAccessKey(ActionInput):
    access_key_id: str = Field(pattern=ACCESS_KEY_ID)
    user_name: str | None = Field(default=None, pattern=IAM_USER)
    """Default: the key's owner, looked up."""


class IamQuarantineUser(IamUser):
    policy_name: str = Field(default="irbot-quarantine", pattern=r"^[\w+=,.@-]{1,128}$")


class IamFindKeyOwner(ActionInput):
    access_key_id: str = Field(pattern=ACCESS_KEY_ID)


class StsVerifyCredentials(_Regional):
    credentials_ref: str = Field(min_length=1)
    expect_user: str | None = None
    """If set, the caller identity must be this IAM user."""


class CloudTrailLookup(_Regional):
    access_key_id: str | None = Field(default=None, pattern=ACCESS_KEY_ID)
    user_name: str | None = Field(default=None, pattern=IAM_USER)
    window: Duration = timedelta(hours=24)
    max_events: int = Field(5000, ge=1, le=50_000)
    business_hours: str = Field("08:00-19:00", pattern=r"^\d\d:\d\d-\d\d:\d\d$")
    """Use outside these hours (UTC, Monday to Friday) counts as off-hours."""

    @model_validator(mode="after")
    def _one_subject(self) -> CloudTrailLookup:
        if (self.access_key_id is None) == (self.user_name is None):
            raise ValueError("give exactly one of access_key_id or user_name")
        return self


SPECS = (
    ActionSpec(
        "aws.secretsmanager.rotate",
        "Rotate a Secrets Manager secret (and the PostgreSQL/Redis password behind it).",
        SecretsManagerRotate,
        ("arn", "name", "version_id", "previous_version_id", "method"),
        destructive=True,
        integration="aws",
    ),
    ActionSpec(
        "aws.secretsmanager.put_value",
        "Store a value handed over by reference as the new AWSCURRENT version.",
        SecretsManagerPutValue,
        ("arn", "name", "version_id", "previous_version_id"),
        destructive=True,
        integration="aws",
    ),
    ActionSpec(
        "aws.iam.create_access_key",
        "Create an IAM access key; the secret part is kept as a reference.",
        IamCreateAccessKey,
        (
            "user_name",
            "access_key_id",
            "key_ref",
            "previous_access_key_id",
            "deleted_access_key_id",
        ),
        destructive=True,
        integration="aws",
    ),
    ActionSpec(
        "aws.iam.deactivate_access_key",
        "Set an IAM access key to Inactive.",
        IamAccessKey,
        ("user_name", "access_key_id", "previous_status"),
        destructive=True,
        integration="aws",
    ),
    ActionSpec(
        "aws.iam.delete_access_key",
        "Delete an IAM access key.",
        IamAccessKey,
        ("user_name", "access_key_id", "deleted"),
        destructive=True,
        integration="aws",
    ),
    ActionSpec(
        "aws.iam.quarantine_user",
        "Attach an inline deny-all policy to an IAM user.",
        IamQuarantineUser,
        ("user_name", "policy_name"),
        destructive=True,
        integration="aws",
    ),
    ActionSpec(
        "aws.iam.find_key_owner",
        "Find the IAM user that owns an access key (GetAccessKeyLastUsed).",
        IamFindKeyOwner,
        ("user_name", "last_used_at", "last_used_service", "last_used_region"),
        integration="aws",
    ),
    ActionSpec(
        "aws.sts.verify_credentials",
        "Prove credentials work (GetCallerIdentity) without revealing them.",
        StsVerifyCredentials,
        ("account", "arn", "user_id"),
        integration="aws",
    ),
    ActionSpec(
        "aws.cloudtrail.lookup",
        "Summarise CloudTrail events for an access key or user over a window.",
        CloudTrailLookup,
        (
            "event_count",
            "by_event_name",
            "by_source_ip",
            "by_region",
            "off_hours_count",
            "first_seen",
            "last_seen",
            "summary",
        ),
        integration="aws",
    ),
)
