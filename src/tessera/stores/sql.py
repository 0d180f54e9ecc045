"""The SQL database shared by every SQL store: engine creation, one MetaData, schema upkeep.

Each SQL store module declares its tables on :data:`metadata`; :func:`ensure_schema` creates
what is missing and records the schema version, so a new server or a new release migrates itself
on start. SQLite (the embedded default) runs in WAL mode so readers never wait for the writer.
"""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, event, inspect, select
from sqlalchemy import text as sql_text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, PoolResetState

from tessera.errors import ConfigError, StoreUnavailable

metadata = MetaData()


@contextmanager
def unavailable_on_error() -> Iterator[None]:
    """Turn driver and socket failures into :class:`StoreUnavailable` (fail closed, 503).

    Only the exception's type name reaches the message: driver errors can quote the URL, and so
    the password. Every SQL store wraps its database calls in this.
    """
    try:
        yield
    except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
        # sqlite3.Error: statements the session store runs on the driver itself (see
        # tessera.stores.sql_sessions) fail with the driver's own exceptions.
        raise StoreUnavailable("sql", type(exc).__name__) from exc


UNCOMMITTED = "tessera.uncommitted"
"""Set in a pooled SQLite connection's ``info`` while a write sent on the driver itself is not yet
committed: if the caller fails or is cancelled before its COMMIT, the connection is rolled back
when it goes back to the pool (see :func:`create_engine`)."""


T = TypeVar("T")


async def guarded(op: Callable[[], Awaitable[T]]) -> T:
    """``await op()`` under :func:`unavailable_on_error`."""
    with unavailable_on_error():
        return await op()


SCHEMA_VERSION = 3
"""Bump with a migration step in :data:`MIGRATIONS` whenever a table changes shape."""

schema_info = Table(
    "tessera_schema",
    metadata,
    Column("component", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
)


def _add_session_persistent(conn: Connection) -> None:
    """Version 1 -> 2: sessions remember whether their cookie is persistent.

    Skipped when the column is already there: ``create_all`` made the table in this very run
    (a version 1 database that lacked it), so the step is idempotent whatever came before.
    """
    columns = {c["name"] for c in inspect(conn).get_columns("tessera_sessions")}
    if "persistent" not in columns:
        # FALSE, not 0: PostgreSQL refuses an integer default for a boolean; SQLite >= 3.23
        # reads FALSE as 0.
        conn.execute(
            sql_text(
                "ALTER TABLE tessera_sessions ADD COLUMN persistent BOOLEAN NOT NULL DEFAULT FALSE"
            )
        )


def _index_revocations_by_instant(conn: Connection) -> None:
    """Version 2 -> 3: revocation marks indexed by their instant, for the servers' polls."""
    conn.execute(
        sql_text("CREATE INDEX IF NOT EXISTS ix_tessera_revocations_at ON tessera_revocations (at)")
    )


MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: _add_session_persistent,
    2: _index_revocations_by_instant,
}
"""Step ``n`` brings a database at schema version ``n`` to ``n + 1`` (inside one transaction)."""


