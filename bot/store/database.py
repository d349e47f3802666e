"""Engines for the two supported databases, set up so several processes can share one.

SQLite: WAL (readers never block the writer), a busy timeout (writers queue instead of
failing), and every write transaction starts with ``BEGIN IMMEDIATE`` so it holds the
write lock from its first statement — otherwise two processes can both read the chain
head and then collide. PostgreSQL: writers lock rows with ``SELECT … FOR UPDATE``.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError

from bot.core.errors import ConfigError

BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another process before giving up."""

WRITE = "irbot_write"
"""Execution option marking an engine whose transactions take the write lock up front."""


def normalize_url(url: str) -> URL:
    """Accept what users write (``postgresql://``, ``postgres://``, ``sqlite:///x``) and
    pick the driver irbot ships (psycopg 3)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"not a database URL: {url.partition('://')[0]}://…") from exc
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and parsed.get_driver_name() in ("pysqlite", ""):
        return parsed.set(drivername="sqlite+pysqlite")
    raise ConfigError(
        f"unsupported database {parsed.drivername!r}: use sqlite:///path or postgresql://…"
    )


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get their directory created."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, pool_pre_ping=True)
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def writer(engine: Engine) -> Engine:
    """The same pool, but transactions that will write (SQLite: ``BEGIN IMMEDIATE``)."""
    return engine.execution_options(**{WRITE: True})


def _sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is deferred).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _enable_wal(cursor)
        # WAL + NORMAL: a commit survives the process being killed; only an OS crash can
        # drop the last commits (the file stays consistent). FULL cost 3 ms per event,
        # half of a step's budget (bench/engine_overhead.py).
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    """Switch a new file to WAL (it stays so). The switch needs the file to itself and
    SQLite does not wait for that, so when processes race on a new file, retry."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        else:
            if mode in ("wal", "memory"):
                return
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError(f"cannot switch to WAL; journal mode is {mode}")
        time.sleep(0.02)


def _sqlite_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
