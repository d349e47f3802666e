"""The IAM and STS actions against moto in server mode (the ``aws`` fixture).

A crash is simulated with a botocore ``before-call`` hook on irbot's boto3 session that
raises at a chosen API call: everything before it really happened in moto, nothing after.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
import structlog
from botocore.awsrequest import AWSResponse

from bot.actions.aws import client, iam
from bot.core.catalog import default_catalog
from bot.core.redaction import Redactor
from bot.core.refs import SecretRef
from bot.engine.actions import ActionContext, ActionError, Registry

USER = "app"


class SimulatedCrash(Exception):
    """Stands for the process dying at a given API call."""


def make_ctx(run: str = "run-1", step: str = "new_key", item: int | None = None) -> ActionContext:
    return ActionContext(
        run_id=run,
        step_id=step,
        item_index=item,
        attempt=1,
        incident_id="inc-1",
        redactor=Redactor(),
    )


def call(name: str, ctx: ActionContext | None = None, **args: Any) -> Mapping[str, Any]:
    """Run a registered action with validated inputs, as the engine does."""
    registry = Registry()
    iam.register(registry)
    spec = default_catalog()[name]
    assert spec.inputs is not None
    inputs = spec.inputs.model_validate(args)
    result = asyncio.run(registry.get(name).run(inputs, ctx or make_ctx(step=name)))
    assert set(result) == set(spec.outputs or ())
    return result


def failure(name: str, ctx: ActionContext | None = None, **args: Any) -> ActionError:
    with pytest.raises(ActionError) as info:
        call(name, ctx, **args)
    return info.value


@contextmanager
def crash_at(event: str) -> Iterator[None]:
    """Raise SimulatedCrash when irbot's clients reach ``event`` (before-call.<svc>.<Op>)."""

    def boom(**_: Any) -> None:
        raise SimulatedCrash(event)

    events = client._session().events
    events.register(event, boom)
    client.forget_clients()
    try:
        yield
    finally:
        events.unregister(event, boom)
        client.forget_clients()


@contextmanager
def answer_with(event: str, body: bytes, content_type: str) -> Iterator[None]:
    """Make irbot's clients get an HTTP 400 with ``body`` at ``event`` (before-send.*)."""

    class Raw:
        def stream(self, **_: Any) -> Iterator[bytes]:
            yield body

    def reply(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, 400, {"Content-Type": content_type}, Raw())

    events = client._session().events
    events.register(event, reply)
    client.forget_clients()
    try:
        yield
    finally:
        events.unregister(event, reply)
        client.forget_clients()


@pytest.fixture
def aws_iam(aws: str) -> Any:
    """A plain boto3 IAM client on moto, to arrange and inspect state."""
    return boto3.client("iam")


@pytest.fixture
def sm(aws: str) -> Any:
    return boto3.client("secretsmanager")


def key_ids(aws_iam: Any, user: str = USER) -> dict[str, str]:
    keys = aws_iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    return {k["AccessKeyId"]: k["Status"] for k in keys}


def user_with_keys(aws_iam: Any, *statuses: str, user: str = USER) -> list[str]:
    aws_iam.create_user(UserName=user)
    ids = []
    for status in statuses:
        key = aws_iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
        if status != "Active":
            aws_iam.update_access_key(UserName=user, AccessKeyId=key, Status=status)
        ids.append(key)
    return ids


def stashed(sm: Any, key_ref: str) -> dict[str, str]:
    ref = SecretRef.parse(key_ref)
    value = sm.get_secret_value(SecretId=ref.secret_id, VersionId=ref.version_id)
    return json.loads(value["SecretString"])  # type: ignore[no-any-return]


def user_tags(aws_iam: Any, user: str = USER) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in aws_iam.list_user_tags(UserName=user)["Tags"]}


# --------------------------------------------------------------------------- lost access


