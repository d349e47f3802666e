"""Shared fixtures: a fresh, empty database per test, on SQLite and on PostgreSQL.

``database_url`` runs a test once per backend. SQLite is always there (a file in the
test's tmp_path); PostgreSQL runs when ``IRBOT_TEST_POSTGRES_URL`` names a server
(``postgresql://postgres@127.0.0.1:5432/postgres``) and is skipped otherwise. Through that
server each test gets its own new database ``irbot_test_<session hex>_<n>`` — a database,
not a schema, because DBOS keeps its tables in a fixed ``dbos`` schema — and every
database of the session is dropped at its end, even after a failure.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

POSTGRES_ENV = "IRBOT_TEST_POSTGRES_URL"


def _plain(url: str) -> str:
    """``postgresql://`` as a user writes it (psycopg and the store both accept it)."""
    parsed = make_url(url)
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise pytest.UsageError(f"{POSTGRES_ENV} must be a postgresql:// URL")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresDatabases:
    """Creates throw-away databases through an admin connection; drops them all."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.prefix = f"irbot_test_{secrets.token_hex(4)}"
        self._numbers = itertools.count(1)

    def create(self) -> str:
        """A new empty database; returns its ``postgresql://`` URL."""
        name = f"{self.prefix}_{next(self._numbers)}"
        self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        parsed = make_url(self.admin_url).set(database=name)
        return parsed.render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        """Drop the database of ``url``, disconnecting anything a test left open."""
        name = make_url(url).database
        if not name or not name.startswith(self.prefix):
            raise ValueError(f"{name!r} was not created by this session")
        self._execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def drop_all(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s",
                    (self.prefix + "%",),
                )
            ]
            for name in names:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )

    def _execute(self, statement: sql.Composed) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(statement)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """A URL with the right to create databases; the test is skipped without one."""
    url = os.environ.get(POSTGRES_ENV, "").strip()
    if not url:
        pytest.skip(
            f"PostgreSQL tests need {POSTGRES_ENV} (e.g. postgresql://postgres@host/postgres)"
        )
    return _plain(url)


@pytest.fixture(scope="session")
def postgres_databases(postgres_admin_url: str) -> Iterator[PostgresDatabases]:
    """Factory for extra databases (``create()`` -> URL); all dropped after the session."""
    databases = PostgresDatabases(postgres_admin_url)
    try:
        yield databases
    finally:
        databases.drop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of each backend, as a user would write it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'irbot.sqlite'}"
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    url = databases.create()
    try:
        yield url
    finally:
        databases.drop(url)


# --------------------------------------------------------------------------- AWS via moto

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto's documented dummy credentials
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server on a free local port, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A wiped moto and an environment whose boto3 talks to it; yields the endpoint.

    Child processes (irbot workers, the CLI) inherit the same variables.
    """
    import urllib.request

    from bot.actions.aws import client

    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    client.reset()
    yield moto_endpoint
    client.reset()


# --------------------------------------------------------------------------- Redis

REDIS_ENV = "IRBOT_TEST_REDIS_URL"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The local Redis server (`.ci/run` starts it); skipped without IRBOT_TEST_REDIS_URL."""
    url = os.environ.get(REDIS_ENV, "").strip()
    if not url:
        pytest.skip(f"Redis tests need {REDIS_ENV} (e.g. redis://127.0.0.1:6379/0)")
    return url


@pytest.fixture(scope="session", autouse=True)
def _dbos_console_handler() -> None:
    """Create DBOS's console log handler once, on the session's stderr.

    DBOS binds ``logging.StreamHandler()`` to whatever ``sys.stderr`` is when it first
    starts; inside a ``capsys`` test that is a buffer closed after the test, and every
    later DBOS log line would then fail on a closed file.
    """
    from dbos._logger import init_logger

    init_logger()


@pytest.fixture(autouse=True)
def _fresh_dbos_clients() -> Iterator[None]:
    """Each test's databases are its own: drop the process's shared DBOS clients after
    it (a later test must not reuse a client on a dropped PostgreSQL database)."""
    yield
    from bot.engine.client import close_clients

    close_clients()
