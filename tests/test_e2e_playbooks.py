"""The four seed playbooks, end to end, through the real engine.

Real parts: AWS is moto's server, Kubernetes the fake API server with its deployment
controller (tests/fake_kube.py), Slack the fake Web API (tests/fake_slack.py),
PostgreSQL and Redis the local servers. Approvals and manual tasks are answered as
`irbot approve` / `irbot task` do (IRBOT_LOCAL_APPROVALS). PagerDuty and SMTP are not
configured, so the optional paging and e-mail steps skip, as they would on a fresh
install.

Each test plants the secret values it handles as canaries and greps every sink: the
log output, every timeline event, every database row (SQLite files byte by byte, or
every PostgreSQL row as text) and the CLI's output.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import redis
from psycopg import sql

from bot.actions.aws import client as aws_client
from bot.engine import client, runtime
from bot.store import RunRecord
from tests.engine_support import FINISHED, Harness
from tests.fake_cloudtrail import FakeCloudTrail, serve
from tests.fake_cloudtrail import event as ct_event
from tests.fake_kube import FakeKube, kube_fixture, kubeconfig_fixture  # noqa: F401
from tests.fake_slack import FakeSlack, fake_slack_fixture, slack_env_fixture  # noqa: F401
from tests.pg_scram import password_matches

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ("leak-response", "compromise-detection", "lost-access", "rotate-api-key")
NS = "production"
APPROVERS = ("U02", "U04")  # sre + security; the requester is U01


@pytest.fixture
def h(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    aws: str,
    kubeconfig: Path,
    slack_env: None,
) -> Harness:
    """An installation with the seed playbooks, talking to moto, the fake cluster and
    the fake Slack; PagerDuty and SMTP unset."""
    for name in (
        "PAGERDUTY_ROUTING_KEY",
        "PAGERDUTY_API_TOKEN",
        "PAGERDUTY_FROM",
        "IRBOT_SMTP_HOST",
        "IRBOT_SMTP_FROM",
    ):
        monkeypatch.delenv(name, raising=False)
    harness = Harness(tmp_path / "irbot", None, monkeypatch)
    for name in SEEDS:
        harness.add_playbook((ROOT / "playbooks" / f"{name}.yaml").read_text())
    return harness


def run_to_end(
    h: Harness, name: str, *, secret: str | None = None, timeout: float = 90, **inputs: Any
) -> RunRecord:
    """Start ``name`` as U01 and answer every gate (U02, U04) and task (the requester, or
    U04 for tasks assigned to security) until it ends."""

    async def main() -> RunRecord:
        await h.start()
        try:
            run_id = h.submit(name, "U01", **inputs)
            return await _answer_until_done(h, run_id, secret, timeout)
        finally:
            h.stop()

    return asyncio.run(main())


async def _answer_until_done(
    h: Harness, run_id: str, secret: str | None, timeout: float
) -> RunRecord:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    answered: set[str] = set()
    while loop.time() < deadline:
        run = h.store.get_run(run_id)
        if run.status in FINISHED:
            return run  # type: ignore[no-any-return]
        gate = client.open_gate(h.store, run_id)
        if gate is not None and gate.id not in answered:
            answered.add(gate.id)
            for user in APPROVERS:
                await h.vote(run_id, user)
            continue
        task = client.open_task(h.store, run_id, None)
        if task is not None and task.id not in answered:
            answered.add(task.id)
            handed = secret if task.payload.get("secret_input") else None
            # The requester, or a security member when the task is assigned to them.
            user = "U04" if "group:security" in str(task.payload.get("assignee")) else "U01"
            await h.task(run_id, user, secret=handed)
            continue
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish: {h.kinds(run_id)}")


# --------------------------------------------------------------------------- canaries


def stored_events(h: Harness, run_id: str) -> list[Any]:
    """The run's timeline, read after its worker stopped."""
    store = runtime.open_store(h.settings)
    try:
        return list(store.events(run_id=run_id))
    finally:
        store.close()


def database_text(h: Harness) -> Iterator[bytes]:
    """Every byte of the embedded databases (WAL files included)."""
    for path in (h.root / "data").rglob("*"):
        if path.is_file():
            yield path.read_bytes()


