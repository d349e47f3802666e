"""aws.secretsmanager.rotate and .put_value against moto's server and the real local
PostgreSQL and Redis servers (no SDK mocks)."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import string
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql
from redis.backoff import NoBackoff
from redis.retry import Retry
from structlog.testing import capture_logs

from bot.actions.aws import client as aws_client
from bot.actions.aws import handover, secretsmanager
from bot.actions.aws.rotation_values import regenerate, regenerate_string
from bot.core.redaction import Redactor
from bot.engine.actions import ActionContext, ActionError, Registry
from tests.pg_scram import password_matches
from tests.rotation_support import free_port, lambda_without_docker, private_redis

NO_RETRY = Retry(NoBackoff(), 0)
ROTATE = "aws.secretsmanager.rotate"
PUT_VALUE = "aws.secretsmanager.put_value"


def make_ctx(step: str = "rotate") -> ActionContext:
    return ActionContext(
        run_id=f"run-{uuid.uuid4().hex[:12]}",
        step_id=step,
        item_index=None,
        attempt=1,
        incident_id="inc-test",
        redactor=Redactor(),
    )


def run(name: str, args: Mapping[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """Call an action as the engine does: registered, inputs validated by the catalog."""
    registry = Registry()
    secretsmanager.register(registry)
    action = registry.get(name)
    assert action.not_configured() is None
    assert action.spec.inputs is not None
    outputs = dict(asyncio.run(action.run(action.spec.inputs.model_validate(args), ctx)))
    assert tuple(outputs) == action.spec.outputs
    json.dumps(outputs)  # JSON-safe
    return outputs


def fails(name: str, args: Mapping[str, Any], ctx: ActionContext) -> ActionError:
    with pytest.raises(ActionError) as raised:
        run(name, args, ctx)
    return raised.value


@pytest.fixture
def sm(aws: str) -> Any:
    return aws_client.client("secretsmanager")


def value(sm: Any, secret: str, stage: str = "AWSCURRENT") -> str:
    return str(sm.get_secret_value(SecretId=secret, VersionStage=stage)["SecretString"])


def stages(sm: Any, secret: str) -> dict[str, list[str]]:
    return dict(sm.describe_secret(SecretId=secret)["VersionIdsToStages"])


def holder(sm: Any, secret: str, stage: str) -> str | None:
    return next((v for v, labels in stages(sm, secret).items() if stage in labels), None)


def version_count(sm: Any, secret: str) -> int:
    return len(sm.list_secret_version_ids(SecretId=secret, IncludeDeprecated=True)["Versions"])


def create(sm: Any, name: str, secret: str | Mapping[str, Any]) -> str:
    """Create a secret; returns its first version id."""
    text = secret if isinstance(secret, str) else json.dumps(secret)
    return str(sm.create_secret(Name=name, SecretString=text)["VersionId"])


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_role(postgres_admin_url: str) -> Iterator[tuple[str, str]]:
    """A throw-away login role whose name needs quoting; yields (name, password)."""
    role, password = f"irbot-Rot-{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
    try:
        yield role, password
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def pg_secret(role: str, password: str, **extra: Any) -> dict[str, Any]:
    return {
        "engine": "postgres",
        "host": "127.0.0.1",
        "port": 5432,
        "username": role,
        "password": password,
        "dbname": "postgres",
        **extra,
    }


def test_postgres_rotation_changes_the_role_password(
    sm: Any, pg_role: tuple[str, str], postgres_admin_url: str
) -> None:
    """The four steps change the role's real password: PostgreSQL's stored SCRAM verifier
    matches the new AWSCURRENT password and no longer the old one; the old version is
    AWSPREVIOUS, AWSPENDING is gone and the secret's other fields are kept."""
    role, old = pg_role
    first = create(sm, "prod/db", pg_secret(role, old, note="kept"))
    assert password_matches(postgres_admin_url, role, old)
    ctx = make_ctx()

    out = run(ROTATE, {"secret_id": "prod/db"}, ctx)

    new = json.loads(value(sm, "prod/db"))
    assert out["method"] == "postgres"
    assert out["version_id"] == ctx.client_token == holder(sm, "prod/db", "AWSCURRENT")
    assert out["previous_version_id"] == first == holder(sm, "prod/db", "AWSPREVIOUS")
    assert holder(sm, "prod/db", "AWSPENDING") is None
    assert len(new["password"]) >= 32
    assert password_matches(postgres_admin_url, role, new["password"])
    assert not password_matches(postgres_admin_url, role, old)
    assert {k: v for k, v in new.items() if k != "password"} == {
        k: v for k, v in pg_secret(role, old, note="kept").items() if k != "password"
    }


