"""Sessions in SQL (SQLite or PostgreSQL) through SQLAlchemy Core.

One row per session, keyed by the SHA-256 digest of the session ID. ``expires_at`` is stored
(``min(last_seen + idle_timeout, absolute_expires_at)``, rewritten on every renewal) and indexed,
so every liveness check is a plain comparison and :meth:`SqlSessionStore.sweep` is an index range
delete that costs O(expired), not O(all sessions).

Round trips of :meth:`SqlSessionStore.load`:

- PostgreSQL: one statement. A data-modifying CTE renews the row when renewal is due
  (``UPDATE ... WHERE live AND due RETURNING``) and a ``UNION ALL`` branch selects the row when the
  CTE renewed nothing. Both branches read the statement's snapshot, hence the ``NOT EXISTS`` guard.
- SQLite: a read, then a conditional ``UPDATE ... RETURNING`` only when renewal is due. There is
  no network hop to save, and any write statement takes SQLite's single write lock even when it
  matches no row; reading first keeps the common, not-due load a pure WAL read that never waits
  for (or blocks) a writer.

Every driver failure is re-raised as :class:`tessera.errors.StoreUnavailable` naming only the
exception type, so a connection URL (and its password) never reaches a log or an HTTP body.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    LargeBinary,
    String,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    false,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import SingletonThreadPool, StaticPool
from sqlalchemy.sql.expression import CompoundSelect, Delete, Executable, Insert, Select, Update

from tessera.errors import StoreUnavailable
from tessera.stores import sql
from tessera.stores.sessions import SessionRecord

SWEEP_BATCH = 500
"""Rows deleted per sweep statement: short statements keep the write lock brief."""

sessions_table = Table(
    "tessera_sessions",
    sql.metadata,
    Column("id_hash", String(64), primary_key=True),
    # Unbounded VARCHARs: an overlong user agent must not turn into a database error.
    Column("user_id", String, nullable=True, index=True),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("idle_timeout", Float, nullable=False),
    Column("absolute_expires_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
    Column("kind", String, nullable=False),
    Column("ip", String, nullable=True),
    Column("user_agent", String, nullable=True),
    Column("remembered", Boolean, nullable=False),
    # Added in schema version 2 (see tessera.stores.sql.MIGRATIONS), hence the server default:
    # rows written by version 1 were never persistent.
    Column("persistent", Boolean, nullable=False, server_default=false()),
)

_t = sessions_table


def _values(record: SessionRecord) -> dict[str, Any]:
    return {
        "id_hash": record.id_hash,
        "user_id": record.user_id,
        "data": record.data,
        "created_at": record.created_at,
        "last_seen": record.last_seen,
        "idle_timeout": record.idle_timeout,
        "absolute_expires_at": record.absolute_expires_at,
        "expires_at": record.expires_at,
        "kind": record.kind,
        "ip": record.ip,
        "user_agent": record.user_agent,
        # bool(): asyncpg takes only True/False for a BOOLEAN, where SQLAlchemy took 1 and 0.
        "remembered": bool(record.remembered),
        "persistent": bool(record.persistent),
    }


def _record(row: Sequence[Any]) -> SessionRecord:
    """The record from a row whose first columns are the table's, in its order (a SQLAlchemy
    ``Row`` or a driver's tuple alike)."""
    (id_hash, user_id, data, created, last_seen, idle, absolute, _expires) = row[:8]
    kind, ip, agent, remembered, persistent = row[8:13]
    return SessionRecord(
        id_hash=id_hash,
        data=bytes(data),
        created_at=created,
        last_seen=last_seen,
        idle_timeout=idle,
        absolute_expires_at=absolute,
        user_id=user_id,
        kind=kind,
        ip=ip,
        user_agent=agent,
        remembered=bool(remembered),
        persistent=bool(persistent),
    )


# Statements are built once, with named parameters: building a CTE statement costs more Python
# than the database takes to run it. Parameter names avoid column names, which SQLAlchemy
# reserves for SET / VALUES. Floats are typed so asyncpg knows ``:now - last_seen`` is float8.
_now = bindparam("now", type_=Float)
_interval = bindparam("interval", type_=Float)
_h = bindparam("h", type_=String)

_LIVE = and_(_t.c.id_hash == _h, _t.c.expires_at > _now)

_RENEW = (
    update(_t)
    .where(_LIVE, _now - _t.c.last_seen >= _interval)
    .values(
        last_seen=_now,
        # min(now + idle, absolute): the same IEEE arithmetic as SessionRecord.expires_at.
        expires_at=case(
            (_now + _t.c.idle_timeout < _t.c.absolute_expires_at, _now + _t.c.idle_timeout),
            else_=_t.c.absolute_expires_at,
        ),
    )
)

