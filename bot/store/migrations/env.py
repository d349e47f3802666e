"""Alembic environment: only the online mode, on the connection ``migrate()`` passes."""

from __future__ import annotations

from alembic import context

from bot.store.migrate import VERSION_TABLE
from bot.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run irbot migrations through bot.store.migrate.migrate(engine)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