def test_lost_access_shape(aws_iam: Any, sm: Any) -> None:
    """New key -> the stash holds a working pair for the user -> verify proves it ->
    deactivate the old key -> delete the old key; only the new key is left."""
    (old,) = user_with_keys(aws_iam, "Active")
    ctx = make_ctx(step="new_key")
    new = call("aws.iam.create_access_key", ctx, user_name=USER)
    assert new["user_name"] == USER
    assert new["previous_access_key_id"] == old
    assert new["deleted_access_key_id"] is None
    assert new["access_key_id"] != old
    assert set(key_ids(aws_iam)) == {old, new["access_key_id"]}

    pair = stashed(sm, new["key_ref"])
    assert set(pair) == {"aws_access_key_id", "aws_secret_access_key"}
    assert pair["aws_access_key_id"] == new["access_key_id"]
    assert SecretRef.parse(new["key_ref"]).version_id == ctx.client_token
    assert user_tags(aws_iam) == {}, "the in-progress mark is removed"

    proof = call(
        "aws.sts.verify_credentials",
        make_ctx(step="verify"),
        credentials_ref=new["key_ref"],
        expect_user=USER,
    )
    assert proof["arn"] == f"arn:aws:iam::{proof['account']}:user/{USER}"

    off = call("aws.iam.deactivate_access_key", access_key_id=old, user_name=USER)
    assert off == {"user_name": USER, "access_key_id": old, "previous_status": "Active"}
    assert key_ids(aws_iam)[old] == "Inactive"

    gone = call("aws.iam.delete_access_key", access_key_id=old, user_name=USER)
    assert gone == {"user_name": USER, "access_key_id": old, "deleted": True}
    assert key_ids(aws_iam) == {new["access_key_id"]: "Active"}


def test_create_repeat_returns_same_outputs_and_creates_nothing(aws_iam: Any, sm: Any) -> None:
    """The same context twice (a retry or a resumed run): identical outputs, one new key,
    one secret version."""
    (old,) = user_with_keys(aws_iam, "Active")
    ctx = make_ctx()
    first = call("aws.iam.create_access_key", ctx, user_name=USER)
    again = call("aws.iam.create_access_key", ctx, user_name=USER)
    assert again == first
    assert set(key_ids(aws_iam)) == {old, first["access_key_id"]}
    ref = SecretRef.parse(first["key_ref"])
    versions = sm.list_secret_version_ids(SecretId=ref.secret_id)["Versions"]
    assert [v["VersionId"] for v in versions] == [ref.version_id]


def test_create_for_each_item_has_its_own_handover(aws_iam: Any, sm: Any) -> None:
    """Two items of one step get two secrets (the name carries the item index)."""
    aws_iam.create_user(UserName="a")
    aws_iam.create_user(UserName="b")
    one = call("aws.iam.create_access_key", make_ctx(item=0), user_name="a")
    two = call("aws.iam.create_access_key", make_ctx(item=1), user_name="b")
    assert SecretRef.parse(one["key_ref"]).secret_id != SecretRef.parse(two["key_ref"]).secret_id
    assert stashed(sm, two["key_ref"])["aws_access_key_id"] == two["access_key_id"]


# --------------------------------------------------------------------------- the 2-key quota


def test_two_active_keys_refused(aws_iam: Any, sm: Any) -> None:
    """Two active keys: a clear refusal naming both, nothing created, no mark left."""
    a, b = user_with_keys(aws_iam, "Active", "Active")
    error = failure("aws.iam.create_access_key", user_name=USER)
    assert error.code == "limit"
    assert not error.retryable
    assert a in error.message
    assert b in error.message
    assert set(key_ids(aws_iam)) == {a, b}
    assert user_tags(aws_iam) == {}
    assert sm.list_secrets()["SecretList"] == []


def test_inactive_key_is_deleted_to_make_room(aws_iam: Any) -> None:
    """One active and one inactive key, delete_inactive (default): the inactive key is
    deleted and reported, the active one is the previous key."""
    active, inactive = user_with_keys(aws_iam, "Active", "Inactive")
    out = call("aws.iam.create_access_key", user_name=USER)
    assert out["deleted_access_key_id"] == inactive
    assert out["previous_access_key_id"] == active
    assert key_ids(aws_iam) == {active: "Active", out["access_key_id"]: "Active"}


def test_inactive_key_kept_without_delete_inactive(aws_iam: Any) -> None:
    """delete_inactive: false with a full user: refused, naming the inactive key."""
    active, inactive = user_with_keys(aws_iam, "Active", "Inactive")
    error = failure("aws.iam.create_access_key", user_name=USER, delete_inactive=False)
    assert error.code == "limit"
    assert inactive in error.message
    assert set(key_ids(aws_iam)) == {active, inactive}