def async_url(url: str) -> str:
    """Map plain ``sqlite:`` / ``postgresql:`` URLs to their asyncio drivers."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ConfigError(f"unsupported database URL scheme: {parsed.drivername}")


POSTGRES_MISSING = "postgresql:// URLs need asyncpg: pip install 'tessera[postgres]'"
"""The error instead of an ImportError when the ``postgres`` extra is not installed."""


def require_driver(url: str) -> None:
    """Raise :class:`ConfigError` naming the extra if ``url``'s driver is not installed.

    SQLite's driver is a dependency of Tessera; PostgreSQL's (asyncpg) is the ``postgres`` extra.
    """
    if make_url(async_url(url)).get_backend_name() == "postgresql":
        try:
            importlib.import_module("asyncpg")
        except ImportError:
            raise ConfigError(POSTGRES_MISSING) from None


POSTGRES_POOL_SIZE = 16
"""Connections a PostgreSQL engine keeps open. SQLAlchemy's default of 5 (plus 10 overflow
connections closed after each use) makes a server under load reconnect on most requests."""

POSTGRES_MAX_OVERFLOW = 16
"""Extra connections opened under bursts and closed when returned (32 at most per process)."""


POSTGRES_CONNECT_TIMEOUT = 5
"""Seconds to open a PostgreSQL connection (asyncpg waits 60 by default): a server that accepts
TCP and never answers makes the requests that need it fail with a 503 after this, not a minute."""

SQLITE_QUEUE_TIMEOUT = 30
"""Seconds a request waits for the SQLite connection before its store counts as unavailable."""


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout.

    PostgreSQL gets a pool sized for a busy server (:data:`POSTGRES_POOL_SIZE`) unless
    ``kwargs`` says otherwise. A driver that is not installed is a :class:`ConfigError`
    (:func:`require_driver`): SQLAlchemy imports it here, not at the first connection.
    """
    require_driver(url)
    async_target = async_url(url)
    target = make_url(async_target)
    if target.get_backend_name() == "postgresql":
        kwargs.setdefault("pool_size", POSTGRES_POOL_SIZE)
        kwargs.setdefault("max_overflow", POSTGRES_MAX_OVERFLOW)
        kwargs["connect_args"] = {
            "timeout": POSTGRES_CONNECT_TIMEOUT,
            **kwargs.get("connect_args", {}),
        }
    else:  # SQLite, the only other backend async_url() accepts
        # SQLite takes one writer at a time. With a pool of connections, concurrent writers
        # each wait on the file lock in SQLite's busy handler, which polls and is not fair: under
        # a burst of writes some waited past busy_timeout and got "database is locked" (a 503
        # with a healthy database). One connection makes this process's transactions queue in
        # the pool, first come first served; aiosqlite runs them on one thread either way.
        # busy_timeout still covers other processes (the CLI) on the same file.
        kwargs.setdefault("pool_size", 1)
        kwargs.setdefault("max_overflow", 0)
        kwargs.setdefault("pool_timeout", SQLITE_QUEUE_TIMEOUT)
        if target.database in (None, "", ":memory:"):
            # SQLAlchemy's default for an in-memory database, a StaticPool, hands its one
            # connection to every checkout at once, so concurrent requests interleaved their
            # statements on it ("cannot commit transaction - SQL statements in progress"). A
            # queue of one keeps that one connection (and so the database) and takes turns.
            kwargs.setdefault("poolclass", AsyncAdaptedQueuePool)
        # The pool's own reset is a ROLLBACK on every return, even after a COMMIT: one more trip
        # to aiosqlite's thread (measured: 1,713 -> 1,168 us per session update on the CI
        # machine). _rollback_if_open below does it only when a transaction may be open.
        kwargs.setdefault("pool_reset_on_return", None)
    engine = create_async_engine(async_target, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

        @event.listens_for(engine.sync_engine, "reset")
        def _rollback_if_open(dbapi_conn: Any, record: Any, state: PoolResetState) -> None:
            if state.terminate_only or not state.asyncio_safe:
                return  # being discarded, or garbage-collected outside the loop: no I/O here
            # Always for a write sent on the driver and not known to be committed: it may still
            # wait in aiosqlite's queue, which runs this ROLLBACK after it (first in, first out).
            uncommitted = record.info.pop(UNCOMMITTED, False)
            if uncommitted or (
                not state.transaction_was_reset and record.driver_connection.in_transaction
            ):
                dbapi_conn.rollback()

    return engine


async def ensure_schema(engine: AsyncEngine) -> None:
    """Create missing tables and record the schema version (idempotent, safe on every start)."""
    # Imported here, not at the top: the table modules import this one for ``metadata``.
    from tessera.stores import sql_tables  # noqa: F401

    with unavailable_on_error():  # a refused connection is an OSError, not a SQLAlchemyError
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)


def _upgrade(conn: Connection) -> None:
    """Create what is missing, then run the migration steps from the recorded version."""
    metadata.create_all(conn)
    # FOR UPDATE (PostgreSQL; SQLite has one writer anyway): of two servers starting together,
    # the second waits for the first's upgrade and then finds the new version.
    current = conn.execute(
        select(schema_info.c.version).where(schema_info.c.component == "core").with_for_update()
    ).scalar_one_or_none()
    if current is None:
        conn.execute(schema_info.insert().values(component="core", version=SCHEMA_VERSION))
        return
    if current > SCHEMA_VERSION:
        raise ConfigError(
            f"database schema version {current} is newer than this Tessera "
            f"({SCHEMA_VERSION}); upgrade Tessera"
        )
    for version in range(current, SCHEMA_VERSION):
        MIGRATIONS[version](conn)
    if current < SCHEMA_VERSION:
        conn.execute(
            schema_info.update()
            .where(schema_info.c.component == "core")
            .values(version=SCHEMA_VERSION)
        )


async def ping(engine: AsyncEngine) -> None:
    """Raise :class:`StoreUnavailable` unless the database answers ``SELECT 1``."""
    try:
        async with engine.connect() as conn:
            await conn.execute(select(1))
    except (SQLAlchemyError, OSError) as exc:
        raise StoreUnavailable("sql", type(exc).__name__) from exc