def test_resume_reuses_this_steps_pending_version(
    sm: Any, pg_role: tuple[str, str], postgres_admin_url: str
) -> None:
    """A crash after createSecret left AWSPENDING under this step's token: the rotation
    takes that value up (no new version, no new password) and finishes with it."""
    role, old = pg_role
    create(sm, "prod/db", pg_secret(role, old))
    ctx = make_ctx()
    planned = "Resumed" + secrets.token_hex(16)
    sm.put_secret_value(
        SecretId="prod/db",
        ClientRequestToken=ctx.client_token,
        SecretString=json.dumps(pg_secret(role, planned)),
        VersionStages=["AWSPENDING"],
    )

    out = run(ROTATE, {"secret_id": "prod/db"}, ctx)

    assert out["version_id"] == ctx.client_token
    assert json.loads(value(sm, "prod/db"))["password"] == planned
    assert password_matches(postgres_admin_url, role, planned)
    assert version_count(sm, "prod/db") == 2


def test_unreachable_database_is_retryable_and_resumable(sm: Any) -> None:
    """A database that refuses connections fails the step as retryable, naming host:port
    and user but no password; the AWSPENDING version stays for the retry to resume."""
    port = free_port()
    old = "Canary" + secrets.token_hex(16)
    create(sm, "prod/db", {**pg_secret("app", old), "port": port})
    ctx = make_ctx()

    error = fails(ROTATE, {"secret_id": "prod/db"}, ctx)

    assert error.retryable
    assert error.code == "unreachable"
    assert f"127.0.0.1:{port}" in error.message
    assert "app" in error.message
    pending = json.loads(value(sm, "prod/db", "AWSPENDING"))["password"]
    assert old not in error.message
    assert pending not in error.message
    assert holder(sm, "prod/db", "AWSPENDING") == ctx.client_token
    assert json.loads(value(sm, "prod/db"))["password"] == old


# --------------------------------------------------------------------------- Redis


@pytest.fixture
def redis_user(redis_url: str) -> Iterator[tuple[str, str]]:
    """A throw-away ACL user on the shared server allowed to change its own password."""
    admin = redis.Redis.from_url(redis_url)
    user, password = f"irbot-test-{secrets.token_hex(4)}", secrets.token_hex(16)
    admin.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "-@all", "+ping", "+acl|setuser",
        "+acl|whoami", "+info", "+config|get",
    )  # fmt: skip
    try:
        yield user, password
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def logs_in(port: int, username: str | None, password: str) -> bool:
    """AUTH works (without redis-py's default retries, which take ~10 s to give up)."""
    client = redis.Redis(
        host="127.0.0.1", port=port, username=username, password=password, retry=NO_RETRY
    )
    try:
        return bool(client.ping())
    except redis.AuthenticationError:
        return False
    finally:
        client.close()


def redis_secret(port: int, password: str, username: str | None = None) -> dict[str, Any]:
    secret = {"engine": "redis", "host": "127.0.0.1", "port": port, "password": password}
    return {**secret, "username": username} if username else secret


def test_redis_acl_user_rotation(sm: Any, redis_user: tuple[str, str]) -> None:
    """A named Redis user gets a new password via ACL SETUSER: the new one logs in, the
    old one is refused; with no config or ACL file a warning says it is not persisted."""
    user, old = redis_user
    create(sm, "prod/cache", redis_secret(6379, old, user))

    with capture_logs() as logs:
        out = run(ROTATE, {"secret_id": "prod/cache"}, make_ctx())

    new = json.loads(value(sm, "prod/cache"))["password"]
    assert out["method"] == "redis"
    assert logs_in(6379, user, new)
    assert not logs_in(6379, user, old)
    assert any(e["event"] == "rotation.redis_not_persisted" for e in logs)


