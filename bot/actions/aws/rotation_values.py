"""What a rotated secret's new value is: the createSecret step, without any I/O.

A secret's current value decides its *kind*, and the kind decides the new value:

- **Database secret** — a JSON object with ``"engine": "postgres"`` (also ``postgresql``,
  ``aurora-postgresql``) or ``"redis"``, the AWS convention (``host``, ``port``,
  ``username``, ``password``, ``dbname``). The new value is the same object with a new
  40-character ``password`` (letters and digits: safe in URLs, DSNs and shells); every
  other field is kept. Another engine (mysql, ...) is refused: changing the secret without
  changing the database would lock its users out — that needs a rotation Lambda.
- **Plain string** — a new random string of the same shape: lowercase hex stays lowercase
  hex (same for uppercase), padded base64 stays base64 of the same byte length, anything
  else keeps its length and its character classes (lowercase, uppercase, digits and
  exactly the symbols the old value used), with at least one character of each class.
- **JSON object** (no engine) — the string values of keys that name a secret (``password``,
  ``api_key``, ``*_token``, ``*_secret``, ... see :func:`holds_secret`) are regenerated
  like plain strings; other keys are kept.

Values that only their issuer can mint — URLs and connection strings, Slack, GitHub and
AWS credentials, PEM keys and anything with spaces or line breaks — are refused with a
pointer to ``aws.secretsmanager.put_value``, as is an object with nothing to regenerate.
All errors name fields and kinds, never values.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bot.core.redaction import SECRET_KEYS
from bot.engine.actions import ActionError

Kind = Literal["postgres", "redis", "generic"]

ENGINES: Mapping[str, Kind] = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "aurora-postgresql": "postgres",
    "redis": "redis",
}
DEFAULT_PORTS: Mapping[str, int] = {"postgres": 5432, "redis": 6379}
REQUIRED: Mapping[str, tuple[str, ...]] = {
    "postgres": ("host", "username", "password"),
    "redis": ("host", "password"),
}
PASSWORD_LENGTH = 40

_SECRET_SUFFIXES = ("password", "passwd", "secret", "token", "api_key", "apikey", "private_key")
_ISSUED_BY_AWS = frozenset(
    {"aws_secret_access_key", "secret_access_key", "aws_session_token", "session_token"}
)
_ISSUED_ELSEWHERE = (
    (re.compile(r"://"), "a URL or connection string"),
    (re.compile(r"^xox[abposr]-|^xapp-"), "a Slack token"),
    (re.compile(r"^gh[pousr]_|^github_pat_"), "a GitHub token"),
    (re.compile(r"^(AKIA|ASIA)[A-Z0-9]{16}$"), "an AWS access key id"),
)
_PUT_VALUE_HINT = (
    "rotate it where it is issued and store the new value with aws.secretsmanager.put_value"
)


def input_error(message: str) -> ActionError:
    """A non-retryable error about the secret's content (the caller must fix it)."""
    return ActionError(message, retryable=False, code="input")


@dataclass(frozen=True)
class DbSecret:
    """A database secret in the AWS convention; ``fields`` keeps every original key."""

    kind: Kind
    host: str
    port: int
    username: str | None
    password: str
    dbname: str | None
    fields: Mapping[str, Any]

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def who(self) -> str:
        """``user X at host:port`` — for messages; never the password."""
        return f"user {self.username or 'default'} at {self.endpoint}"

    def option(self, name: str) -> Any:
        return self.fields.get(name)

    def with_password(self, password: str) -> str:
        """The secret's JSON with only ``password`` replaced."""
        return json.dumps({**self.fields, "password": password})


def parse_object(value: str) -> dict[str, Any] | None:
    """The JSON object a secret string holds, or None if it is not one."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def kind_of(value: str, secret: str) -> Kind:
    """postgres | redis | generic, from the current value; refuses unknown engines."""
    obj = parse_object(value)
    if obj is None or "engine" not in obj:
        return "generic"
    engine = obj["engine"]
    kind = ENGINES.get(engine.lower()) if isinstance(engine, str) else None
    if kind is None:
        shown = engine if isinstance(engine, str) and len(engine) <= 40 else type(engine).__name__
        raise input_error(
            f"secret {secret} is a database secret for engine {shown!r}; irbot rotates "
            "postgres and redis passwords itself: configure a rotation Lambda for this engine"
        )
    return kind


def db_secret(value: str, kind: Kind, secret: str, version: str) -> DbSecret:
    """Parse a postgres/redis secret; a missing or malformed field is a clear error."""
    obj = parse_object(value) or {}
    missing = [
        name for name in REQUIRED[kind] if not isinstance(obj.get(name), str) or not obj[name]
    ]
    if missing:
        raise input_error(
            f"secret {secret} (engine {kind}, version {version}) lacks the fields its engine "
            f"needs: {', '.join(missing)}; add them to the secret's JSON"
        )
    port = _port(obj.get("port", DEFAULT_PORTS[kind]))
    if port is None:
        raise input_error(f"secret {secret} (engine {kind}) has an invalid port: use 1-65535")
    username = obj.get("username")
    dbname = obj.get("dbname")
    return DbSecret(
        kind=kind,
        host=obj["host"],
        port=port,
        username=username if isinstance(username, str) and username else None,
        password=obj["password"],
        dbname=dbname if isinstance(dbname, str) and dbname else None,
        fields=obj,
    )


def _port(value: Any) -> int | None:
    """A port given as a number or a string of digits (AWS writes both), or None."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536:
        return value
    return None


