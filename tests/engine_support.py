"""Helpers to run the real engine (DBOS + store) in tests, in-process or as `irbot` processes.

``Harness`` points the environment at a fresh directory (playbooks, irbot.yaml, data dir)
and, for PostgreSQL, at a fresh database; ``start()`` launches DBOS in the running event
loop, exactly as ``irbot worker`` does.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.core import inputs as input_rules
from bot.core import library
from bot.core.config import load_config
from bot.engine import client, runtime
from bot.settings import Settings, load_settings
from bot.store import RunRecord
from bot.store.records import RUN_FINISHED

IRBOT = str(Path(sys.executable).parent / "irbot")
GROUPS = {"sre": ["U01", "U02", "U03"], "security": ["U04"], "breakglass": ["U09"]}
FINISHED = RUN_FINISHED | {"rejected"}


def config_text(playbooks: Iterable[str], groups: Mapping[str, list[str]] = GROUPS) -> str:
    lines = ["slack: {channel: C0INCIDENTS}", "groups:"]
    lines += [f"  {name}: [{', '.join(members)}]" for name, members in groups.items()]
    lines.append("playbooks:")
    lines += [f"  {name}: {{start: [sre, security]}}" for name in playbooks]
    return "\n".join(lines) + "\n"


@dataclass
class Harness:
    """One isolated irbot installation: files, environment, and (optionally) a worker."""

    root: Path
    database_url: str | None
    monkeypatch: pytest.MonkeyPatch
    playbooks: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        (self.root / "playbooks").mkdir(parents=True, exist_ok=True)
        self.env = {
            "IRBOT_DATA_DIR": str(self.root / "data"),
            "IRBOT_CONFIG": str(self.root / "irbot.yaml"),
            "IRBOT_PLAYBOOKS": str(self.root / "playbooks"),
            "IRBOT_LOCAL_APPROVALS": "1",
        }
        if self.database_url and self.database_url.startswith("postgresql"):
            self.env["IRBOT_DATABASE_URL"] = self.database_url
        for key, value in self.env.items():
            self.monkeypatch.setenv(key, value)
        if "IRBOT_DATABASE_URL" not in self.env:
            self.monkeypatch.delenv("IRBOT_DATABASE_URL", raising=False)
        self.write_config()

    # ------------------------------------------------------------------ files

    def add_playbook(self, text: str) -> str:
        text = textwrap.dedent(text).lstrip("\n")
        name = text.split("name:", 1)[1].split()[0]
        self.playbooks[name] = text
        (self.root / "playbooks" / f"{name}.yaml").write_text(text)
        self.write_config()
        return name

    def write_config(self, groups: Mapping[str, list[str]] = GROUPS) -> None:
        (self.root / "irbot.yaml").write_text(config_text(self.playbooks, groups))

    @property
    def settings(self) -> Settings:
        return load_settings(self.env)

    # ------------------------------------------------------------------ engine

    async def start(self) -> runtime.Runtime:
        return await runtime.launch(self.settings)

    def stop(self) -> None:
        runtime.shutdown()

    @property
    def store(self) -> Any:
        return runtime.current().store

    def submit(self, name: str, user: str = "U01", **raw: Any) -> str:
        """Start playbook ``name`` as ``user`` with inputs given as strings or values."""
        lib = library.read([self.root / "playbooks"])
        loaded = lib.get(name)
        values = input_rules.resolve(raw, loaded.playbook)
        running = runtime._Holder.runtime is not None
        store = runtime.current().store if running else runtime.open_store(self.settings)
        try:
            done = client.submit(
                self.settings,
                store,
                loaded,
                values,
                requester=user,
                library=lib.loaded(),
                config=load_config(self.settings.config_path),
            )
        finally:
            if not running:
                store.close()
        return done.run_id

    async def wait_for(
        self, run_id: str, statuses: Iterable[str] = FINISHED, timeout: float = 30.0
    ) -> RunRecord:
        """Poll the store until the run reaches one of ``statuses``."""
        wanted = set(statuses)
        deadline = time.monotonic() + timeout
        while True:
            run = self.store.get_run(run_id)
            if run.status in wanted:
                return run  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                kinds = [e.kind for e in self.store.events(run_id=run_id)]
                raise AssertionError(f"run {run_id} stuck in {run.status}: {kinds}")
            await asyncio.sleep(0.05)

    async def vote(self, run_id: str, user: str, **kw: Any) -> dict[str, Any] | None:
        """Vote from a thread, as `irbot approve` does from its own process."""
        kw.setdefault("decision", "approve")
        result = await asyncio.to_thread(
            client.vote, self.settings, self.store, run_id, user=user, **kw
        )
        return result.answer

    async def task(self, run_id: str, user: str, **kw: Any) -> dict[str, Any] | None:
        """Answer a manual task from a thread, as `irbot task done|failed` does."""
        kw.setdefault("status", "done")
        result = await asyncio.to_thread(
            client.complete_task, self.settings, self.store, run_id, user=user, **kw
        )
        return result.answer

    def kinds(self, run_id: str) -> list[str]:
        return [e.kind for e in self.store.events(run_id=run_id)]

    # ------------------------------------------------------------------ processes

    def irbot(
        self, *args: str, timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `irbot` command with this harness's environment."""
        return subprocess.run(
            [IRBOT, *args],
            env={**os.environ, **self.env},
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def spawn_worker(self, **extra_env: str) -> subprocess.Popen[str]:
        """Start `irbot worker` as a separate process (kill it with .kill() for -9)."""
        return subprocess.Popen(
            [IRBOT, "worker"],
            env={**os.environ, **self.env, **extra_env},
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


GATED = """
name: gated
version: 1
inputs:
  target: {type: string, default: db-1}
steps:
  - id: hello
    action: test.noop
    with: {msg: "hello {{ run.requester }}"}
  - id: gate
    approval: {from: [group:sre], ttl: 1h}
  - id: boom
    action: test.destructive
    with: {target: "{{ inputs.target }}"}
"""
"""A gate between a harmless step and a destructive one (tests of the CLI and pages)."""


def drop_append_only_triggers(engine: sa.Engine) -> None:
    """Migration 0001's triggers refuse UPDATE and DELETE on events; a tamperer (the
    tests that prove tampering is detected) removes them first."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("DROP TRIGGER events_no_update_or_delete ON events"))
        else:
            conn.execute(sa.text("DROP TRIGGER events_no_update"))
            conn.execute(sa.text("DROP TRIGGER events_no_delete"))