def assert_nowhere(
    h: Harness, run_id: str, values: Iterable[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """No canary in logs, timeline events, database bytes, or the CLI's views of the run."""
    canaries = [v for v in values if v]
    assert canaries
    store = runtime.open_store(h.settings)
    try:
        run = store.get_run(run_id)
    finally:
        store.close()
    events = json.dumps([e.payload for e in stored_events(h, run_id)], default=str)
    cli = ""
    for args in (
        ("timeline", run.incident_id, "--format", "json"),
        ("timeline", run.incident_id, "--format", "md"),
    ):
        done = h.irbot(*args)
        assert done.returncode == 0, done.stderr
        cli += done.stdout + done.stderr
    logged = capsys.readouterr()
    for canary in canaries:
        assert canary not in events, "a secret reached the timeline"
        assert canary not in cli, "a secret reached the CLI output"
        assert canary not in logged.out + logged.err, "a secret reached the log output"
        for blob in database_text(h):
            assert canary.encode() not in blob, "a secret reached the database"


def step_events(h: Harness, run_id: str, step: str, kind: str = "step.succeeded") -> list[Any]:
    return [e for e in stored_events(h, run_id) if e.step_id == step and e.kind == kind]


# --------------------------------------------------------------------------- leak-response


@pytest.fixture
def pg_role(postgres_admin_url: str) -> Iterator[tuple[str, str]]:
    """A throw-away login role with a known password: (role, password)."""
    role = f"app-E2E-{secrets.token_hex(3)}"
    password = "old-" + secrets.token_urlsafe(24)
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


def current_value(secret_id: str) -> str:
    sm = boto3.client("secretsmanager")
    return str(sm.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")["SecretString"])


def test_leak_response_rotates_a_postgres_secret_and_restarts_consumers(
    h: Harness,
    kube: FakeKube,
    fake_slack: FakeSlack,
    pg_role: tuple[str, str],
    postgres_admin_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After leak-response the role's old password no longer logs in and the one in
    AWSCURRENT does; both deployments carry a new restartedAt; the incident thread tells
    the story; neither password appears in any sink."""
    role, old_password = pg_role
    secret_id = "prod/orders/db"
    boto3.client("secretsmanager").create_secret(
        Name=secret_id,
        SecretString=json.dumps(
            {
                "engine": "postgres",
                "host": "127.0.0.1",
                "port": 5432,
                "username": role,
                "password": old_password,
                "dbname": "postgres",
            }
        ),
    )
    for name in ("orders-api", "orders-worker"):
        kube.add_deployment(NS, name)
    kube.set_delay(0.2)

    run = run_to_end(
        h, "leak-response", secret_id=secret_id, deployments="orders-api,orders-worker"
    )

    assert run.status == "succeeded", run.detail
    new_password = json.loads(current_value(secret_id))["password"]
    assert new_password != old_password
    assert len(new_password) >= 32
    assert password_matches(postgres_admin_url, role, new_password)
    assert not password_matches(postgres_admin_url, role, old_password)
    for name in ("orders-api", "orders-worker"):
        annotations = kube.deployment(NS, name)["spec"]["template"]["metadata"]["annotations"]
        assert "kubectl.kubernetes.io/restartedAt" in annotations
    (rotate,) = step_events(h, run.id, "rotate")
    assert rotate.payload["outputs"]["method"] == "postgres"
    assert {e.kind for e in step_events(h, run.id, "page", "step.skipped")} == {"step.skipped"}
    channel = fake_slack.channel_id("C0INCIDENTS")
    (root,) = fake_slack.messages(channel)
    replies = [m.text for m in fake_slack.replies(channel, root.ts)]
    assert "Leak response" in root.text
    assert any("rotated" in text for text in replies)
    assert_nowhere(h, run.id, [old_password, new_password], capsys)


def test_leak_response_rotates_a_redis_acl_user(
    h: Harness,
    kube: FakeKube,
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A redis-engine secret: the ACL user's new password from AWSCURRENT works and the
    old one is refused."""
    admin = redis.Redis.from_url(redis_url)
    user = f"irbot-e2e-{secrets.token_hex(3)}"
    old_password = "old-" + secrets.token_urlsafe(24)
    admin.execute_command("ACL", "SETUSER", user, "on", f">{old_password}", "~*", "+@all")
    try:
        host, port = admin.connection_pool.connection_kwargs["host"], 6379
        secret_id = "prod/cache/redis"
        boto3.client("secretsmanager").create_secret(
            Name=secret_id,
            SecretString=json.dumps(
                {
                    "engine": "redis",
                    "host": host,
                    "port": port,
                    "username": user,
                    "password": old_password,
                }
            ),
        )
        run = run_to_end(h, "leak-response", secret_id=secret_id)
        assert run.status == "succeeded", run.detail
        new_password = json.loads(current_value(secret_id))["password"]
        assert redis.Redis(host=host, port=port, username=user, password=new_password).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host=host, port=port, username=user, password=old_password).ping()
        assert_nowhere(h, run.id, [old_password, new_password], capsys)
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


# --------------------------------------------------------------------------- lost-access


def iam_user_with_key(user: str) -> dict[str, str]:
    iam = boto3.client("iam")
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return {
        "aws_access_key_id": key["AccessKeyId"],
        "aws_secret_access_key": key["SecretAccessKey"],
    }


def test_lost_access_leaves_one_working_key(
    h: Harness, kube: FakeKube, capsys: pytest.CaptureFixture[str]
) -> None:
    """lost-access (grace shortened to 1 s): the user ends with one active key, stored as
    AWSCURRENT and proven to work through STS; the old key is gone."""
    user = "billing-app"
    old = iam_user_with_key(user)
    secret_id = "prod/billing/aws"
    boto3.client("secretsmanager").create_secret(Name=secret_id, SecretString=json.dumps(old))
    kube.add_deployment(NS, "billing")

    run = run_to_end(
        h, "lost-access", iam_user=user, secret_id=secret_id, deployments="billing", grace="1s"
    )

    assert run.status == "succeeded", run.detail
    keys = boto3.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
    assert [(k["Status"]) for k in keys] == ["Active"]
    stored = json.loads(current_value(secret_id))
    assert stored["aws_access_key_id"] == keys[0]["AccessKeyId"] != old["aws_access_key_id"]
    sts = boto3.client(
        "sts",
        aws_access_key_id=stored["aws_access_key_id"],
        aws_secret_access_key=stored["aws_secret_access_key"],
    )
    assert sts.get_caller_identity()["Arn"].endswith(f":user/{user}")
    (verify,) = step_events(h, run.id, "verify")
    assert verify.payload["outputs"]["arn"].endswith(f":user/{user}")
    assert_nowhere(
        h, run.id, [old["aws_secret_access_key"], stored["aws_secret_access_key"]], capsys
    )


# --------------------------------------------------------------------------- compromise-detection


@pytest.fixture
def trail(h: Harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCloudTrail]:
    """The local CloudTrail (moto has no LookupEvents); other services stay on moto."""
    with serve(FakeCloudTrail()) as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDTRAIL", fake.url)
        aws_client.reset()
        yield fake


def test_compromise_detection_deactivates_and_quarantines(
    h: Harness, trail: FakeCloudTrail, fake_slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    """compromise-detection: the owner is found, CloudTrail evidence summarised into the
    thread, then the key is inactive and the user carries the deny-all policy."""
    user = "ci-deployer"
    key = iam_user_with_key(user)
    now = datetime.now(UTC)
    trail.events = [
        ct_event(
            "GetObject" if n % 3 else "ListBuckets",
            now - timedelta(minutes=5 * n + 1),
            ip="198.51.100.9" if n % 2 else "203.0.113.7",
            access_key_id=key["aws_access_key_id"],
            user=user,
        )
        for n in range(30)
    ]

    run = run_to_end(h, "compromise-detection", access_key_id=key["aws_access_key_id"])

    assert run.status == "succeeded", run.detail
    iam = boto3.client("iam")
    (meta,) = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    assert meta["Status"] == "Inactive"
    policy = iam.get_user_policy(UserName=user, PolicyName="irbot-quarantine")["PolicyDocument"]
    assert policy["Statement"][0]["Effect"] == "Deny"
    (evidence,) = step_events(h, run.id, "evidence")
    assert evidence.payload["outputs"]["event_count"] == 30
    assert evidence.payload["outputs"]["by_event_name"]["ListBuckets"] == 10
    channel = fake_slack.channel_id("C0INCIDENTS")
    texts = [m.text for m in fake_slack.messages(channel)]
    texts += [
        m.text
        for root in fake_slack.messages(channel)
        for m in fake_slack.replies(channel, root.ts)
    ]
    assert any("30 events" in t for t in texts), texts
    assert_nowhere(h, run.id, [key["aws_secret_access_key"]], capsys)


# --------------------------------------------------------------------------- rotate-api-key


def test_rotate_api_key_stores_the_handed_over_key(
    h: Harness, kube: FakeKube, capsys: pytest.CaptureFixture[str]
) -> None:
    """rotate-api-key: the key a person hands over becomes AWSCURRENT of the secret and
    the consumers restart; the key is in no sink."""
    secret_id = "prod/stripe/api-key"
    boto3.client("secretsmanager").create_secret(Name=secret_id, SecretString="sk_live_old")
    kube.add_deployment(NS, "checkout")
    new_key = "sk_live_" + secrets.token_hex(16)

    run = run_to_end(
        h,
        "rotate-api-key",
        secret=new_key,
        service="stripe",
        secret_id=secret_id,
        deployments="checkout",
    )

    assert run.status == "succeeded", run.detail
    assert current_value(secret_id) == new_key
    annotations = kube.deployment(NS, "checkout")["spec"]["template"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/restartedAt" in annotations
    assert_nowhere(h, run.id, [new_key], capsys)