def test_lone_inactive_key_is_not_previous(aws_iam: Any) -> None:
    """An inactive key is not 'the previous key' and is left alone when there is room."""
    (inactive,) = user_with_keys(aws_iam, "Inactive")
    out = call("aws.iam.create_access_key", user_name=USER)
    assert out["previous_access_key_id"] is None
    assert out["deleted_access_key_id"] is None
    assert inactive in key_ids(aws_iam)


# --------------------------------------------------------------------------- crash windows


def test_crash_between_create_and_stash_is_reconciled(aws_iam: Any, sm: Any) -> None:
    """A crash after CreateAccessKey, before the secret is stored, loses the secret half:
    the repeat deletes that orphan key, creates a fresh one and stashes it, with the
    outputs of the original plan (previous key, deleted inactive key)."""
    active, inactive = user_with_keys(aws_iam, "Active", "Inactive")
    ctx = make_ctx()
    with crash_at("before-call.secrets-manager.CreateSecret"), pytest.raises(SimulatedCrash):
        call("aws.iam.create_access_key", ctx, user_name=USER)
    keys = key_ids(aws_iam)
    (orphan,) = set(keys) - {active, inactive}
    assert inactive not in keys, "the first try had made room already"

    out = call("aws.iam.create_access_key", ctx, user_name=USER)
    assert out["access_key_id"] not in (orphan, active)
    assert key_ids(aws_iam) == {active: "Active", out["access_key_id"]: "Active"}
    assert out["previous_access_key_id"] == active
    assert out["deleted_access_key_id"] == inactive
    assert stashed(sm, out["key_ref"])["aws_access_key_id"] == out["access_key_id"]
    assert user_tags(aws_iam) == {}


def test_crash_after_stash_returns_the_stashed_key(aws_iam: Any, sm: Any) -> None:
    """A crash after the stash (before the mark is removed): the repeat answers from the
    stored secret, creates nothing and cleans the mark."""
    (old,) = user_with_keys(aws_iam, "Active")
    ctx = make_ctx()
    with crash_at("before-call.iam.UntagUser"), pytest.raises(SimulatedCrash):
        call("aws.iam.create_access_key", ctx, user_name=USER)
    keys = key_ids(aws_iam)
    assert len(keys) == 2
    assert user_tags(aws_iam), "the mark is still there after the crash"

    out = call("aws.iam.create_access_key", ctx, user_name=USER)
    assert set(key_ids(aws_iam)) == set(keys)
    assert out["previous_access_key_id"] == old
    assert out["access_key_id"] in keys
    assert stashed(sm, out["key_ref"])["aws_access_key_id"] == out["access_key_id"]
    assert user_tags(aws_iam) == {}


def test_failed_stash_takes_the_key_back(aws_iam: Any, sm: Any) -> None:
    """Secrets Manager refusing the stash: the new key is deleted at once (its secret
    half is gone) and the error is reported; a retry with the same context keeps the
    original plan, so it still reports the inactive key it deleted."""
    active, inactive = user_with_keys(aws_iam, "Active", "Inactive")
    ctx = make_ctx()
    body = b'{"__type": "AccessDeniedException", "message": "not allowed"}'
    with answer_with(
        "before-send.secrets-manager.CreateSecret", body, "application/x-amz-json-1.1"
    ):
        error = failure("aws.iam.create_access_key", ctx, user_name=USER)
    assert error.code == "denied"
    assert key_ids(aws_iam) == {active: "Active"}

    out = call("aws.iam.create_access_key", ctx, user_name=USER)
    assert out["deleted_access_key_id"] == inactive
    assert out["previous_access_key_id"] == active
    assert key_ids(aws_iam) == {active: "Active", out["access_key_id"]: "Active"}


def test_another_runs_fresh_mark_means_busy(aws_iam: Any) -> None:
    """While one run is mid-creation (its mark is fresh), another run's create is refused
    as retryable and does not touch that run's new key."""
    user_with_keys(aws_iam, "Active")
    with crash_at("before-call.secrets-manager.CreateSecret"), pytest.raises(SimulatedCrash):
        call("aws.iam.create_access_key", make_ctx(run="run-a"), user_name=USER)
    before = key_ids(aws_iam)
    error = failure("aws.iam.create_access_key", make_ctx(run="run-b"), user_name=USER)
    assert error.code == "busy"
    assert error.retryable
    assert key_ids(aws_iam) == before


