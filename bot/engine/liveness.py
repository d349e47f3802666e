"""This worker's executor lease: taken at launch, renewed while it lives, given back
at a clean stop; and the runs of workers that died elsewhere, taken over.

See :mod:`bot.store.executors` for why each worker needs its own DBOS executor id.
The keeper is a thread, not a task on the engine's event loop: a busy loop must not
make a live worker look dead to its peers.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from bot.core.errors import IrbotError

if TYPE_CHECKING:
    from bot.store import TimelineStore

BEAT_SECONDS = 5.0
DEAD_AFTER = timedelta(seconds=30)
"""Six missed beats: a worker on another host silent this long has its runs taken over."""

log = structlog.get_logger("irbot.engine")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@dataclass(frozen=True)
class Lease:
    executor_id: str
    host: str
    pid: int


def take(store: TimelineStore, base: str) -> Lease:
    """Lease the first free executor id of ``base``, ``base-2`` … for this process."""
    host, pid = socket.gethostname(), os.getpid()
    executor_id = store.lease_executor(
        base,
        host=host,
        pid=pid,
        now=datetime.now(UTC),
        dead_after=DEAD_AFTER,
        pid_alive=pid_alive,
    )
    return Lease(executor_id, host, pid)


class Keeper:
    """Renews ``lease`` every ``interval`` and resumes the runs of dead executors
    through ``recover(executor_id) -> how many``. If the lease was taken over (this
    process looked dead), it stops the process with SIGTERM: two workers under one id
    is exactly what leases exist to prevent."""

    def __init__(
        self,
        store: TimelineStore,
        lease: Lease,
        recover: Callable[[str], int],
        *,
        interval: float = BEAT_SECONDS,
        dead_after: timedelta = DEAD_AFTER,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.lease = lease
        self.recover = recover
        self.interval = interval
        self.dead_after = dead_after
        self.on_lost = on_lost or (lambda: os.kill(os.getpid(), signal.SIGTERM))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="irbot-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (and taking over): call before DBOS stops, so no take-over is
        half done when it does."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def release(self) -> None:
        """Give the lease back once nothing of this process runs any more: the runs it
        left pending are then resumable at once by the next worker."""
        try:
            self.store.release_executor(
                self.lease.executor_id, host=self.lease.host, pid=self.lease.pid
            )
        except IrbotError as exc:
            log.warning("executor.release_failed", executor=self.lease.executor_id, error=str(exc))

    def _run(self) -> None:
        while True:
            try:
                if not self.tick():
                    log.error("executor.lease_lost", executor=self.lease.executor_id)
                    self.on_lost()
                    return
            except IrbotError as exc:  # the database is away: try again next beat
                log.warning("executor.beat_failed", executor=self.lease.executor_id, error=str(exc))
            if self._stop.wait(self.interval):
                return

    def tick(self) -> bool:
        """One beat and one look for dead peers; False if the lease is lost."""
        now = datetime.now(UTC)
        lease = self.lease
        if not self.store.beat_executor(lease.executor_id, host=lease.host, pid=lease.pid, now=now):
            return False
        for executor_id, beat_at in self.store.stale_executors(now, self.dead_after):
            if executor_id == lease.executor_id or self._stop.is_set():
                continue
            # Resume first, then remove the lease: if resuming fails, the stale lease stays
            # and the next beat tries again. Two peers resuming the same id at once is
            # harmless (DBOS re-enqueues, and one worker dequeues each run).
            try:
                resumed = self.recover(executor_id)
            except Exception as exc:  # noqa: BLE001 - whatever DBOS raised, keep beating
                log.error("executor.take_over_failed", executor=executor_id, error=repr(exc))
                continue
            if self.store.reap_executor(executor_id, beat_at):
                log.info(
                    "executor.taken_over", executor=executor_id, runs=resumed, by=lease.executor_id
                )
        return True
