"""Schema migrations, run from code: ``irbot`` ships no alembic.ini and users never
call alembic themselves. Safe to call at every start, from several processes at once."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

from bot.store.database import writer

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

VERSION_TABLE = "irbot_alembic_version"
"""Not alembic's default name: DBOS or the user's own tables may share the database."""

LOCK_KEY = int.from_bytes(b"irbotmig", "big")
"""PostgreSQL advisory lock held while migrating, so concurrent starts queue up."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    return config


def migrate(engine: Engine) -> None:
    """Upgrade to the newest schema in one transaction (both databases have
    transactional DDL); a second caller waits, then finds nothing to do."""
    config = alembic_config()
    with writer(engine).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
