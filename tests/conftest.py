"""Shared fixtures: a fake clock, and real PostgreSQL / Redis isolated per test.

The PostgreSQL and Redis fixtures connect to the real servers (TESSERA_TEST_POSTGRES_URL,
TESSERA_TEST_REDIS_URL; defaults are this machine's 127.0.0.1 services). When a server is down the
fixture *fails* the test: CI must never go green by skipping the production stores.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tessera.clock import FakeClock
from tessera.stores.sql import create_engine, ensure_schema

POSTGRES_URL = os.environ.get(
    "TESSERA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TESSERA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when the test says so."""
    return FakeClock()


@pytest.fixture
async def sqlite_engine(tmp_path: object) -> AsyncIterator[AsyncEngine]:
    """A fresh embedded SQLite database file with the whole schema."""
    engine = create_engine(f"sqlite:///{tmp_path}/tessera.db")
    await ensure_schema(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def postgres_engine() -> AsyncIterator[AsyncEngine]:
    """The real PostgreSQL server, in a schema of its own that is dropped afterwards.

    A private schema per test keeps parallel test runs (and developers) from seeing each other's
    rows without truncating anything.
    """
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_URL)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        await admin.dispose()
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required and unreachable: {exc!r}")
    engine = create_engine(POSTGRES_URL, connect_args={"server_settings": {"search_path": schema}})
    await ensure_schema(engine)
    try:
        yield engine
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


@pytest.fixture
async def postgres_database() -> AsyncIterator[str]:
    """A whole database of the test's own on the real server, as a URL, dropped afterwards.

    For code under test that opens its own engine from a URL (the server, the example), where a
    private schema cannot be passed in.
    """
    name = f"t_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        await admin.dispose()
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required and unreachable: {exc!r}")
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
async def redis_client() -> AsyncIterator[object]:
    """A client of the real Redis server; fails the test when Redis is down."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        pytest.fail(f"Redis at {REDIS_URL} is required and unreachable: {exc!r}")
    yield client
    await client.aclose()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own, so runs never collide and nothing is flushed."""
    return f"tessera-test-{secrets.token_hex(6)}"