def test_redis_resume_after_set_secret(sm: Any, redis_user: tuple[str, str]) -> None:
    """A crash after setSecret: the AWSCURRENT password is refused but AWSPENDING works,
    so the rotation logs in with AWSPENDING and finishes instead of failing."""
    user, old = redis_user
    create(sm, "prod/cache", redis_secret(6379, old, user))
    ctx = make_ctx()
    new = secrets.token_hex(20)
    sm.put_secret_value(
        SecretId="prod/cache",
        ClientRequestToken=ctx.client_token,
        SecretString=json.dumps(redis_secret(6379, new, user)),
        VersionStages=["AWSPENDING"],
    )
    admin = redis.Redis(host="127.0.0.1", port=6379)
    admin.execute_command("ACL", "SETUSER", user, "resetpass", f">{new}")
    admin.close()
    assert not logs_in(6379, user, old)

    out = run(ROTATE, {"secret_id": "prod/cache"}, ctx)

    assert out["version_id"] == ctx.client_token == holder(sm, "prod/cache", "AWSCURRENT")
    assert json.loads(value(sm, "prod/cache"))["password"] == new
    assert logs_in(6379, user, new)


def test_redis_default_user_requirepass_rotation(sm: Any, tmp_path: Path, aws: str) -> None:
    """The default user's requirepass changes on a private server, and CONFIG REWRITE
    saves it to the server's config file so it survives a restart."""
    old = secrets.token_hex(16)
    with private_redis(tmp_path, old) as server:
        create(sm, "prod/cache", redis_secret(server.port, old))

        out = run(ROTATE, {"secret_id": "prod/cache"}, make_ctx())

        new = json.loads(value(sm, "prod/cache"))["password"]
        assert out["method"] == "redis"
        assert logs_in(server.port, None, new)
        assert not logs_in(server.port, None, old)
        saved = server.config.read_text()
        assert new in saved
        assert old not in saved


def test_redis_password_changed_elsewhere_is_a_clear_error(
    sm: Any, redis_user: tuple[str, str]
) -> None:
    """When neither AWSCURRENT nor AWSPENDING logs in, the rotation stops with a
    non-retryable error saying so, and AWSCURRENT stays where it was."""
    user, old = redis_user
    first = create(sm, "prod/cache", redis_secret(6379, old, user))
    admin = redis.Redis(host="127.0.0.1", port=6379)
    admin.execute_command("ACL", "SETUSER", user, "resetpass", f">{secrets.token_hex(16)}")
    admin.close()

    error = fails(ROTATE, {"secret_id": "prod/cache"}, make_ctx())

    assert error.code == "auth_failed"
    assert not error.retryable
    assert f"neither the AWSCURRENT nor the AWSPENDING password of user {user}" in error.message
    assert holder(sm, "prod/cache", "AWSCURRENT") == first


# --------------------------------------------------------------------------- generic


@pytest.mark.parametrize(
    ("old", "check"),
    [
        ("0123456789abcdef0123456789abcdef", lambda new: set(new) <= set("0123456789abcdef")),
        (
            base64.b64encode(b"twenty-two bytes here!").decode(),
            lambda new: len(base64.b64decode(new)) == 22,
        ),
        (
            "Ab3-xY9_kLmN0pQr-StUv",
            lambda new: (
                set(new) <= set(string.ascii_letters + string.digits + "-_")
                and all(
                    any(c in cls for c in new)
                    for cls in (string.ascii_lowercase, string.ascii_uppercase, string.digits, "-_")
                )
            ),
        ),
    ],
    ids=["hex", "base64", "mixed"],
)
def test_generic_string_keeps_its_shape(sm: Any, old: str, check: Callable[[str], bool]) -> None:
    """A plain string secret becomes a new random string of the same length and shape."""
    create(sm, "app/token", old)

    out = run(ROTATE, {"secret_id": "app/token"}, make_ctx())

    new = value(sm, "app/token")
    assert out["method"] == "generic"
    assert new != old
    assert len(new) == len(old)
    assert check(new)
    assert value(sm, "app/token", "AWSPREVIOUS") == old


