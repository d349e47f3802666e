"""Process settings from the environment, checked once at start-up.

Issue 5 extends this with the Slack, PagerDuty and webhook variables; everything a
command needs is read here so that a bad value gives one clear message naming the
variable instead of a traceback deep inside a command.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.core.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    """IRBOT_DATA_DIR: where the embedded SQLite databases live (default ./.irbot)."""
    database_url: str | None
    """IRBOT_DATABASE_URL: postgresql://… puts DBOS and the timeline on PostgreSQL."""
    config_path: Path
    """IRBOT_CONFIG: irbot.yaml (default ./irbot.yaml)."""
    playbooks_dir: Path
    """IRBOT_PLAYBOOKS: the playbooks directory (default ./playbooks)."""
    local_approvals: bool
    """IRBOT_LOCAL_APPROVALS=1 lets `irbot approve` vote (local use and tests only)."""
    executor_id: str = "local"
    """IRBOT_EXECUTOR_ID: the base of this worker's DBOS executor id; a second live
    worker on the same database gets ``<base>-2`` and so on (bot.store.executors)."""

    @property
    def uses_postgres(self) -> bool:
        return self.database_url is not None

    def store_url(self) -> str:
        """SQLAlchemy URL of the timeline store."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'irbot.sqlite'}"

    def dbos_url(self) -> str:
        """DBOS system database URL (its own SQLite file, or the shared PostgreSQL)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'dbos.sqlite'}"


_EXECUTOR_ID = re.compile(r"[A-Za-z0-9._-]{1,48}")

_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False, "": False}


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check the environment; raise ConfigError naming the bad variable."""
    env = os.environ if env is None else env
    url = env.get("IRBOT_DATABASE_URL") or None
    if url is not None and not url.startswith(("postgresql://", "postgresql+psycopg://")):
        raise ConfigError(
            "IRBOT_DATABASE_URL must be a postgresql:// URL (leave it unset for the embedded "
            f"SQLite default), got {url.split('://')[0]}://…"
        )
    flag = env.get("IRBOT_LOCAL_APPROVALS", "").strip().lower()
    if flag not in _FLAGS:
        raise ConfigError(f"IRBOT_LOCAL_APPROVALS must be 1 or 0, got {flag!r}")
    executor = env.get("IRBOT_EXECUTOR_ID") or "local"
    if not _EXECUTOR_ID.fullmatch(executor):
        raise ConfigError(
            "IRBOT_EXECUTOR_ID must be 1-48 letters, digits, '.', '_' or '-', "
            f"got {executor[:60]!r}"
        )
    return Settings(
        data_dir=Path(env.get("IRBOT_DATA_DIR") or ".irbot"),
        database_url=url,
        config_path=Path(env.get("IRBOT_CONFIG") or "irbot.yaml"),
        playbooks_dir=Path(env.get("IRBOT_PLAYBOOKS") or "playbooks"),
        local_approvals=_FLAGS[flag],
        executor_id=executor,
    )