# --------------------------------------------------------------------------- deactivate / delete


def test_deactivate_twice(aws_iam: Any) -> None:
    """Deactivating again succeeds and says the key was already Inactive."""
    (key,) = user_with_keys(aws_iam, "Active")
    first = call("aws.iam.deactivate_access_key", access_key_id=key, user_name=USER)
    again = call("aws.iam.deactivate_access_key", access_key_id=key, user_name=USER)
    assert first["previous_status"] == "Active"
    assert again["previous_status"] == "Inactive"
    assert key_ids(aws_iam) == {key: "Inactive"}


def test_owner_looked_up_when_user_name_omitted(aws_iam: Any) -> None:
    """No user_name: the owner comes from GetAccessKeyLastUsed."""
    (key,) = user_with_keys(aws_iam, "Active", user="owner-x")
    out = call("aws.iam.deactivate_access_key", access_key_id=key)
    assert out["user_name"] == "owner-x"
    assert key_ids(aws_iam, "owner-x") == {key: "Inactive"}


def test_delete_repeat_and_never_existed(aws_iam: Any) -> None:
    """A second delete of the same key succeeds with deleted=false (irbot's receipt on the
    user names it); a well-formed key that was never the user's is a clear not-found."""
    (key,) = user_with_keys(aws_iam, "Inactive")
    ctx = make_ctx(step="delete_old")
    assert call("aws.iam.delete_access_key", ctx, access_key_id=key, user_name=USER)["deleted"]
    again = call("aws.iam.delete_access_key", ctx, access_key_id=key, user_name=USER)
    assert again == {"user_name": USER, "access_key_id": key, "deleted": False}

    never = "AKIAQQQQQQQQQQQQQQQQ"
    error = failure("aws.iam.delete_access_key", access_key_id=never, user_name=USER)
    assert error.code == "not_found"
    assert never in error.message
    assert USER in error.message


def test_missing_user_and_key_errors(aws_iam: Any) -> None:
    """Nonexistent users and keys: not-found errors that name them and are not retried."""
    cases = [
        ("aws.iam.create_access_key", {"user_name": "ghost"}, "ghost"),
        ("aws.iam.quarantine_user", {"user_name": "ghost"}, "ghost"),
        (
            "aws.iam.deactivate_access_key",
            {"access_key_id": "AKIAQQQQQQQQQQQQQQQQ", "user_name": "ghost"},
            "ghost",
        ),
        ("aws.iam.delete_access_key", {"access_key_id": "AKIAQQQQQQQQQQQQQQQQ"}, "AKIAQQQQ"),
        ("aws.iam.find_key_owner", {"access_key_id": "AKIAQQQQQQQQQQQQQQQQ"}, "AKIAQQQQ"),
    ]
    for name, args, named in cases:
        error = failure(name, **args)
        assert error.code == "not_found", name
        assert not error.retryable
        assert named in error.message
        assert "check" in error.message


