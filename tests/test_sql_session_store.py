"""What only the SQL session store promises: round trips, batching, failure wrapping, wiring.

Also the factory and the periodic sweep, which are exercised here on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiosqlite
import asyncpg
import pytest
from sqlalchemy import event, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tessera.clock import FakeClock
from tessera.config import Settings
from tessera.errors import ConfigError, StoreUnavailable
from tessera.stores import sql, sql_sessions
from tessera.stores.factory import open_session_store
from tessera.stores.memory_sessions import MemorySessionStore
from tessera.stores.sessions import SessionRecord
from tessera.stores.sql import create_engine, ensure_schema
from tessera.stores.sql_sessions import SqlSessionStore, sessions_table
from tessera.stores.sweeper import run_periodic_sweep
from tests.conftest import POSTGRES_URL


def record(now: float, n: int = 0, *, idle: float = 100.0, user_id: str | None = None) -> Any:
    return SessionRecord(
        id_hash=hashlib.sha256(f"{now}-{n}-{idle}".encode()).hexdigest(),
        data=b"{}",
        created_at=now,
        last_seen=now,
        idle_timeout=idle,
        absolute_expires_at=now + 3600.0,
        user_id=user_id,
    )


async def settle_failed_sqlite_connects() -> None:
    """Let aiosqlite's worker threads of failed connects finish while the loop still runs.

    On a failed connect aiosqlite stops its thread without awaiting it; if the test's loop
    closes first, the thread's completion callback hits a closed loop and pytest (warnings are
    errors) reports it in whichever test runs next.
    """
    for _ in range(500):
        if not any("_connection_worker_thread" in t.name for t in threading.enumerate()):
            return
        await asyncio.sleep(0.01)


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Collect the SQL statements sent while the block runs."""
    seen: list[str] = []

    def on_execute(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", on_execute)


@contextmanager
def postgres_queries(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every query sent on asyncpg's own connection methods (``fetch``, ``execute``: the store's
    driver path, and transaction control) on the engine's pooled connections, through a query
    logger on each connection checked out meanwhile. SQLAlchemy's statements go through asyncpg
    prepared statements, which the logger does not see: ``statements`` counts those."""
    seen: list[str] = []
    logged: list[Any] = []

    def log(query: Any) -> None:
        seen.append(query.query)

    def on_checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        driver = record.driver_connection
        if driver not in logged:
            driver.add_query_logger(log)
            logged.append(driver)

    event.listen(engine.sync_engine, "checkout", on_checkout)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "checkout", on_checkout)
        for driver in logged:
            driver.remove_query_logger(log)


@pytest.mark.parametrize("on_driver", [True, False], ids=["on-driver", "through-sqlalchemy"])
async def test_postgres_load_is_one_statement_renewed_or_not(
    postgres_engine: AsyncEngine, clock: FakeClock, on_driver: bool
) -> None:
    """On PostgreSQL a load sends a single statement, whether or not it renews, and nothing
    else (no BEGIN, no COMMIT: autocommit)."""
    store = SqlSessionStore(postgres_engine, on_driver=on_driver)
    rec = record(clock.now())
    await store.create(rec)
    for renewed in (False, True):
        if renewed:
            clock.advance(60.0)
        with statements(postgres_engine) as prepared, postgres_queries(postgres_engine) as sent:
            found = await store.load(rec.id_hash, clock.now(), 60.0)
        assert found == ((rec.touched(clock.now()), True) if renewed else (rec, False))
        assert [q.split()[0] for q in [*prepared, *sent]] == ["WITH"]
        assert len(sent) == int(on_driver)


@contextlib.asynccontextmanager
async def sqlite_trace(engine: AsyncEngine) -> AsyncIterator[list[str]]:
    """Every statement SQLite itself runs on the engine's one pooled connection, as its first
    word (``BEGIN``, ``SELECT``, ``UPDATE``, ``COMMIT``, ``ROLLBACK``...): what reaches the
    database, whichever way it was sent."""
    seen: list[str] = []
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.set_trace_callback(lambda statement: seen.append(statement.split()[0]))
    try:
        yield seen
    finally:
        async with engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            await driver.set_trace_callback(None)


async def test_sqlite_load_reads_and_writes_only_when_due(
    sqlite_engine: AsyncEngine, clock: FakeClock
) -> None:
    """On SQLite a not-due load is one SELECT and nothing else (no transaction, no reset); a
    due one adds one conditional UPDATE and its COMMIT."""
    store = SqlSessionStore(sqlite_engine)
    rec = record(clock.now())
    await store.create(rec)
    async with sqlite_trace(sqlite_engine) as seen:
        assert await store.load(rec.id_hash, clock.now(), 60.0) == (rec, False)
        assert seen == ["SELECT"]
        seen.clear()
        clock.advance(60.0)
        assert await store.load(rec.id_hash, clock.now(), 60.0) == (rec.touched(clock.now()), True)
        assert seen == ["SELECT", "BEGIN", "UPDATE", "COMMIT"]


async def test_sqlite_write_is_its_statement_and_its_commit(
    sqlite_engine: AsyncEngine, clock: FakeClock
) -> None:
    """An update, a rotation, a delete: the statement and its COMMIT, no ROLLBACK after it when
    the connection goes back to the pool."""
    store = SqlSessionStore(sqlite_engine)
    rec = record(clock.now())
    await store.create(rec)
    rotated = record(clock.now(), 1)
    async with sqlite_trace(sqlite_engine) as seen:
        assert await store.update(rec._replace(data=b'{"n":1}'), clock.now())
        assert await store.replace(rec.id_hash, rotated, clock.now())
        assert await store.delete(rotated.id_hash)
        assert not await store.delete(rotated.id_hash)
    assert seen == ["BEGIN", "UPDATE", "COMMIT"] * 2 + ["BEGIN", "DELETE", "COMMIT"] * 2


@contextmanager
def failing_commits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every COMMIT on an aiosqlite connection fails (a disk I/O error), meanwhile."""

    async def failing_commit(self: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    with monkeypatch.context() as patched:
        patched.setattr(aiosqlite.Connection, "commit", failing_commit)
        yield


async def test_sqlite_write_whose_commit_fails_is_rolled_back(
    sqlite_engine: AsyncEngine, clock: FakeClock, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write whose COMMIT fails is a 503 and leaves nothing behind: the row is unchanged and no
    transaction holds SQLite's write lock (another process can write at once)."""
    store = SqlSessionStore(sqlite_engine)
    rec = record(clock.now())
    await store.create(rec)

    with failing_commits(monkeypatch), pytest.raises(StoreUnavailable):
        await store.update(rec._replace(data=b'{"lost":true}'), clock.now())
    assert (await store.load(rec.id_hash, clock.now(), 60.0)) == (rec, False)
    other = create_engine(f"sqlite:///{tmp_path}/tessera.db", connect_args={"timeout": 0})
    try:
        async with other.begin() as conn:  # "database is locked" at once if a write were open
            await conn.execute(text("PRAGMA busy_timeout=0"))
            await conn.execute(sessions_table.update().values(kind="token"))
    finally:
        await other.dispose()


async def test_sqlite_write_cancelled_before_it_ran_is_rolled_back_after_it(
    sqlite_engine: AsyncEngine, clock: FakeClock
) -> None:
    """A request cancelled while its write still waits in aiosqlite's queue: the connection goes
    back to the pool before the write runs, and the ROLLBACK queued behind it undoes it, instead
    of leaving a transaction open on the pooled connection (holding SQLite's write lock until some
    later COMMIT, which would also commit the cancelled write)."""
    store = SqlSessionStore(sqlite_engine)
    rec = record(clock.now())
    await store.create(rec)
    started, gate = threading.Event(), threading.Event()
    seen: list[str] = []

    def trace(statement: str) -> None:  # runs on aiosqlite's thread, before each statement
        seen.append(statement.split()[0])
        if len(seen) == 1:
            started.set()
            gate.wait(10)  # the write's first statement waits until the request is cancelled

    async with sqlite_engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.set_trace_callback(trace)
    write = asyncio.create_task(store.update(rec._replace(data=b'{"lost":true}'), clock.now()))
    assert await asyncio.to_thread(started.wait, 10)
    write.cancel()
    await asyncio.sleep(0.05)  # the cancelled request returns the connection meanwhile
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await write
    assert (await store.load(rec.id_hash, clock.now(), 60.0)) == (rec, False)
    assert seen[:3] == ["BEGIN", "UPDATE", "ROLLBACK"]
    async with sqlite_engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.set_trace_callback(None)
        assert not driver.in_transaction


@pytest.fixture(params=["sqlite_engine", "postgres_engine"])
def engine(request: pytest.FixtureRequest) -> AsyncEngine:
    """Each SQL database in turn."""
    resolved: AsyncEngine = request.getfixturevalue(request.param)
    return resolved


async def test_renewal_rewrites_the_stored_expiry(engine: AsyncEngine, clock: FakeClock) -> None:
    """The expires_at column follows renewals and stops at the absolute deadline."""
    store = SqlSessionStore(engine)
    rec = record(clock.now(), idle=3000.0)
    await store.create(rec)
    clock.advance(1000.0)
    await store.load(rec.id_hash, clock.now(), 60.0)
    async with engine.connect() as conn:
        stored = (await conn.execute(select(sessions_table.c.expires_at))).scalar_one()
    assert stored == rec.absolute_expires_at  # min(now + 3000, created + 3600)


async def _downgrade_to_version_1(engine: AsyncEngine) -> None:
    """Make the database look like one written by schema version 1 (no persistent column)."""
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE tessera_sessions DROP COLUMN persistent"))
        await conn.execute(text("UPDATE tessera_schema SET version = 1 WHERE component = 'core'"))


async def test_schema_version_1_is_upgraded_in_place(engine: AsyncEngine, clock: FakeClock) -> None:
    """ensure_schema adds the persistent column to a version 1 table, keeping its rows."""
    old = record(clock.now())
    await _downgrade_to_version_1(engine)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO tessera_sessions (id_hash, user_id, data, created_at, last_seen, "
                "idle_timeout, absolute_expires_at, expires_at, kind, ip, user_agent, remembered) "
                "VALUES (:h, NULL, :d, :t, :t, 100.0, :a, :e, 'browser', NULL, NULL, FALSE)"
            ),
            {
                "h": old.id_hash,
                "d": b"{}",
                "t": clock.now(),
                "a": old.absolute_expires_at,
                "e": old.expires_at,
            },
        )
    await ensure_schema(engine)
    await ensure_schema(engine)  # a second start finds nothing left to do
    async with engine.connect() as conn:
        version = (await conn.execute(text("SELECT version FROM tessera_schema"))).scalar_one()
    assert version == sql.SCHEMA_VERSION == 3
    store = SqlSessionStore(engine)
    assert await store.load(old.id_hash, clock.now(), 60.0) == (old, False)
    persistent = record(clock.now(), 1)._replace(persistent=True)
    await store.create(persistent)
    assert await store.load(persistent.id_hash, clock.now(), 60.0) == (persistent, False)


async def test_schema_version_2_gets_the_revocation_poll_index(engine: AsyncEngine) -> None:
    """Version 2 -> 3 indexes revocation marks by instant (servers poll by it), idempotently."""
    async with engine.begin() as conn:
        await conn.execute(text("DROP INDEX ix_tessera_revocations_at"))
        await conn.execute(text("UPDATE tessera_schema SET version = 2 WHERE component = 'core'"))
    await ensure_schema(engine)
    await ensure_schema(engine)

    def index_names(sync_conn: Any) -> set[str]:
        return {i["name"] for i in inspect(sync_conn).get_indexes("tessera_revocations")}

    async with engine.connect() as conn:
        assert "ix_tessera_revocations_at" in await conn.run_sync(index_names)
        version = (await conn.execute(text("SELECT version FROM tessera_schema"))).scalar_one()
    assert version == 3


async def test_newer_schema_version_is_refused(engine: AsyncEngine) -> None:
    """A database upgraded by a newer Tessera is not touched by an older one."""
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE tessera_schema SET version = 99 WHERE component = 'core'"))
    with pytest.raises(ConfigError):
        await ensure_schema(engine)


async def test_sweep_deletes_in_batches(
    sqlite_engine: AsyncEngine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep larger than one batch removes every expired row and counts them all."""
    monkeypatch.setattr(sql_sessions, "SWEEP_BATCH", 3)
    store = SqlSessionStore(sqlite_engine)
    for n in range(7):
        await store.create(record(clock.now(), n))
    live = record(clock.now(), 99, idle=1000.0)
    await store.create(live)
    clock.advance(500.0)
    assert await store.sweep(clock.now()) == 7
    assert await store.list_all(clock.now()) == [live]


async def test_sweep_goes_through_the_expiry_index(sqlite_engine: AsyncEngine) -> None:
    """SQLite plans the sweep's range scan on the expires_at index, not a table scan."""
    async with sqlite_engine.connect() as conn:
        plan = (
            await conn.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT id_hash FROM tessera_sessions "
                    "WHERE expires_at <= 5 LIMIT 500"
                )
            )
        ).all()
    assert any("ix_tessera_sessions_expires_at" in str(row) for row in plan)


async def test_unreachable_sqlite_raises_store_unavailable(tmp_path: object) -> None:
    """A database file that cannot be opened fails closed with StoreUnavailable."""
    engine = create_engine(f"sqlite:///{tmp_path}/missing-dir/tessera.db")
    store = SqlSessionStore(engine, owns_engine=True)
    try:
        for call in (
            store.ping(),
            store.load("0" * 64, 1.0, 60.0),
            store.create(record(1.0)),
            store.sweep(1.0),
        ):
            with pytest.raises(StoreUnavailable) as info:
                await call
            assert info.value.store == "sql"
    finally:
        await store.close()
        await settle_failed_sqlite_connects()


async def test_postgres_down_raises_store_unavailable_without_secrets() -> None:
    """A PostgreSQL that refuses connections gives StoreUnavailable; the password stays out."""
    engine = create_engine("postgresql://tessera:hunter2-secret@127.0.0.1:1/tessera")
    store = SqlSessionStore(engine, owns_engine=True)
    try:
        for call in (store.ping(), store.load("0" * 64, 1.0, 60.0), store.list_all(1.0)):
            with pytest.raises(StoreUnavailable) as info:
                await call
            assert "hunter2" not in str(info.value)
        assert "hunter2" not in repr(store)
    finally:
        await store.close()


# --- factory -------------------------------------------------------------------------------


async def test_factory_opens_sql_on_its_own_engine_and_closes_it(tmp_path: object) -> None:
    """Without an engine the factory opens one from database_url, creates the schema, and
    close() disposes it."""
    settings = Settings(session_store="sql", database_url=f"sqlite:///{tmp_path}/f.db")
    store = await open_session_store(settings)
    assert isinstance(store, SqlSessionStore)
    await store.create(record(1.0))
    assert await store.load(record(1.0).id_hash, 2.0, 60.0) is not None
    pool = store._engine.pool
    assert pool.checkedin() == 1  # type: ignore[attr-defined]
    await store.close()
    assert pool.checkedin() == 0  # type: ignore[attr-defined]


async def test_factory_shares_a_given_engine_and_leaves_it_open(
    sqlite_engine: AsyncEngine,
) -> None:
    """With an engine the factory uses it and close() leaves it usable for its owner."""
    store = await open_session_store(Settings(session_store="sql"), engine=sqlite_engine)
    assert isinstance(store, SqlSessionStore)
    assert store._engine is sqlite_engine
    pool = sqlite_engine.pool
    idle = pool.checkedin()  # type: ignore[attr-defined]
    assert idle >= 1  # ensure_schema's connection went back to the pool
    await store.close()
    assert sqlite_engine.pool is pool
    assert pool.checkedin() == idle  # type: ignore[attr-defined]


async def test_factory_opens_a_bounded_memory_store() -> None:
    """session_store=memory gives a MemorySessionStore capped at session_memory_max."""
    store = await open_session_store(Settings(session_store="memory", session_memory_max=7))
    assert isinstance(store, MemorySessionStore)
    assert store.max_sessions == 7
    await store.close()


# --- periodic sweep ------------------------------------------------------------------------


async def test_periodic_sweep_removes_expired_sessions_until_stopped(
    sqlite_engine: AsyncEngine, clock: FakeClock
) -> None:
    """The sweeper sweeps at the clock's now on every tick and returns its total on stop."""
    store = SqlSessionStore(sqlite_engine)
    for n in range(3):
        await store.create(record(clock.now(), n))
    clock.advance(500.0)
    stop = asyncio.Event()
    task = asyncio.create_task(run_periodic_sweep(store, clock, 0.01, stop))
    for _ in range(200):
        if not await store.list_all(0.0):
            break
        await asyncio.sleep(0.01)
    stop.set()
    assert await asyncio.wait_for(task, 5) == 3


async def test_periodic_sweep_survives_an_unavailable_store(
    tmp_path: object, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing sweep is logged as a warning and the loop keeps running until stopped."""
    store = SqlSessionStore(create_engine(f"sqlite:///{tmp_path}/no/such.db"), owns_engine=True)
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="tessera.stores.sweeper"):
        task = asyncio.create_task(run_periodic_sweep(store, clock, 0.01, stop))
        for _ in range(200):
            if len(caplog.records) >= 2:
                break
            await asyncio.sleep(0.01)
        stop.set()
        assert await asyncio.wait_for(task, 5) == 0
    await store.close()
    await settle_failed_sqlite_connects()
    assert len(caplog.records) >= 2
    assert "sql store unavailable" in caplog.records[0].getMessage()


async def test_periodic_sweep_refuses_a_non_positive_interval(clock: FakeClock) -> None:
    """An interval of 0 would spin; it is a configuration error."""
    with pytest.raises(ConfigError):
        await run_periodic_sweep(MemorySessionStore(), clock, 0, asyncio.Event())


async def test_postgres_engine_keeps_a_pool_sized_for_a_busy_server() -> None:
    """A PostgreSQL engine keeps 16 connections open by default; callers may override."""
    engine = create_engine("postgresql://postgres@127.0.0.1:1/test")
    small = create_engine("postgresql://postgres@127.0.0.1:1/test", pool_size=2)
    try:
        assert engine.pool.size() == sql.POSTGRES_POOL_SIZE  # type: ignore[attr-defined]
        assert small.pool.size() == 2  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
        await small.dispose()


async def test_sqlite_file_writers_queue_on_one_connection(tmp_path: Any) -> None:
    """Concurrent writes to the embedded database wait their turn, none 'database is locked'.

    A pool of connections made them contend in SQLite's busy handler, which is not fair: under
    a burst some waited past busy_timeout and the request got a 503 from a healthy database.
    """
    engine = create_engine(f"sqlite:///{tmp_path}/burst.db")
    assert engine.pool.size() == 1  # type: ignore[attr-defined]
    try:
        await ensure_schema(engine)
        store = SqlSessionStore(engine)
        clock = FakeClock()
        records = [record(clock.now(), n) for n in range(200)]
        await asyncio.gather(*(store.create(r) for r in records))
        changed = [r._replace(data=b'{"n":1}') for r in records]
        assert all(await asyncio.gather(*(store.update(r, clock.now()) for r in changed)))
        assert len(await store.list_all(clock.now(), limit=500)) == 200
    finally:
        await engine.dispose()


async def test_a_postgresql_server_that_never_answers_is_unavailable_in_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hung server (it accepts TCP, then says nothing) fails the request after the connect
    timeout with StoreUnavailable; asyncpg alone would wait a minute."""
    monkeypatch.setattr(sql, "POSTGRES_CONNECT_TIMEOUT", 0.5)
    accepted: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # kept open, never answered

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    engine = create_engine(f"postgresql://postgres@127.0.0.1:{port}/test")
    try:
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(SqlSessionStore(engine).load("ab" * 32, 0.0, 60.0), 10)
        assert accepted  # it was the hang, not a refused connection
    finally:
        await engine.dispose()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def _backend_pid(engine: AsyncEngine) -> int:
    """The server process of the connection the engine's pool hands out next."""
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        return int(driver.get_server_pid())


async def test_postgres_connection_that_died_is_not_handed_out_again(
    postgres_engine: AsyncEngine, clock: FakeClock
) -> None:
    """A pooled connection the server dropped fails the statement it was given (503), and is
    discarded: the next request gets a new connection, not the dead one again."""
    store = SqlSessionStore(postgres_engine)
    rec = record(clock.now())
    await store.create(rec)
    pid = await _backend_pid(postgres_engine)
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    await asyncio.sleep(0.1)
    # Only the dead connection is in the pool, so the first load gets it.
    with pytest.raises(StoreUnavailable):
        await store.load(rec.id_hash, clock.now(), 60.0)
    assert await store.load(rec.id_hash, clock.now(), 60.0) == (rec, False)
    assert await _backend_pid(postgres_engine) != pid


@contextlib.asynccontextmanager
async def row_locked(engine: AsyncEngine, id_hash: str) -> AsyncIterator[None]:
    """The session's row locked (``SELECT ... FOR UPDATE``) by another connection meanwhile."""
    async with engine.connect() as locker:
        await locker.execute(
            select(sessions_table.c.id_hash)
            .where(sessions_table.c.id_hash == id_hash)
            .with_for_update()
        )
        try:
            yield
        finally:
            await locker.rollback()


async def test_postgres_statement_cancelled_midway_leaves_nothing_behind(
    postgres_engine: AsyncEngine, clock: FakeClock
) -> None:
    """A request cancelled while its update waits on a row lock: the update never lands, and
    the connection it was on is not handed to the next request in a half-finished state."""
    store = SqlSessionStore(postgres_engine)
    rec = record(clock.now())
    await store.create(rec)
    async with row_locked(postgres_engine, rec.id_hash):
        write = asyncio.create_task(store.update(rec._replace(data=b'{"lost":true}'), clock.now()))
        await asyncio.sleep(0.3)  # the UPDATE now waits on the row lock
        assert not write.done()
        write.cancel()
        with pytest.raises(asyncio.CancelledError):
            await write
    assert await store.load(rec.id_hash, clock.now(), 60.0) == (rec, False)
    changed = rec._replace(data=b'{"n":2}')
    assert await store.update(changed, clock.now())
    assert await store.load(rec.id_hash, clock.now(), 60.0) == (changed, False)


async def test_postgres_backend_that_dies_mid_statement_is_not_handed_out_again(
    postgres_engine: AsyncEngine, clock: FakeClock
) -> None:
    """A backend killed while the store's UPDATE waits on a row lock (asyncpg then raises a
    ``PostgresError`` subclass, as for a refused statement): a 503, and the dead connection is
    discarded, so the next request works."""
    store = SqlSessionStore(postgres_engine)
    rec = record(clock.now())
    await store.create(rec)
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        async with row_locked(postgres_engine, rec.id_hash):
            write = asyncio.create_task(store.update(rec._replace(data=b'{"n":1}'), clock.now()))
            waiting = None
            for _ in range(100):
                waiting = await admin.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE 'UPDATE tessera_sessions%' AND query LIKE '%RETURNING%'"
                )
                if waiting is not None:
                    break
                await asyncio.sleep(0.02)
            assert waiting is not None
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", waiting)
            with pytest.raises(StoreUnavailable):
                await write
    finally:
        await admin.close()
    for _ in range(3):
        assert await store.load(rec.id_hash, clock.now(), 60.0) == (rec, False)


async def named_engine(postgres_engine: AsyncEngine, *, pool_size: int) -> tuple[AsyncEngine, str]:
    """An engine of its own on the test's schema, with a pool of ``pool_size`` connections that
    carry a name of their own in ``pg_stat_activity`` (so a test can kill exactly those)."""
    async with postgres_engine.connect() as conn:
        search_path = (await conn.execute(text("SHOW search_path"))).scalar_one()
    name = f"tessera-test-{secrets.token_hex(4)}"
    engine = create_engine(
        POSTGRES_URL,
        pool_size=pool_size,
        max_overflow=0,
        connect_args={"server_settings": {"search_path": search_path, "application_name": name}},
    )
    return engine, name


async def test_postgres_restart_costs_one_failed_request_not_one_per_connection(
    postgres_engine: AsyncEngine, clock: FakeClock
) -> None:
    """Every pooled connection dies at once (a restart, a failover): the first request to meet
    a dead one fails, and the pool starts afresh, as SQLAlchemy does on a disconnect."""
    engine, name = await named_engine(postgres_engine, pool_size=4)
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        store = SqlSessionStore(engine)
        rec = record(clock.now())
        await store.create(rec)
        await asyncio.gather(*(store.load(rec.id_hash, clock.now(), 60.0) for _ in range(8)))
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            name,
        )
        assert killed == 4
        await asyncio.sleep(0.2)
        failed = 0
        for _ in range(8):
            try:
                assert await store.load(rec.id_hash, clock.now(), 60.0) == (rec, False)
            except StoreUnavailable:
                failed += 1
        assert failed == 1
    finally:
        await admin.close()
        await engine.dispose()


