"""Process-wide engine state: settings, the timeline store, the action registry, DBOS.

DBOS steps are module-level functions, so they find their collaborators here. A
process that launches DBOS becomes a worker: it resumes pending runs and serves the
fan-out queues. Commands that only submit, vote or cancel use :mod:`bot.engine.client`
instead and never launch DBOS.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.core.config import Config, load_config
from bot.core.redaction import Redactor
from bot.engine import liveness
from bot.engine.actions import Registry, default_registry
from bot.engine.liveness import Keeper
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.store import TimelineStore

APP_NAME = "irbot"
ENGINE_VERSION = "irbot-engine-1"
"""DBOS only resumes workflows recorded under the running application version. The
workflow code interprets pinned playbooks, so one fixed version lets a redeployed
irbot resume the runs of the previous one. Bump it only with a migration plan."""

RUN_QUEUE = "irbot-runs"
"""Runs submitted by `irbot run` (without --wait) and by Slack wait here for a worker."""

QUEUE_POLL_SECONDS = 0.05


@dataclass
class Runtime:
    settings: Settings
    store: TimelineStore
    registry: Registry = field(default_factory=default_registry)
    redactor: Redactor = field(default_factory=Redactor)
    keeper: Keeper | None = None
    """Holds this worker's executor lease (bot.engine.liveness)."""

    def config(self) -> Config:
        """irbot.yaml read now: group membership counts at the time of a decision."""
        return load_config(self.settings.config_path)


class _Holder:
    runtime: Runtime | None = None


def current() -> Runtime:
    if _Holder.runtime is None:
        raise RuntimeError("the irbot engine is not started in this process")
    return _Holder.runtime


def open_store(settings: Settings) -> TimelineStore:
    from bot.store import TimelineStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = TimelineStore(settings.store_url())
    store.migrate()
    return store


async def launch(
    settings: Settings,
    *,
    registry: Registry | None = None,
    concurrency_values: Iterable[int] = (),
    store: TimelineStore | None = None,
) -> Runtime:
    """Start DBOS in this process (idempotent) and make it a worker.

    Must run inside the event loop that will execute the workflows. ``store``: an open
    timeline store to share (the server's); by default one is opened.
    """
    if _Holder.runtime is not None:
        return _Holder.runtime
    from dbos import DBOS, DBOSConfig

    from bot.engine import fanout, workflow

    del workflow  # imported for its side effect: DBOS knows irbot's workflows before launch

    store = store or open_store(settings)
    runtime = Runtime(settings, store, registry or default_registry())
    lease = liveness.take(store, settings.executor_id)
    config: DBOSConfig = {
        "name": APP_NAME,
        "system_database_url": settings.dbos_url(),
        "application_version": ENGINE_VERSION,
        "executor_id": lease.executor_id,
        "log_level": "ERROR",
        "notification_listener_polling_interval_sec": 0.05,
    }
    if not settings.uses_postgres:
        config["system_database_engine"] = sqlite_engine(settings.dbos_url())
    DBOS(config=config)
    DBOS.launch()  # resumes the runs left pending under this lease's id
    _Holder.runtime = runtime
    runtime.keeper = liveness.Keeper(store, lease, _recover)
    runtime.keeper.start()
    await DBOS.register_queue_async(RUN_QUEUE, polling_interval_sec=QUEUE_POLL_SECONDS)
    for value in {1, *concurrency_values}:
        await fanout.ensure_fanout_queue(value, None)
    return runtime


def _recover(executor_id: str) -> int:
    """Resume the runs a dead worker left pending; how many."""
    from dbos import DBOS

    # DBOS 3.4 keeps this classmethod private (Conductor normally calls it); it
    # re-enqueues the workflows, so exactly one worker dequeues each.
    return len(DBOS._recover_pending_workflows([executor_id]))


def sqlite_engine(url: str) -> Any:
    """DBOS's SQLite engine, plus WAL and ``synchronous=NORMAL``.

    DBOS's default SQLite settings fsync every commit in rollback-journal mode, which
    made a step cost 3 ms and a fan-out item 18 ms (bench/). In WAL mode with
    synchronous=NORMAL a commit survives the process being killed (what crash safety
    needs); only an OS crash or power loss can drop the last commits, and the file
    stays consistent. Teams that need more run on PostgreSQL.
    """
    import sqlalchemy as sa

    engine = sa.create_engine(url, connect_args={"check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = "IMMEDIATE"  # as DBOS does: serialize writers
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        dbapi_conn.execute("PRAGMA foreign_keys=ON")
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    return engine


def shutdown() -> None:
    """Stop DBOS and forget the runtime (tests start and stop engines repeatedly)."""
    if _Holder.runtime is None:
        return
    from dbos import DBOS

    from bot.engine import fanout

    runtime = _Holder.runtime
    if runtime.keeper is not None:
        runtime.keeper.stop()
    DBOS.destroy(destroy_registry=False)
    fanout.forget_queues()
    if runtime.keeper is not None:
        runtime.keeper.release()  # after DBOS: nothing of ours runs once the lease is free
    runtime.store.close()
    _Holder.runtime = None