def test_throttling_is_retryable(aws_iam: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """IAM answering Throttling: a retryable ActionError (the engine backs off)."""
    (key,) = user_with_keys(aws_iam, "Active")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    client.reset()
    body = (
        b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
        b"<Message>Rate exceeded</Message></Error><RequestId>1</RequestId></ErrorResponse>"
    )

    with answer_with("before-send.iam.ListAccessKeys", body, "text/xml"):
        error = failure("aws.iam.deactivate_access_key", access_key_id=key, user_name=USER)
    assert error.retryable
    assert error.code == "throttled"
    assert key_ids(aws_iam) == {key: "Active"}


# --------------------------------------------------------------------------- quarantine / owner


def test_quarantine_attaches_deny_all(aws_iam: Any) -> None:
    """The inline policy denies every action on every resource; a repeat is harmless."""
    aws_iam.create_user(UserName=USER)
    out = call("aws.iam.quarantine_user", user_name=USER)
    again = call("aws.iam.quarantine_user", user_name=USER)
    assert out == again == {"user_name": USER, "policy_name": "irbot-quarantine"}
    policy = aws_iam.get_user_policy(UserName=USER, PolicyName="irbot-quarantine")
    document = policy["PolicyDocument"]
    if isinstance(document, str):
        document = json.loads(document)
    (statement,) = document["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Action"] == "*"
    assert statement["Resource"] == "*"
    assert aws_iam.list_user_policies(UserName=USER)["PolicyNames"] == ["irbot-quarantine"]


def test_find_key_owner(aws_iam: Any) -> None:
    """GetAccessKeyLastUsed names the user; moto says N/A for service and region and
    gives no date, which the action reports as None."""
    (key,) = user_with_keys(aws_iam, "Active")
    out = call("aws.iam.find_key_owner", access_key_id=key)
    assert out == {
        "user_name": USER,
        "last_used_at": None,
        "last_used_service": None,
        "last_used_region": None,
    }


# --------------------------------------------------------------------------- verify


def test_verify_rejects_wrong_user(aws_iam: Any) -> None:
    """expect_user names someone else: a non-retryable mismatch naming the real ARN."""
    aws_iam.create_user(UserName=USER)
    new = call("aws.iam.create_access_key", user_name=USER)
    error = failure(
        "aws.sts.verify_credentials", credentials_ref=new["key_ref"], expect_user="someone"
    )
    assert error.code == "mismatch"
    assert not error.retryable
    assert f":user/{USER}" in error.message


def test_verify_bad_references(sm: Any) -> None:
    """A malformed reference, and one to a secret that is not a key pair, are input errors
    that do not quote the secret."""
    error = failure("aws.sts.verify_credentials", credentials_ref="not-a-ref")
    assert error.code == "input"
    canary = "canary-value-0123456789"
    made = sm.create_secret(Name="other", SecretString=json.dumps({"password": canary}))
    ref = f"sm:{made['VersionId']}:{made['ARN']}"
    error = failure("aws.sts.verify_credentials", credentials_ref=ref)
    assert error.code == "input"
    assert canary not in error.message
    assert error.__cause__ is None
    assert error.__context__ is None


def test_secret_never_leaks(aws_iam: Any, sm: Any) -> None:
    """The new key's secret half appears in no output, no error message and no log
    line of the whole flow, and every action that saw it marked it for redaction."""
    (old,) = user_with_keys(aws_iam, "Active")
    seen: list[Any] = []
    messages: list[str] = []
    contexts: list[ActionContext] = []

    def ctx(step: str) -> ActionContext:
        contexts.append(make_ctx(step=step))
        return contexts[-1]

    with structlog.testing.capture_logs() as logs:
        new = call("aws.iam.create_access_key", ctx("new_key"), user_name=USER)
        seen.append(new)
        seen.append(call("aws.iam.create_access_key", ctx("new_key"), user_name=USER))
        seen.append(
            call("aws.sts.verify_credentials", ctx("verify"), credentials_ref=new["key_ref"])
        )
        try:
            call(
                "aws.sts.verify_credentials",
                ctx("v2"),
                credentials_ref=new["key_ref"],
                expect_user="x",
            )
        except ActionError as exc:
            messages.append(exc.message)
        seen.append(call("aws.iam.deactivate_access_key", access_key_id=old, user_name=USER))
        seen.append(call("aws.iam.delete_access_key", access_key_id=old, user_name=USER))
        error = failure("aws.iam.create_access_key", ctx("again"), user_name="ghost")
        messages.append(error.message)

    secret = stashed(sm, new["key_ref"])["aws_secret_access_key"]
    assert len(secret) >= 20
    assert messages
    assert logs, "the actions log what they did"
    for sink in (json.dumps(seen), *messages, repr(logs)):
        assert secret not in sink
    assert secret in contexts[0].secrets
    assert secret in contexts[2].secrets
    assert any(entry["event"] == "iam.access_key.created" for entry in logs)


def test_registered_actions_match_catalog() -> None:
    """register() provides exactly the IAM and STS actions of the catalog, each with a
    configuration check."""
    registry = Registry()
    iam.register(registry)
    names = {n for n in default_catalog() if n.startswith(("aws.iam.", "aws.sts."))}
    assert all(name in registry for name in names)
    assert len(names) == 6