_RENEW_RETURNING = _RENEW.returning(_t)
_SELECT_LIVE = select(_t).where(_LIVE)

_renewed = _RENEW.returning(*_t.c, true().label("renewed")).cte("renewed")
_LOAD_ONE_STATEMENT = select(*_renewed.c).union_all(
    select(*_t.c, false().label("renewed")).where(_LIVE, ~exists(select(_renewed.c.id_hash)))
)

_INSERT = insert(_t)
_UPDATE_LIVE = update(_t).where(_LIVE)  # SET columns come from the parameter keys
_DELETE = delete(_t).where(_t.c.id_hash == _h)


_Stmt = Insert | Update | Delete | Select[Any] | CompoundSelect[Any]


def _counted(stmt: Insert | Update | Delete) -> _Stmt:
    """The write ``stmt`` returning the ID of each row it wrote, so that they can be counted
    whatever executes it (a driver's rows carry no rowcount)."""
    return stmt.returning(_t.c.id_hash)


@dataclass(frozen=True, slots=True)
class _DriverStatement:
    """A statement compiled once, to send on the driver itself (see ``_on_driver``)."""

    sql: str
    names: tuple[str, ...]
    """The parameters' names in the order of the statement's placeholders (``?``, ``$n``)."""
    writes: bool


@dataclass(frozen=True, slots=True)
class _Statement:
    """One of the per-request statements, ready for either way of running it."""

    stmt: _Stmt
    driver: _DriverStatement | None
    """Set when the engine's driver is one the store sends statements to itself."""


def _prepared(stmt: _Stmt, dialect: Dialect | None, keys: Sequence[str] = ()) -> _Statement:
    """``stmt`` (a write: ``_counted``), compiled for ``dialect`` unless that is None.

    ``keys``: the columns an INSERT or UPDATE sets, which SQLAlchemy otherwise takes from the
    parameters at each execution.
    """
    if dialect is None:
        return _Statement(stmt, None)
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
    writes = isinstance(stmt, (Insert, Update, Delete))
    return _Statement(
        stmt, _DriverStatement(compiled.string, tuple(compiled.positiontup or ()), writes)
    )


_ALL_COLUMNS = tuple(_t.c.keys())
_UPDATED_COLUMNS = tuple(key for key in _ALL_COLUMNS if key != "id_hash")

_DRIVERS = ("aiosqlite", "asyncpg")
"""The drivers the per-request statements are sent to directly (the ones
:func:`tessera.stores.sql.create_engine` uses); an engine on another keeps SQLAlchemy's
execution throughout."""