def test_generic_json_regenerates_secret_keys_only(sm: Any) -> None:
    """A JSON secret gets new values for the keys that hold secrets; others are kept."""
    old = {"client_id": "abc123", "client_secret": "S3cr3tS3cr3tS3cr3t", "api_key": "k" * 24}
    create(sm, "app/oauth", old)

    run(ROTATE, {"secret_id": "app/oauth"}, make_ctx())

    new = json.loads(value(sm, "app/oauth"))
    assert new["client_id"] == "abc123"
    assert new["client_secret"] != old["client_secret"]
    assert len(new["client_secret"]) == len(old["client_secret"])
    assert new["api_key"] != old["api_key"]
    assert set(new["api_key"]) <= set(string.ascii_lowercase)


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ({"client_id": "abc", "region": "eu"}, "nothing to regenerate (keys: client_id, region)"),
        ("postgres://app:pw@db/app", "looks like a URL or connection string"),
        ("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----", "line breaks"),
        ({"engine": "mysql", "password": "x" * 20}, "engine 'mysql'"),
        ({"engine": "postgres", "password": "x" * 20}, "needs: host, username"),
        ({"engine": "redis", "host": "127.0.0.1"}, "needs: password"),
    ],
    ids=["json-nothing", "url", "pem", "mysql", "postgres-fields", "redis-fields"],
)
def test_secret_it_cannot_rotate_is_refused_untouched(
    sm: Any, secret: str | dict[str, Any], expected: str
) -> None:
    """Secrets irbot cannot rotate fail with a non-retryable error saying why, and no
    AWSPENDING version is created."""
    create(sm, "app/odd", secret)

    error = fails(ROTATE, {"secret_id": "app/odd"}, make_ctx())

    assert expected in error.message
    assert "app/odd" in error.message
    assert not error.retryable
    assert error.code == "input"
    assert version_count(sm, "app/odd") == 1


def test_nonexistent_secret_is_not_found(sm: Any) -> None:
    """Both actions name the secret and the region when it does not exist."""
    for name, args in ((ROTATE, {}), (PUT_VALUE, {"value_ref": f"sm:{uuid.uuid4()}:x"})):
        error = fails(name, {"secret_id": "no/such", **args}, make_ctx())
        assert error.code == "not_found"
        assert not error.retryable
        assert "secret no/such not found in us-east-1" in error.message


def test_secret_scheduled_for_deletion_is_refused(sm: Any) -> None:
    """A deleted (recoverable) secret is not rotated; the error says how to restore it."""
    create(sm, "app/gone", "x" * 24)
    sm.delete_secret(SecretId="app/gone")

    error = fails(ROTATE, {"secret_id": "app/gone"}, make_ctx())

    assert "scheduled for deletion" in error.message
    assert "aws secretsmanager restore-secret --secret-id app/gone" in error.message


# --------------------------------------------------------------------------- repeats


def test_rotate_twice_with_the_same_context_rotates_once(sm: Any) -> None:
    """A repeated call (same idempotency key) returns the same outputs and creates no
    second version."""
    create(sm, "app/token", "a" * 8 + "B" * 8 + "1" * 8)
    ctx = make_ctx()
    first = run(ROTATE, {"secret_id": "app/token"}, ctx)
    rotated, count = value(sm, "app/token"), version_count(sm, "app/token")

    second = run(ROTATE, {"secret_id": "app/token"}, ctx)

    assert second == first
    assert value(sm, "app/token") == rotated
    assert version_count(sm, "app/token") == count


def test_repeat_after_a_crash_inside_finish_drops_leftover_pending(sm: Any) -> None:
    """A crash between moving AWSCURRENT and removing AWSPENDING: the repeat sees the
    rotation done, removes the leftover AWSPENDING and reports the previous version."""
    first = create(sm, "app/token", "x" * 24)
    ctx = make_ctx()
    sm.put_secret_value(
        SecretId="app/token",
        ClientRequestToken=ctx.client_token,
        SecretString="y" * 24,
        VersionStages=["AWSCURRENT", "AWSPENDING"],
    )

    out = run(ROTATE, {"secret_id": "app/token"}, ctx)

    assert out["version_id"] == ctx.client_token
    assert out["previous_version_id"] == first
    assert stages(sm, "app/token")[ctx.client_token] == ["AWSCURRENT"]