async def test_booleans_given_as_numbers_are_stored(engine: AsyncEngine, clock: FakeClock) -> None:
    """``remembered=1`` (SessionManager.create takes plain values) is stored as True on both
    databases, as SQLAlchemy's Boolean did before the statements went on the driver."""
    store = SqlSessionStore(engine)
    rec = record(clock.now())._replace(remembered=1, persistent=0)
    await store.create(rec)
    found = await store.load(rec.id_hash, clock.now(), 60.0)
    assert found is not None
    assert found[0].remembered is True
    assert found[0].persistent is False


async def test_sqlite_in_memory_database_keeps_overlapping_writes(clock: FakeClock) -> None:
    """``sqlite:///:memory:`` keeps one connection, which overlapping requests take in turn:
    they used to share it at once (SQLAlchemy's StaticPool), so their statements interleaved
    and a write failed, or a read's reset rolled a write back."""
    engine = create_engine("sqlite:///:memory:")
    try:
        await ensure_schema(engine)
        store = SqlSessionStore(engine)
        a, b = record(clock.now(), 1), record(clock.now(), 2)
        await store.create(a)
        await store.create(b)
        changed = a._replace(data=b'{"n":1}')
        read, written = await asyncio.gather(
            store.load(b.id_hash, clock.now(), 60.0), store.update(changed, clock.now())
        )
        assert read == (b, False)
        assert written
        assert await store.load(a.id_hash, clock.now(), 60.0) == (changed, False)
        assert engine.pool.size() == 1  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def test_sqlite_transaction_whose_commit_fails_is_rolled_back_on_return(
    sqlite_engine: AsyncEngine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SQLAlchemy transaction (here "log out everywhere") whose COMMIT fails leaves its
    connection inside the transaction; the pool rolls it back on return (its own reset is off
    for SQLite), or the connection would hold SQLite's write lock and a later COMMIT would
    carry the failed delete out after all."""
    store = SqlSessionStore(sqlite_engine)
    rec = record(clock.now(), user_id="u")
    await store.create(rec)

    with failing_commits(monkeypatch), pytest.raises(StoreUnavailable):
        await store.delete_for_user("u")
    async with sqlite_engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        assert not driver.in_transaction
    await store.create(record(clock.now(), 2))  # a later write commits only itself
    assert [r.id_hash for r in await store.list_for_user("u", clock.now())] == [rec.id_hash]


async def test_sqlite_connection_closed_underneath_is_a_503_then_replaced(
    sqlite_engine: AsyncEngine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiosqlite's "no active connection" (a ValueError) met by a statement is the store being
    unavailable (503), not a 500, and that connection is discarded for a new one."""
    store = SqlSessionStore(sqlite_engine)
    rec = record(clock.now())
    await store.create(rec)
    before = await _sqlite_driver(sqlite_engine)

    async def closed(self: Any, sql: str, parameters: Any = None) -> Any:
        raise ValueError("no active connection")

    with monkeypatch.context() as patched:
        patched.setattr(aiosqlite.Connection, "execute_fetchall", closed)
        with pytest.raises(StoreUnavailable):
            await store.load(rec.id_hash, clock.now(), 60.0)
    assert await store.load(rec.id_hash, clock.now(), 60.0) == (rec, False)
    assert await _sqlite_driver(sqlite_engine) is not before


async def _sqlite_driver(engine: AsyncEngine) -> object:
    """The aiosqlite connection the engine's pool of one holds."""
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        return driver


async def test_postgres_dead_connection_is_discarded_even_if_sqlalchemy_disagrees(
    postgres_engine: AsyncEngine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should SQLAlchemy not take a closed connection for a disconnect (a dialect or a
    ``handle_error`` hook that says so), the store still discards it itself: one failed
    request, not every request from then on."""
    engine, name = await named_engine(postgres_engine, pool_size=1)
    monkeypatch.setattr(engine.dialect, "is_disconnect", lambda *args: False)
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        store = SqlSessionStore(engine)
        rec = record(clock.now())
        await store.create(rec)
        assert await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            name,
        )
        await asyncio.sleep(0.2)
        with pytest.raises(StoreUnavailable):
            await store.load(rec.id_hash, clock.now(), 60.0)
        for _ in range(3):
            assert await store.load(rec.id_hash, clock.now(), 60.0) == (rec, False)
    finally:
        await admin.close()
        await engine.dispose()