class SqlSessionStore:
    """:class:`tessera.stores.sessions.SessionStore` on a SQLAlchemy async engine.

    The schema comes from :func:`tessera.stores.sql.ensure_schema`. ``close()`` disposes the
    engine only when ``owns_engine`` is set: an engine handed in is usually shared with the other
    SQL stores, and its owner closes it.

    Every operation is one statement, :meth:`replace` included. On PostgreSQL each runs in
    autocommit mode: a statement is atomic on its own, and skipping ``BEGIN``/``COMMIT`` saves
    two round trips per call. SQLite's driver opens a transaction before a write, which is
    committed at once.

    The operations of every request (create, load, update, replace, delete) are sent on the
    pooled connection's driver itself (aiosqlite, asyncpg), compiled once by SQLAlchemy; the
    rarer ones (listings, sweeps) keep SQLAlchemy's execution. Why (``bench/sql_store_ops.py``
    measures both ways side by side):

    - SQLite: each call SQLAlchemy makes on an aiosqlite connection (cursor, execute, fetch,
      close, commit) is one trip to aiosqlite's thread, and those trips, not SQLite, were the
      cost. On the driver a read is one trip and a write two (the statement, its COMMIT): a
      load is about 3 times as fast, an update twice.
    - PostgreSQL: SQLAlchemy's execution layer cost half as much CPU again as the rest of a
      one-row statement (about 1.5 times the CPU, 1.4 times the time).
    """

    def __init__(
        self, engine: AsyncEngine, *, owns_engine: bool = False, on_driver: bool = True
    ) -> None:
        """``on_driver=False`` runs every statement through SQLAlchemy's execution, so that its
        ``echo`` log, its events and the tracing tools built on them see the per-request ones
        too (slower: see above); an engine on another driver than aiosqlite or asyncpg always
        does."""
        self._engine = engine
        self._owns_engine = owns_engine
        dialect = engine.dialect
        self._single_statement_load = dialect.name == "postgresql"
        self._statement: Callable[[], AbstractAsyncContextManager[AsyncConnection]] = (
            engine.execution_options(isolation_level="AUTOCOMMIT").connect
            if self._single_statement_load
            else engine.begin
        )
        driver = (
            dialect.driver
            if on_driver
            and dialect.driver in _DRIVERS
            # One connection shared by every checkout at once (SQLite's :memory:): a write's
            # COMMIT and another request's reset would interleave on it.
            and not isinstance(engine.pool, (StaticPool, SingletonThreadPool))
            else None
        )
        compiled_for = dialect if driver is not None else None
        self._on_asyncpg_driver = driver == "asyncpg"
        self._select_live = _prepared(_SELECT_LIVE, compiled_for)
        self._renew = _prepared(_RENEW_RETURNING, compiled_for)
        self._load_one = _prepared(_LOAD_ONE_STATEMENT, compiled_for)
        self._insert = _prepared(_counted(_INSERT), compiled_for, _ALL_COLUMNS)
        self._update = _prepared(_counted(_UPDATE_LIVE), compiled_for, _UPDATED_COLUMNS)
        self._replace = _prepared(_counted(_UPDATE_LIVE), compiled_for, _ALL_COLUMNS)
        self._delete = _prepared(_counted(_DELETE), compiled_for)

    def __repr__(self) -> str:
        # The engine's repr would show the URL; the dialect is all a log needs.
        return f"SqlSessionStore(dialect={self._engine.dialect.name!r})"

    async def _run(
        self, stmt: Executable, params: dict[str, Any] | None = None
    ) -> tuple[Sequence[Sequence[Any]], int]:
        """Execute one statement on its own; its rows (if any) and its rowcount."""
        with sql.unavailable_on_error():
            async with self._statement() as conn:
                result = await conn.execute(stmt, params)
                rows = result.all() if result.returns_rows else []
                return rows, result.rowcount

    async def _rows(self, statement: _Statement, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        """The rows of one per-request statement (a write: one per row written)."""
        if statement.driver is not None:
            return await self._on_driver(statement.driver, params)
        rows, _ = await self._run(statement.stmt, params)
        return rows

    async def _on_driver(
        self, statement: _DriverStatement, params: dict[str, Any]
    ) -> Sequence[Sequence[Any]]:
        """Run ``statement`` on the pooled connection's driver; its rows."""
        args = [params[name] for name in statement.names]
        with sql.unavailable_on_error():
            async with self._engine.connect() as conn:
                pooled = await conn.get_raw_connection()
                driver: Any = pooled.driver_connection  # aiosqlite or asyncpg
                if self._on_asyncpg_driver:
                    return await self._on_asyncpg(conn, driver, statement, args)
                return await self._on_aiosqlite(conn, pooled.info, driver, statement, args)

    async def _on_aiosqlite(
        self,
        conn: AsyncConnection,
        info: dict[Any, Any],
        driver: Any,
        statement: _DriverStatement,
        args: list[Any],
    ) -> Sequence[Sequence[Any]]:
        """``statement`` on an aiosqlite connection; a write is committed at once."""
        try:
            if not statement.writes:
                return list(await driver.execute_fetchall(statement.sql, args))
            # If this call fails or is cancelled before the COMMIT, the pool rolls the connection
            # back on its return, behind the write if it was still queued (``info`` is the pooled
            # connection's: see sql.UNCOMMITTED). Outside a write the connection is in no
            # transaction: SQLite's driver opens one only before a write, and each write here
            # ends in a COMMIT.
            info[sql.UNCOMMITTED] = True
            rows = list(await driver.execute_fetchall(statement.sql, args))
            await driver.commit()
            del info[sql.UNCOMMITTED]
            return rows
        except ValueError as exc:
            # aiosqlite's closed connection ("no active connection"): as SQLAlchemy's dialect
            # does, a disconnect, so the connection is discarded and the request gets a 503.
            with contextlib.suppress(Exception):
                await conn.invalidate()
            raise StoreUnavailable("sql", type(exc).__name__) from exc

    async def _on_asyncpg(
        self, conn: AsyncConnection, driver: Any, statement: _DriverStatement, args: list[Any]
    ) -> Sequence[Sequence[Any]]:
        """``statement`` on an asyncpg connection, outside any transaction (autocommit)."""
        try:
            rows: Sequence[Sequence[Any]] = await driver.fetch(statement.sql, *args)
        except BaseException as exc:
            await self._after_asyncpg_failure(conn, driver, exc)
            if isinstance(exc, Exception):
                raise StoreUnavailable("sql", type(exc).__name__) from exc
            raise
        return rows

    async def _after_asyncpg_failure(
        self, conn: AsyncConnection, driver: Any, exc: BaseException
    ) -> None:
        """Keep the connection after a statement the server (or asyncpg) refused; otherwise
        discard it, as SQLAlchemy's own execution does.

        - Cancelled mid-statement: asyncpg may still be settling the connection with the
          server, so it is not handed to the next request.
        - Disconnected (``is_closed()``, SQLAlchemy's own test for asyncpg; a backend that dies
          mid-statement raises a ``PostgresError`` subclass, so the type does not tell): the
          server restarted or failed over, and the other pooled connections are most likely
          dead too. SQLAlchemy is shown the closed connection, so that it does what it does on
          a disconnect: discard this connection and, at their next checkout, every one opened
          before it, instead of failing one request per stale connection. (Disposing of the
          pool here would leave the connections other requests hold open until garbage
          collection.)
        """
        disconnected = driver.is_closed()
        if isinstance(exc, Exception) and not disconnected:
            return
        if disconnected:
            with contextlib.suppress(Exception):
                await conn.exec_driver_sql("SELECT 1")  # raises, and SQLAlchemy invalidates
        if not conn.invalidated:  # cancelled, or SQLAlchemy did not take it for a disconnect
            with contextlib.suppress(Exception):
                await conn.invalidate()

    async def create(self, record: SessionRecord) -> None:
        await self._rows(self._insert, _values(record))

    async def load(
        self, id_hash: str, now: float, renewal_interval: float
    ) -> tuple[SessionRecord, bool] | None:
        params = {"h": id_hash, "now": now, "interval": renewal_interval}
        if self._single_statement_load:
            rows = await self._rows(self._load_one, params)
            return (_record(rows[0]), bool(rows[0][-1])) if rows else None  # -1: "renewed"
        rows = await self._rows(self._select_live, params)
        if not rows:
            return None
        record = _record(rows[0])
        if now - record.last_seen < renewal_interval:
            return record, False
        renewed = await self._rows(self._renew, params)
        if not renewed:
            # A concurrent load renewed it first (or it was deleted meanwhile): that load
            # reports the renewal; ours reports the row as it read it.
            return record, False
        return _record(renewed[0]), True

    async def update(
        self, record: SessionRecord, now: float, previous: SessionRecord | None = None
    ) -> bool:
        # One UPDATE of the row whatever changed: ``previous`` would spare nothing here.
        params = _values(record)
        del params["id_hash"]
        params |= {"h": record.id_hash, "now": now}
        return len(await self._rows(self._update, params)) == 1

    async def replace(self, old_id_hash: str, record: SessionRecord, now: float) -> bool:
        # One UPDATE that gives the live row its new ID (and the rest of the record), rather
        # than a delete and an insert: the row stays the same row, so a concurrent statement
        # that waited on its lock follows it. Of two rotations of one session exactly one
        # matches the old ID; and a "log out everywhere" (``delete_for_user``) that waited on
        # the rotation deletes the rotated row, where under READ COMMITTED its snapshot would
        # never have seen an inserted one (PostgreSQL), and the session would have survived.
        params = _values(record) | {"h": old_id_hash, "now": now}
        return len(await self._rows(self._replace, params)) == 1

    async def delete(self, id_hash: str) -> bool:
        return len(await self._rows(self._delete, {"h": id_hash})) == 1

    async def list_for_user(self, user_id: str, now: float) -> list[SessionRecord]:
        stmt = (
            select(_t)
            .where(_t.c.user_id == user_id, _t.c.expires_at > _now)
            .order_by(_t.c.created_at, _t.c.id_hash)
        )
        rows, _ = await self._run(stmt, {"now": now})
        return [_record(row) for row in rows]

    async def delete_for_user(self, user_id: str, *, keep: str | None = None) -> int:
        stmt = delete(_t).where(_t.c.user_id == user_id)
        if keep is not None:
            stmt = stmt.where(_t.c.id_hash != keep)
        _, count = await self._run(stmt)
        return count

    async def list_all(self, now: float, limit: int = 1000) -> list[SessionRecord]:
        stmt = (
            select(_t)
            .where(_t.c.expires_at > _now)
            .order_by(_t.c.created_at.desc(), _t.c.id_hash.desc())
            .limit(limit)
        )
        rows, _ = await self._run(stmt, {"now": now})
        return [_record(row) for row in rows]

    async def sweep(self, now: float) -> int:
        """Delete expired rows in batches of :data:`SWEEP_BATCH`, each its own statement.

        Short statements keep SQLite's write lock brief; the subquery is a range scan of the
        ``expires_at`` index, so the cost follows the number of expired rows.
        """
        batch = (
            select(_t.c.id_hash).where(_t.c.expires_at <= _now).limit(SWEEP_BATCH).scalar_subquery()
        )
        stmt = delete(_t).where(_t.c.id_hash.in_(batch))
        total = 0
        while True:
            _, removed = await self._run(stmt, {"now": now})
            total += removed
            if removed < SWEEP_BATCH:
                return total

    async def ping(self) -> None:
        await sql.ping(self._engine)

    async def close(self) -> None:
        if self._owns_engine:
            await self._engine.dispose()
