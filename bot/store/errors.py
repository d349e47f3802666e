"""What the store raises besides ``NotFoundError`` and ``ValueError`` (bad arguments)::

IrbotError
└── StoreError              the database failed or refused (SQLAlchemy errors mapped here)
    ├── EventIdCollision    two different events were given one id
    └── AppendOnlyViolation code tried to change or remove a stored event
"""

from __future__ import annotations

from bot.core.errors import IrbotError


class StoreError(IrbotError):
    """The timeline database is unreachable, locked for too long, or not migrated."""


class EventIdCollision(StoreError):
    """Two different events were given the same id: a bug in how the id was derived.
    Silently keeping only the first would drop a record from the audit trail."""


class AppendOnlyViolation(StoreError):
    """Code tried to change or remove a stored timeline event."""
