"""Secret references: how secret material moves between steps without being a value.

DBOS checkpoints step outputs, the timeline stores them and Slack shows them, so a step
that produces a secret (a new IAM key, a value a person handed over) stores it in AWS
Secrets Manager and outputs only a reference to that exact version. The action that
needs the value resolves the reference itself, inside its own call.

Format: ``sm:<version-id>:<secret-id>``. The version id comes first because secret ids
(ARNs) contain colons; version ids never do.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from bot.core.errors import UsageError

SCHEME = "sm"
_VERSION = re.compile(r"^[A-Za-z0-9-]{32,64}$")
_SECRET_ID = re.compile(r"^[A-Za-z0-9/_+=.@:-]{1,2048}$")

_TOKEN_NAMESPACE = uuid.UUID("6f1d2c1e-3b7a-4c55-9d7e-2a9e1b0c4f11")


def client_token(idempotency_key: str) -> str:
    """A Secrets Manager ``ClientRequestToken`` (32-64 characters) for an idempotency key.

    Deterministic, so a retry or a resumed run sends the same token and AWS dedupes it.
    """
    return str(uuid.uuid5(_TOKEN_NAMESPACE, idempotency_key))


@dataclass(frozen=True)
class SecretRef:
    """One version of one Secrets Manager secret."""

    secret_id: str
    version_id: str

    def __str__(self) -> str:
        return f"{SCHEME}:{self.version_id}:{self.secret_id}"

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        """Parse ``sm:<version>:<secret-id>``; a UsageError says what is wrong."""
        scheme, _, rest = text.partition(":")
        version, _, secret_id = rest.partition(":")
        if scheme != SCHEME or not _VERSION.match(version) or not _SECRET_ID.match(secret_id):
            shown = text if len(text) <= 80 else text[:77] + "..."
            raise UsageError(
                f"{shown!r} is not a secret reference (expected sm:<version-id>:<secret-id>, "
                "as output by create_access_key or a manual task's secret_ref)"
            )
        return cls(secret_id=secret_id, version_id=version)


def handover_name(prefix: str, run_id: str, step_id: str, item_index: int | None = None) -> str:
    """Where a secret produced by a step is kept: ``<prefix><run>/<step>[/<item>]``."""
    suffix = "" if item_index is None else f"/{item_index}"
    return f"{prefix.rstrip('/')}/{run_id}/{step_id}{suffix}"
