"""boto3 clients and the mapping of botocore errors to :class:`ActionError`.

The one place that knows botocore's exception types: actions call :func:`aws_call`
(or catch :data:`AWS_ERRORS` and use :func:`action_error`), so a throttled, failing or
missing resource reaches the engine as an ActionError that says whether a retry helps.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)

from bot.engine.actions import ActionError

T = TypeVar("T")

# botocore logs whole request bodies at DEBUG (PutSecretValue's SecretString included):
# whatever the root logger's level, irbot never lets those lines out.
logging.getLogger("botocore").setLevel(max(logging.getLogger("botocore").level, logging.INFO))

AWS_ERRORS = (ClientError, BotoCoreError)
"""Everything boto3 raises for a failed call."""

THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
"""botocore's own list of throttling codes (``botocore/retries/standard.py``)."""

NOT_FOUND = frozenset({"ResourceNotFoundException", "NoSuchEntity", "NoSuchEntityException"})
DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})


def _config() -> Config:
    # A few quick SDK retries absorb a blip; longer throttling bursts come back to the
    # engine as retryable errors, so its backoff applies and each retry is on the
    # timeline. AWS_MAX_ATTEMPTS / AWS_RETRY_MODE still override, as in every AWS tool.
    return Config(
        retries={"mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        user_agent_extra="irbot",
    )


@cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()


_CLIENT_LOCK = threading.Lock()
_CLIENTS: dict[tuple[str, str | None], Any] = {}


def client(service: str, region: str | None = None) -> Any:
    """A boto3 client, one per (service, region) and process.

    Clients are thread-safe once made and making one costs tens of milliseconds (it
    loads the service model), so they are shared; making one from the shared session
    is not thread-safe, and actions ask from worker threads: hence the lock.
    """
    key = (service, region)
    with _CLIENT_LOCK:
        made = _CLIENTS.get(key)
        if made is None:
            made = _session().client(service, region_name=region, config=_config())  # type: ignore[call-overload]
            _CLIENTS[key] = made
        return made


def credentials_client(
    service: str, access_key_id: str, secret_access_key: str, region: str | None = None
) -> Any:
    """A client that signs with the given key (to prove a new key works)."""
    session = boto3.session.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        region_name=region or _session().region_name,
    )
    return session.client(service, config=_config())  # type: ignore[call-overload]


def not_configured() -> str | None:
    """Why AWS actions cannot run in this process, or None."""
    session = _session()
    if session.get_credentials() is None:
        return (
            "no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)"
        )
    if not session.region_name:
        return "no AWS region found (set AWS_DEFAULT_REGION or a profile's region)"
    return None


def forget_clients() -> None:
    """Make the next calls build new clients from the session.

    A client copies the session's event hooks when it is made; code that registers a
    hook on the session (tests injecting faults) calls this so the hook applies."""
    with _CLIENT_LOCK:
        _CLIENTS.clear()


def reset() -> None:
    """Forget the cached session and clients (tests change the environment)."""
    with _CLIENT_LOCK:
        _CLIENTS.clear()
        _session.cache_clear()


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def action_error(exc: BaseException, doing: str) -> ActionError:
    """An ActionError for a failed AWS call; ``doing`` says what, naming the resource."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "") or code
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in THROTTLING:
            return ActionError(
                f"{doing}: AWS is throttling ({code})", retryable=True, code="throttled"
            )
        if code in NOT_FOUND:
            return ActionError(f"{doing}: not found ({message})", code="not_found")
        if code in DENIED:
            return ActionError(
                f"{doing}: access denied ({message}); grant irbot's AWS identity this permission",
                code="denied",
            )
        if status >= 500:
            return ActionError(
                f"{doing}: AWS error {status} {code}", retryable=True, code="aws_5xx"
            )
        return ActionError(f"{doing}: {code}: {message}", code="aws")
    if isinstance(exc, NoCredentialsError | NoRegionError):
        return ActionError(f"{doing}: {exc}", code="config")
    if isinstance(exc, ConnectionError | ReadTimeoutError):
        return ActionError(f"{doing}: cannot reach AWS ({exc})", retryable=True, code="network")
    return ActionError(f"{doing}: {type(exc).__name__}: {exc}", code="aws")


def aws_call(doing: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)``; botocore errors become ActionErrors naming ``doing``."""
    try:
        return fn(*args, **kwargs)
    except AWS_ERRORS as exc:
        raise action_error(exc, doing) from exc


def handover_prefix() -> str:
    """Secrets Manager name prefix for secrets steps hand over (IRBOT_HANDOVER_PREFIX)."""
    return os.environ.get("IRBOT_HANDOVER_PREFIX", "irbot/handover")
