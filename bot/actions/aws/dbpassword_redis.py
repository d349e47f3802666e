"""Redis: change a user's password with ``ACL SETUSER`` or ``CONFIG SET requirepass``.

A named user (``username`` other than ``default``) gets ``ACL SETUSER <user> resetpass
#<sha256>``: its old passwords are dropped and only the hash of the new one travels. The
default user gets ``CONFIG SET requirepass``. Redis keeps both in memory only, so the
change is then saved where the server keeps its configuration (``ACL SAVE`` with an ACL
file, else ``CONFIG REWRITE`` with a config file); if it has neither, or the user may
not save, a warning says the change will not survive a restart. Optional secret fields:
``port`` (6379), ``ssl`` (true for TLS). ElastiCache disables these commands: use its
own rotation there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.actions.aws.dbpassword import CONNECT_TIMEOUT, refused, unreachable
from bot.actions.aws.rotation_values import DbSecret
from bot.engine.actions import ActionError

SYSTEM = "Redis"


def default_user(db: DbSecret) -> bool:
    return db.username in (None, "default")


@contextmanager
def login(db: DbSecret) -> Iterator[redis.Redis]:
    """A client authenticated as ``db``'s user; AUTH_FAILED if the server refuses it."""
    client = redis.Redis(
        host=db.host,
        port=db.port,
        username=None if default_user(db) else db.username,
        password=db.password,
        ssl=db.option("ssl") is True,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=CONNECT_TIMEOUT,
        retry=Retry(NoBackoff(), 0),  # the engine retries, with backoff and a timeline entry
    )
    try:
        try:
            client.ping()
        except redis.AuthenticationError as exc:
            raise refused(db, SYSTEM) from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise unreachable(db, SYSTEM, "connection refused or timed out") from exc
        except redis.RedisError as exc:
            raise _command_error(db, "log in", exc) from exc
        yield client
    finally:
        client.close()


def change_password(session: redis.Redis, pending: DbSecret, log: Any) -> None:
    """Make ``pending.password`` the user's only password, then try to persist it."""
    if default_user(pending):
        doing = "CONFIG SET requirepass"
        command: tuple[str, ...] = ("CONFIG", "SET", "requirepass", pending.password)
    else:
        doing = "ACL SETUSER"
        digest = hashlib.sha256(pending.password.encode()).hexdigest()
        command = ("ACL", "SETUSER", pending.username or "", "resetpass", f"#{digest}")
    try:
        _command(session, *command)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise unreachable(pending, SYSTEM, f"connection lost during {doing}") from exc
    except redis.RedisError as exc:
        raise _command_error(pending, doing, exc) from exc
    log.info("rotation.password_changed", system=SYSTEM, endpoint=pending.endpoint, how=doing)
    _persist(session, pending, log)


def check(session: redis.Redis, db: DbSecret) -> None:
    """The session is ``db``'s user: ``ACL WHOAMI`` (the default user passed login's PING)."""
    try:
        who = session.acl_whoami() if not default_user(db) else None
    except redis.RedisError as exc:
        raise _command_error(db, "ACL WHOAMI", exc) from exc
    if who is not None and _text(who) != db.username:
        raise ActionError(
            f"{SYSTEM} logged {db.who} in as another user; check the secret's username",
            code="database",
        )


def _persist(session: redis.Redis, db: DbSecret, log: Any) -> None:
    """Save the change where the server keeps its configuration (best effort)."""
    try:
        # The sync client answers with dicts; redis-py's types also allow Awaitables.
        settings = cast("dict[str, Any]", session.config_get("aclfile"))
        server = cast("dict[str, Any]", session.info("server"))
        aclfile, config_file = _text(settings.get("aclfile")), _text(server.get("config_file"))
        if aclfile:
            session.acl_save()
        elif config_file:
            session.config_rewrite()
        else:
            log.warning(
                "rotation.redis_not_persisted",
                endpoint=db.endpoint,
                reason="the server has neither an ACL file nor a config file",
                hint="set the new password where this server's start-up configuration lives",
            )
            return
    except redis.RedisError as exc:
        log.warning(
            "rotation.redis_not_persisted",
            endpoint=db.endpoint,
            reason=f"saving the configuration failed ({type(exc).__name__})",
            hint="run ACL SAVE or CONFIG REWRITE as an admin, or the change is lost on restart",
        )
        return
    log.info(
        "rotation.redis_persisted",
        endpoint=db.endpoint,
        how="ACL SAVE" if aclfile else "CONFIG REWRITE",
    )


def _command_error(db: DbSecret, doing: str, exc: redis.RedisError) -> ActionError:
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return ActionError(
            f"{SYSTEM} does not let {db.who} run {doing}: grant it that command "
            "(for ACL SETUSER: +acl|setuser) or rotate with a rotation Lambda",
            code="denied",
        )
    return ActionError(
        f"{SYSTEM} at {db.endpoint} refused {doing} for user {db.username or 'default'} "
        f"({type(exc).__name__})",
        code="database",
    )


def _command(session: redis.Redis, *args: str) -> Any:
    """``execute_command``, which redis-py leaves untyped."""
    run: Any = session.execute_command
    return run(*args)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
