"""The SQL database shared by every SQL store: engine creation, one MetaData, schema upkeep.

Each SQL store module declares its tables on :data:`metadata`; :func:`ensure_schema` creates
what is missing and records the schema version, so a new server or a new release migrates itself
on start. SQLite (the embedded default) runs in WAL mode so readers never wait for the writer.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tessera.errors import ConfigError, StoreUnavailable

metadata = MetaData()

SCHEMA_VERSION = 1
"""Bump with a migration step in :data:`MIGRATIONS` whenever a table changes shape."""

schema_info = Table(
    "tessera_schema",
    metadata,
    Column("component", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
)


def async_url(url: str) -> str:
    """Map plain ``sqlite:`` / ``postgresql:`` URLs to their asyncio drivers."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ConfigError(f"unsupported database URL scheme: {parsed.drivername}")


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    engine = create_async_engine(async_url(url), **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

    return engine


async def ensure_schema(engine: AsyncEngine) -> None:
    """Create missing tables and record the schema version (idempotent, safe on every start)."""
    # Imported here, not at the top: the table modules import this one for ``metadata``.
    from tessera.stores import sql_tables  # noqa: F401

    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            current = (
                await conn.execute(
                    select(schema_info.c.version).where(schema_info.c.component == "core")
                )
            ).scalar_one_or_none()
            if current is None:
                await conn.execute(
                    schema_info.insert().values(component="core", version=SCHEMA_VERSION)
                )
            elif current > SCHEMA_VERSION:
                raise ConfigError(
                    f"database schema version {current} is newer than this Tessera "
                    f"({SCHEMA_VERSION}); upgrade Tessera"
                )
    except SQLAlchemyError as exc:
        raise StoreUnavailable("sql", type(exc).__name__) from exc


async def ping(engine: AsyncEngine) -> None:
    """Raise :class:`StoreUnavailable` unless the database answers ``SELECT 1``."""
    try:
        async with engine.connect() as conn:
            await conn.execute(select(1))
    except (SQLAlchemyError, OSError) as exc:
        raise StoreUnavailable("sql", type(exc).__name__) from exc
