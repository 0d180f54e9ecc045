"""Open the session store the settings ask for, with everything it needs to run.

Importing the SQL store module here is what registers the ``tessera_sessions`` table on the
shared :data:`tessera.stores.sql.metadata`, so :func:`tessera.stores.sql.ensure_schema` creates
it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from tessera.clock import Clock
from tessera.config import Settings
from tessera.errors import ConfigError
from tessera.metrics import Metrics
from tessera.stores import sql
from tessera.stores.memory_sessions import MemorySessionStore
from tessera.stores.sessions import SessionStore
from tessera.stores.sql_sessions import SqlSessionStore

if TYPE_CHECKING:
    import redis.asyncio as aioredis

REDIS_MISSING = "TESSERA_SESSION_STORE=redis needs the Redis driver: pip install 'tessera[redis]'"
"""The error instead of an ImportError when the ``redis`` extra is not installed."""

REDIS_CONNECT_TIMEOUT = 0.5
"""Seconds to open a connection to Redis (a local or same-datacenter server takes < 1 ms)."""

REDIS_COMMAND_TIMEOUT = 2.0
"""Seconds to wait for a reply: a hung Redis must turn into a 503, not a hung request."""


def require_drivers(settings: Settings) -> None:
    """Raise :class:`ConfigError` naming the extra to install if the settings need a driver that
    is not installed (the ``redis`` extra for the redis store, ``postgres`` for PostgreSQL URLs).

    Imports only, no connection: a program can check before it starts serving (under uvicorn,
    an error raised at startup prints as a traceback). Opening the stores checks the same.
    """
    sql.require_driver(settings.database_url)
    if settings.session_store == "redis":
        _require_redis()


def _require_redis() -> None:
    try:
        importlib.import_module("redis.asyncio")
    except ImportError:
        raise ConfigError(REDIS_MISSING) from None


def redis_client(url: str) -> aioredis.Redis:
    """A Redis client that fails fast, so a down Redis answers 503 in well under a second.

    redis-py's defaults retry a refused connection three times with exponential backoff
    (about 4.5 s per call): every request would hang that long before failing closed. Here one
    immediate retry remains, which replaces a pooled connection the server dropped (idle
    timeout, restart) without failing the request. Options in the URL's query string
    (``?socket_timeout=5``) still win over these defaults. Commands are encoded by hiredis
    (:class:`~tessera.stores.redis_autopipeline.HiredisPackingConnection`).
    Without redis-py installed, a :class:`ConfigError` names the extra.
    """
    # Imported here: redis is an optional dependency (the ``redis`` extra).
    _require_redis()
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    from tessera.stores.redis_autopipeline import HiredisPackingConnection

    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        socket_timeout=REDIS_COMMAND_TIMEOUT,
        retry=Retry(NoBackoff(), 1),
        # For redis:// only: a rediss:// or unix:// URL names its own connection class,
        # which wins over this one.
        connection_class=HiredisPackingConnection,
    )


async def open_session_store(
    settings: Settings,
    *,
    clock: Clock | None = None,
    engine: AsyncEngine | None = None,
    metrics: Metrics | None = None,
) -> SessionStore:
    """The store named by ``settings.session_store``; its ``close()`` frees what was opened here.

    ``engine`` shares the server's SQL engine (the caller keeps owning it); without one, the sql
    store opens its own from ``settings.database_url`` and disposes it on close. The schema is
    ensured either way. ``clock`` is accepted so every component is wired with the same call
    shape, but no store keeps one: each method takes ``now`` from its caller. ``metrics`` goes to
    the memory store (evictions).
    """
    del clock  # Deliberately unused, see the docstring.
    if settings.session_store == "memory":
        return MemorySessionStore(max_sessions=settings.session_memory_max, metrics=metrics)
    if settings.session_store == "redis":
        # The client first: it turns a missing redis-py into a ConfigError.
        client = redis_client(settings.redis_url)
        from tessera.stores.redis_sessions import RedisSessionStore

        return RedisSessionStore(client, settings.redis_prefix, owns_client=True)
    owns_engine = engine is None
    if engine is None:
        engine = sql.create_engine(settings.database_url)
    try:
        await sql.ensure_schema(engine)
    except BaseException:
        if owns_engine:
            await engine.dispose()
        raise
    return SqlSessionStore(engine, owns_engine=owns_engine)