def test_cleared_pending_of_this_step_is_taken_up_again(sm: Any) -> None:
    """If someone took AWSPENDING off this step's version, a repeat puts it back and
    finishes with that value rather than failing on the existing version id."""
    create(sm, "app/token", "x" * 24)
    ctx = make_ctx()
    planned = "q" * 24
    sm.put_secret_value(
        SecretId="app/token", ClientRequestToken=ctx.client_token, SecretString=planned,
        VersionStages=["AWSPENDING"],
    )  # fmt: skip
    sm.update_secret_version_stage(
        SecretId="app/token", VersionStage="AWSPENDING", RemoveFromVersionId=ctx.client_token
    )

    out = run(ROTATE, {"secret_id": "app/token"}, ctx)

    assert out["version_id"] == ctx.client_token
    assert value(sm, "app/token") == planned
    assert stages(sm, "app/token")[ctx.client_token] == ["AWSCURRENT"]


def test_pending_version_of_another_rotation_is_reported(sm: Any) -> None:
    """An AWSPENDING left by another request blocks both actions with an error naming
    the version and the command that clears it; nothing is changed."""
    create(sm, "app/token", "x" * 24)
    other = str(uuid.uuid4())
    sm.put_secret_value(
        SecretId="app/token", ClientRequestToken=other, SecretString="z" * 24,
        VersionStages=["AWSPENDING"],
    )  # fmt: skip
    before = stages(sm, "app/token")
    ref = handover.stash(sm, "irbot/handover/x", "v" * 24, make_ctx("handover"), "test")

    for name, args in ((ROTATE, {}), (PUT_VALUE, {"value_ref": str(ref)})):
        error = fails(name, {"secret_id": "app/token", **args}, make_ctx())
        assert error.code == "conflict"
        assert not error.retryable
        assert f"version {other} is AWSPENDING" in error.message
        assert (
            "aws secretsmanager update-secret-version-stage --secret-id app/token "
            f"--version-stage AWSPENDING --remove-from-version-id {other} --region us-east-1"
        ) in error.message
    assert stages(sm, "app/token") == before


# --------------------------------------------------------------------------- Lambda


@pytest.fixture
def rotation_lambda(aws: str) -> Iterator[str]:
    with lambda_without_docker(aws) as arn:
        yield arn


def enable_rotation(sm: Any, name: str, lambda_arn: str, token: str) -> None:
    """Give a secret a rotation Lambda; moto leaves ``token`` AWSPENDING (a rotation in
    flight), as AWS does while the Lambda works."""
    sm.rotate_secret(
        SecretId=name,
        ClientRequestToken=token,
        RotationLambdaARN=lambda_arn,
        RotationRules={"AutomaticallyAfterDays": 30},
        RotateImmediately=False,
    )
    assert sm.describe_secret(SecretId=name)["RotationEnabled"]


def record_calls(operation: str) -> list[dict[str, Any]]:
    """The parameters of every ``operation`` call boto3 clients make from now on."""
    calls: list[dict[str, Any]] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        calls.append(dict(params))

    aws_client._session().events.register(
        f"before-parameter-build.secrets-manager.{operation}", hook
    )
    aws_client.forget_clients()  # clients copy the session's hooks when they are made
    return calls


def test_lambda_rotation_asks_the_lambda(sm: Any, rotation_lambda: str) -> None:
    """A secret with rotation enabled is rotated by its Lambda: RotateSecret with the
    step's token and RotateImmediately, then AWSCURRENT is awaited on that version."""
    first = create(sm, "app/lambda", "x" * 24)
    setup = str(uuid.uuid4())
    enable_rotation(sm, "app/lambda", rotation_lambda, setup)
    sm.update_secret_version_stage(
        SecretId="app/lambda", VersionStage="AWSPENDING", RemoveFromVersionId=setup
    )
    calls = record_calls("RotateSecret")
    ctx = make_ctx()

    out = run(ROTATE, {"secret_id": "app/lambda"}, ctx)

    assert [(c["ClientRequestToken"], c["RotateImmediately"]) for c in calls] == [
        (ctx.client_token, True)
    ]
    assert out["method"] == "lambda"
    assert out["version_id"] == ctx.client_token == holder(sm, "app/lambda", "AWSCURRENT")
    assert out["previous_version_id"] == first


