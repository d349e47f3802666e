"""setSecret and testSecret for database secrets: the password inside PostgreSQL or Redis.

Single-user strategy, as AWS's own rotation templates: irbot logs in *as the secret's
user* and changes that user's password (PostgreSQL: ``ALTER ROLE``; Redis: ``ACL
SETUSER`` for a named user — which needs ``+acl|setuser`` — or ``CONFIG SET requirepass``
for the default user). A rotation that crashed after setSecret finds the AWSCURRENT
password refused: it then logs in with AWSPENDING and re-applies the change, which is
idempotent. The engines live in ``dbpassword_postgres`` and ``dbpassword_redis``.

Errors name ``user@host:port``, never a password, and never carry the driver's text
(libpq messages may echo connection parameters). Unreachable or busy servers are
retryable; refused logins and missing permissions are not.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack
from typing import Any, Protocol

from bot.actions.aws.rotation_values import DbSecret, Kind
from bot.engine.actions import ActionError

CONNECT_TIMEOUT = 10
"""Seconds to wait for a database connection (and, for Redis, for each reply)."""

AUTH_FAILED = "auth_failed"
"""ActionError code of a login the server refused (wrong password or user)."""


class Engine(Protocol):
    """What a database engine module provides."""

    def login(self, db: DbSecret) -> AbstractContextManager[Any]:
        """A session logged in with ``db``'s credentials; AUTH_FAILED if refused."""
        ...

    def change_password(self, session: Any, pending: DbSecret, log: Any) -> None:
        """Make ``pending.password`` the user's only password."""
        ...

    def check(self, session: Any, db: DbSecret) -> None:
        """Prove the session works as ``db``'s user."""
        ...


def refused(db: DbSecret, system: str) -> ActionError:
    return ActionError(
        f"{system} refused the password of {db.who}", retryable=False, code=AUTH_FAILED
    )


def unreachable(db: DbSecret, system: str, why: str) -> ActionError:
    return ActionError(
        f"cannot reach {system} at {db.endpoint} as user {db.username or 'default'} ({why}); "
        "a retry may help",
        retryable=True,
        code="unreachable",
    )


def engine_for(kind: Kind) -> Engine:
    if kind == "postgres":
        from bot.actions.aws import dbpassword_postgres

        return dbpassword_postgres
    if kind == "redis":
        from bot.actions.aws import dbpassword_redis

        return dbpassword_redis
    raise ValueError(f"no database engine for kind {kind!r}")


def set_secret(current: DbSecret, pending: DbSecret, log: Any) -> str:
    """setSecret: give the user the AWSPENDING password; returns the stage that logged in."""
    engine = engine_for(current.kind)
    with ExitStack() as stack:
        session, stage = _login_for_change(engine, current, pending, stack)
        engine.change_password(session, pending, log)
    return stage


def test_secret(pending: DbSecret) -> None:
    """testSecret: log in with the AWSPENDING password and run a trivial command."""
    engine = engine_for(pending.kind)
    with engine.login(pending) as session:
        engine.check(session, pending)


def _login_for_change(
    engine: Engine, current: DbSecret, pending: DbSecret, stack: ExitStack
) -> tuple[Any, str]:
    for db, stage in ((current, "AWSCURRENT"), (pending, "AWSPENDING")):
        try:
            return stack.enter_context(engine.login(db)), stage
        except ActionError as exc:
            if exc.code != AUTH_FAILED:
                raise
    raise ActionError(
        f"neither the AWSCURRENT nor the AWSPENDING password of {current.who} is accepted: "
        "the password was changed outside this rotation; set the user's password to the "
        "AWSCURRENT value by hand, then run the rotation again",
        retryable=False,
        code=AUTH_FAILED,
    )
