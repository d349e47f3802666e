"""PostgreSQL: change a role's password with ``ALTER ROLE``.

The password is hashed on the client (libpq's ``PQencryptPasswordConn``, following the
server's ``password_encryption``, normally SCRAM-SHA-256), so the plaintext never reaches
the server or its statement log. Connections are built from keyword arguments (never a
DSN string) with a connect timeout. Optional secret fields: ``port`` (5432), ``dbname``
(``postgres``), ``sslmode``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from bot.actions.aws.dbpassword import CONNECT_TIMEOUT, refused, unreachable
from bot.actions.aws.rotation_values import DbSecret
from bot.engine.actions import ActionError

SYSTEM = "PostgreSQL"
_BUSY = ("too many clients", "starting up", "shutting down", "recovery mode", "in recovery")


@contextmanager
def login(db: DbSecret) -> Iterator[psycopg.Connection[Any]]:
    """A connection as ``db``'s user; AUTH_FAILED if the server refuses the password."""
    options: dict[str, Any] = {
        "host": db.host,
        "port": db.port,
        "user": db.username,
        "password": db.password,
        "dbname": db.dbname or "postgres",
        "connect_timeout": CONNECT_TIMEOUT,
        "application_name": "irbot-rotation",
        "autocommit": True,
    }
    if isinstance(db.option("sslmode"), str):
        options["sslmode"] = db.option("sslmode")
    try:
        conn = psycopg.connect(**options)
    except psycopg.OperationalError as exc:
        raise _connect_error(db, str(exc)) from exc
    except psycopg.Error as exc:  # a malformed option such as sslmode
        raise ActionError(
            f"cannot connect to {SYSTEM} as {db.who}: invalid connection options "
            "(check the secret's host, port, dbname and sslmode)",
            code="input",
        ) from exc
    with conn:
        yield conn


def change_password(session: psycopg.Connection[Any], pending: DbSecret, log: Any) -> None:
    """``ALTER ROLE <user> PASSWORD '<verifier>'`` for ``pending``'s user."""
    user = pending.username or ""
    try:
        verifier = session.pgconn.encrypt_password(pending.password.encode(), user.encode())
        session.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(user), sql.Literal(verifier.decode())
            )
        )
    except psycopg.errors.InsufficientPrivilege as exc:
        raise ActionError(
            f"{SYSTEM} does not let {pending.who} change its password (insufficient "
            "privilege): rotate it with a rotation Lambda that uses an admin user",
            code="denied",
        ) from exc
    except psycopg.OperationalError as exc:
        raise unreachable(pending, SYSTEM, "connection lost while changing the password") from exc
    except psycopg.Error as exc:
        raise ActionError(
            f"{SYSTEM} refused to change the password of {pending.who} "
            f"(SQLSTATE {exc.sqlstate or 'unknown'})",
            code="database",
        ) from exc
    log.info("rotation.password_changed", system=SYSTEM, endpoint=pending.endpoint, user=user)


def check(session: psycopg.Connection[Any], db: DbSecret) -> None:
    """The session is ``db``'s user (``SELECT current_user``)."""
    try:
        row = session.execute("SELECT current_user").fetchone()
    except psycopg.Error as exc:
        raise unreachable(db, SYSTEM, "the test query failed") from exc
    if row is None or row[0] != db.username:
        raise ActionError(
            f"{SYSTEM} logged {db.who} in as another user; check the secret's username",
            code="database",
        )


def _connect_error(db: DbSecret, text: str) -> ActionError:
    """Classify libpq's connection failure without repeating its text."""
    lowered = text.lower()
    if "authentication failed" in lowered:
        return refused(db, SYSTEM)
    if any(marker in lowered for marker in _BUSY):
        return unreachable(db, SYSTEM, "the server is busy or restarting")
    if "fatal:" in lowered:
        return ActionError(
            f"{SYSTEM} at {db.endpoint} rejected {db.who} for database "
            f"{db.dbname or 'postgres'} (no such role or database, or no pg_hba.conf entry): "
            "check the secret's username and dbname",
            code="rejected",
        )
    return unreachable(db, SYSTEM, "connection refused or timed out")