def test_lambda_rotation_that_does_not_finish_times_out(sm: Any, rotation_lambda: str) -> None:
    """A Lambda rotation still AWSPENDING after wait_timeout fails as retryable, listing
    the stages found; a repeat waits for that rotation instead of starting another."""
    first = create(sm, "app/lambda", "x" * 24)
    ctx = make_ctx()
    enable_rotation(sm, "app/lambda", rotation_lambda, ctx.client_token)  # in flight
    calls = record_calls("RotateSecret")

    error = fails(
        ROTATE, {"secret_id": "app/lambda", "wait_timeout": timedelta(milliseconds=200)}, ctx
    )

    assert error.retryable
    assert error.code == "timeout"
    assert f"{first} [AWSCURRENT]" in error.message
    assert f"{ctx.client_token} [AWSPENDING]" in error.message
    assert calls == []


# --------------------------------------------------------------------------- put_value


def test_put_value_stores_the_referenced_value(sm: Any) -> None:
    """put_value resolves a handed-over reference and makes it AWSCURRENT; a repeat
    returns the same version without writing another."""
    first = create(sm, "app/api-key", "old-key-" + "o" * 16)
    handed = "new-key-" + secrets.token_hex(12)
    ref = handover.stash(sm, "irbot/handover/run/handover", handed, make_ctx("handover"), "t")
    ctx = make_ctx("store")

    out = run(PUT_VALUE, {"secret_id": "app/api-key", "value_ref": str(ref)}, ctx)
    again = run(PUT_VALUE, {"secret_id": "app/api-key", "value_ref": str(ref)}, ctx)

    assert out == again
    assert out["version_id"] == ctx.client_token
    assert out["previous_version_id"] == first
    assert value(sm, "app/api-key") == handed
    assert holder(sm, "app/api-key", "AWSPREVIOUS") == first
    assert version_count(sm, "app/api-key") == 2
    assert handed in ctx.secrets


def test_put_value_with_a_malformed_reference_is_an_input_error(sm: Any) -> None:
    """A value_ref that is not a secret reference fails without touching the secret."""
    create(sm, "app/api-key", "k" * 24)

    error = fails(PUT_VALUE, {"secret_id": "app/api-key", "value_ref": "plaintext"}, make_ctx())

    assert error.code == "input"
    assert "not a secret reference" in error.message
    assert version_count(sm, "app/api-key") == 1


# --------------------------------------------------------------------------- secrecy


def test_secret_values_never_leak(sm: Any, redis_user: tuple[str, str]) -> None:
    """Old and new values never appear in outputs, error messages or log events, and
    every one of them is in the call's redaction set."""
    user, old_redis = redis_user
    canary = "CANARY" + secrets.token_hex(16)
    create(sm, "app/json", {"client_id": "id", "client_secret": canary})
    create(sm, "prod/cache", redis_secret(6379, old_redis, user))
    create(sm, "prod/broken", {**pg_secret("app", canary), "port": free_port()})
    seen: list[str] = []
    ctxs = [make_ctx() for _ in range(3)]

    with capture_logs() as logs:
        seen.append(repr(run(ROTATE, {"secret_id": "app/json"}, ctxs[0])))
        seen.append(repr(run(ROTATE, {"secret_id": "prod/cache"}, ctxs[1])))
        seen.append(fails(ROTATE, {"secret_id": "prod/broken"}, ctxs[2]).message)
    seen.append(repr(logs))

    values = [
        canary,
        old_redis,
        json.loads(value(sm, "app/json"))["client_secret"],
        json.loads(value(sm, "prod/cache"))["password"],
        json.loads(value(sm, "prod/broken", "AWSPENDING"))["password"],
    ]
    text = "\n".join(seen)
    for secret in values:
        assert secret not in text
        assert any(secret in ctx.secrets for ctx in ctxs)
    assert logs, "the rotations log their steps"


# --------------------------------------------------------------------------- values


def test_values_issued_elsewhere_are_refused() -> None:
    """Tokens minted by another system are not replaced by random strings."""
    for token in ("xoxb-1234567890-abcdefghij", "ghp_" + "a" * 36, "AKIA" + "A" * 16):
        with pytest.raises(ActionError, match="looks like"):
            regenerate_string(token, "secret x")
    with pytest.raises(ActionError, match="AWS credentials"):
        regenerate(json.dumps({"aws_secret_access_key": "a" * 40}), "x")
