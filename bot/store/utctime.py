"""A column type that only accepts and only returns UTC-aware datetimes.

PostgreSQL has ``timestamptz``; SQLite has no time type at all, so there the value is
stored as fixed-width ISO text ending in ``Z`` (which also sorts correctly).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from bot.core.timeline import iso_utc
from bot.store.records import require_utc


class UTCDateTime(TypeDecorator[datetime]):
    """Aware in, aware out; a naive value is a bug and raises ValueError."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        aware = require_utc("time", value)
        if aware is None or dialect.name != "sqlite":
            return aware
        return iso_utc(aware)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"stored time {value!r} carries no time zone")
        return value.astimezone(UTC)
