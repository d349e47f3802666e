"""Redaction: secret values never reach a log line, the timeline or a message.

Two nets: key names that always hold secrets (matched exactly, so ``secret_id`` —
a name, not a secret — stays visible), and value patterns of well-known credential
formats. A run may add exact values it knows to be secret (the redaction set).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "[REDACTED]"

SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "secret_string",
        "secretstring",
        "secret_value",
        "secret_access_key",
        "aws_secret_access_key",
        "token",
        "access_token",
        "refresh_token",
        "api_key",
        "apikey",
        "private_key",
        "client_secret",
        "authorization",
        "signing_secret",
        "routing_key",
        "session_token",
        "aws_session_token",
    }
)

PATTERNS = (
    re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,}"),
    re.compile(r"xapp-[A-Za-z0-9-]{10,}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(r"(?i)(?<=bearer )[A-Za-z0-9._~+/=-]{16,}"),
    re.compile(r"(?i)(?<=aws_secret_access_key[=:] )[A-Za-z0-9/+=]{40}"),
    re.compile(r"(?i)(?<=aws_secret_access_key=)[A-Za-z0-9/+=]{40}"),
    re.compile(r"(?i)(?<=postgres://)[^:/@\s]+:[^@\s]+(?=@)"),
    re.compile(r"(?i)(?<=postgresql://)[^:/@\s]+:[^@\s]+(?=@)"),
    re.compile(r"(?i)(?<=redis://)[^@\s]*:[^@\s]+(?=@)"),
)


class Redactor:
    """Replaces secrets in nested data; ``extra`` holds exact values known to be secret."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self.extra = frozenset(v for v in extra if v and len(v) >= 4)

    def with_values(self, values: Iterable[str]) -> Redactor:
        return Redactor(self.extra | set(values))

    def text(self, value: str) -> str:
        for secret in sorted(self.extra, key=len, reverse=True):
            value = value.replace(secret, MASK)
        for pattern in PATTERNS:
            value = pattern.sub(MASK, value)
        return value

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                k: MASK if is_secret_key(k) and v not in (None, "") else self(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        return value


def is_secret_key(key: object) -> bool:
    """Whether values under this key name are always secret (``password``, ``token`` …)."""
    return isinstance(key, str) and key.lower().replace("-", "_") in SECRET_KEYS