def new_password(length: int = PASSWORD_LENGTH) -> str:
    """Letters and digits, at least one of each class."""
    return _random_shape([string.ascii_lowercase, string.ascii_uppercase, string.digits], length)


def holds_secret(key: str) -> bool:
    """Whether a JSON key names a secret value that a generic rotation regenerates."""
    name = key.lower().replace("-", "_")
    return name in SECRET_KEYS or name.endswith(_SECRET_SUFFIXES)


def regenerate(value: str, secret: str) -> str:
    """The new value of a generic secret (see the module docstring)."""
    obj = parse_object(value)
    if obj is not None:
        return _regenerate_object(obj, secret)
    if value.lstrip().startswith("["):
        raise input_error(
            f"secret {secret} holds a JSON array; irbot regenerates plain strings and "
            f"JSON objects: {_PUT_VALUE_HINT}"
        )
    return regenerate_string(value, f"secret {secret}")


def _regenerate_object(obj: dict[str, Any], secret: str) -> str:
    issued = sorted(k for k in obj if k.lower().replace("-", "_") in _ISSUED_BY_AWS)
    if issued:
        raise input_error(
            f"secret {secret} holds AWS credentials ({', '.join(issued)}), which only IAM "
            "can issue: use aws.iam.create_access_key, then aws.secretsmanager.put_value"
        )
    targets = [k for k, v in obj.items() if holds_secret(k) and isinstance(v, str) and v]
    if not targets:
        keys = ", ".join(sorted(obj)) or "none"
        raise input_error(
            f"secret {secret} is a JSON object with nothing to regenerate (keys: {keys}); "
            "irbot regenerates non-empty string values of keys such as password, api_key, "
            f"*_token or *_secret — or {_PUT_VALUE_HINT}"
        )
    new = dict(obj)
    for key in targets:
        new[key] = regenerate_string(obj[key], f"key {key!r} of secret {secret}")
    return json.dumps(new)


def regenerate_string(value: str, what: str) -> str:
    """A new random string of the same shape as ``value``; ``what`` names it in errors."""
    if not value or any(not 33 <= ord(ch) <= 126 for ch in value):
        problem = "is empty" if not value else "has spaces, line breaks or non-ASCII characters"
        raise input_error(
            f"{what} {problem}, so it is not a random token irbot can regenerate: {_PUT_VALUE_HINT}"
        )
    for pattern, description in _ISSUED_ELSEWHERE:
        if pattern.search(value):
            raise input_error(f"{what} looks like {description}: {_PUT_VALUE_HINT}")
    while True:
        new = _same_shape(value)
        if new != value:  # only conceivable for very short values
            return new


def _same_shape(value: str) -> str:
    if re.fullmatch(r"[0-9a-f]+", value):
        return _random_shape(["0123456789abcdef"], len(value), each_class=False)
    if re.fullmatch(r"[0-9A-F]+", value):
        return _random_shape(["0123456789ABCDEF"], len(value), each_class=False)
    padded = _base64_length(value)
    if padded is not None:
        raw = secrets.token_bytes(padded)
        encoded = base64.b64encode(raw)
        if "-" in value or "_" in value:
            encoded = base64.urlsafe_b64encode(raw)
        return encoded.decode()
    symbols = "".join(sorted({ch for ch in value if ch in string.punctuation}))
    classes = [
        c
        for c in (string.ascii_lowercase, string.ascii_uppercase, string.digits, symbols)
        if c and any(ch in c for ch in value)
    ]
    return _random_shape(classes, len(value))


def _base64_length(value: str) -> int | None:
    """The decoded length of a padded base64 value, or None if it is not one."""
    if len(value) % 4 or not re.fullmatch(r"[A-Za-z0-9+/_-]+={1,2}", value):
        return None
    try:
        return len(base64.urlsafe_b64decode(value.replace("+", "-").replace("/", "_")))
    except (binascii.Error, ValueError):
        return None


def _random_shape(classes: list[str], length: int, *, each_class: bool = True) -> str:
    alphabet = "".join(classes)
    chars = [secrets.choice(c) for c in classes] if each_class and length >= len(classes) else []
    chars += [secrets.choice(alphabet) for _ in range(length - len(chars))]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)
