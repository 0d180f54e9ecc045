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

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
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
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from tessera.errors import StoreUnavailable
from tessera.stores import sql
from tessera.stores.sessions import SessionRecord

SWEEP_BATCH = 500
"""Rows deleted per sweep transaction: short transactions keep the write lock brief."""

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
)

_t = sessions_table


@contextmanager
def _unavailable() -> Iterator[None]:
    """Turn driver and socket errors into :class:`StoreUnavailable` (type name only)."""
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        raise StoreUnavailable("sql", type(exc).__name__) from exc


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
        "remembered": record.remembered,
    }


def _record(row: RowMapping) -> SessionRecord:
    return SessionRecord(
        id_hash=row["id_hash"],
        data=bytes(row["data"]),
        created_at=row["created_at"],
        last_seen=row["last_seen"],
        idle_timeout=row["idle_timeout"],
        absolute_expires_at=row["absolute_expires_at"],
        user_id=row["user_id"],
        kind=row["kind"],
        ip=row["ip"],
        user_agent=row["user_agent"],
        remembered=bool(row["remembered"]),
    )


def _float(name: str, value: float) -> Any:
    # Typed binds: asyncpg needs to know ``:now - last_seen`` is float arithmetic.
    return bindparam(name, value, type_=Float)


class SqlSessionStore:
    """:class:`tessera.stores.sessions.SessionStore` on a SQLAlchemy async engine.

    The schema comes from :func:`tessera.stores.sql.ensure_schema`. ``close()`` disposes the
    engine only when ``owns_engine`` is set: an engine handed in is usually shared with the other
    SQL stores, and its owner closes it.
    """

    def __init__(self, engine: AsyncEngine, *, owns_engine: bool = False) -> None:
        self._engine = engine
        self._owns_engine = owns_engine
        self._single_statement_load = engine.dialect.name == "postgresql"

    def __repr__(self) -> str:
        # The engine's repr would show the URL; the dialect is all a log needs.
        return f"SqlSessionStore(dialect={self._engine.dialect.name!r})"

    async def create(self, record: SessionRecord) -> None:
        with _unavailable():
            async with self._engine.begin() as conn:
                await conn.execute(insert(_t).values(**_values(record)))

    async def load(
        self, id_hash: str, now: float, renewal_interval: float
    ) -> tuple[SessionRecord, bool] | None:
        with _unavailable():
            if self._single_statement_load:
                return await self._load_one_statement(id_hash, now, renewal_interval)
            return await self._load_read_then_renew(id_hash, now, renewal_interval)

    def _live(self, id_hash: str, now: float) -> ColumnElement[bool]:
        return and_(_t.c.id_hash == id_hash, _t.c.expires_at > _float("now", now))

    def _renew(self, id_hash: str, now: float, renewal_interval: float) -> Any:
        """``UPDATE`` that moves ``last_seen`` to ``now`` when the row is live and renewal due."""
        now_p = _float("now", now)
        # Same arithmetic as SessionRecord.expires_at / the Protocol's due test, in IEEE doubles.
        new_expiry = case(
            (now_p + _t.c.idle_timeout < _t.c.absolute_expires_at, now_p + _t.c.idle_timeout),
            else_=_t.c.absolute_expires_at,
        )
        return (
            update(_t)
            .where(
                self._live(id_hash, now),
                now_p - _t.c.last_seen >= _float("interval", renewal_interval),
            )
            .values(last_seen=now_p, expires_at=new_expiry)
        )

    async def _load_one_statement(
        self, id_hash: str, now: float, renewal_interval: float
    ) -> tuple[SessionRecord, bool] | None:
        renewed = (
            self._renew(id_hash, now, renewal_interval)
            .returning(*_t.c, true().label("renewed"))
            .cte("renewed")
        )
        stmt = select(*renewed.c).union_all(
            select(*_t.c, false().label("renewed")).where(
                self._live(id_hash, now), ~exists(select(renewed.c.id_hash))
            )
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            return None
        return _record(row), bool(row["renewed"])

    async def _load_read_then_renew(
        self, id_hash: str, now: float, renewal_interval: float
    ) -> tuple[SessionRecord, bool] | None:
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(select(_t).where(self._live(id_hash, now)))).mappings().first()
            )
        if row is None:
            return None
        record = _record(row)
        if now - record.last_seen < renewal_interval:
            return record, False
        async with self._engine.begin() as conn:
            renewed = (
                (await conn.execute(self._renew(id_hash, now, renewal_interval).returning(_t)))
                .mappings()
                .first()
            )
        if renewed is None:
            # A concurrent load renewed it first (or it was deleted meanwhile): that request
            # owns the cookie renewal; ours reports the row as it read it.
            return record, False
        return _record(renewed), True

    async def update(self, record: SessionRecord, now: float) -> bool:
        values = _values(record)
        del values["id_hash"]
        with _unavailable():
            async with self._engine.begin() as conn:
                result = await conn.execute(
                    update(_t).where(self._live(record.id_hash, now)).values(**values)
                )
        return result.rowcount == 1

    async def replace(self, old_id_hash: str, record: SessionRecord, now: float) -> bool:
        with _unavailable():
            async with self._engine.begin() as conn:
                # Deleting only a live row makes the delete the guard: of two concurrent
                # rotations of one session exactly one sees rowcount 1 and inserts.
                gone = await conn.execute(delete(_t).where(self._live(old_id_hash, now)))
                if gone.rowcount != 1:
                    return False
                await conn.execute(insert(_t).values(**_values(record)))
        return True

    async def delete(self, id_hash: str) -> bool:
        with _unavailable():
            async with self._engine.begin() as conn:
                result = await conn.execute(delete(_t).where(_t.c.id_hash == id_hash))
        return result.rowcount == 1

    async def list_for_user(self, user_id: str, now: float) -> list[SessionRecord]:
        stmt = (
            select(_t)
            .where(_t.c.user_id == user_id, _t.c.expires_at > _float("now", now))
            .order_by(_t.c.created_at, _t.c.id_hash)
        )
        with _unavailable():
            async with self._engine.connect() as conn:
                rows = (await conn.execute(stmt)).mappings().all()
        return [_record(row) for row in rows]

    async def delete_for_user(self, user_id: str, *, keep: str | None = None) -> int:
        stmt = delete(_t).where(_t.c.user_id == user_id)
        if keep is not None:
            stmt = stmt.where(_t.c.id_hash != keep)
        with _unavailable():
            async with self._engine.begin() as conn:
                result = await conn.execute(stmt)
        return result.rowcount

    async def list_all(self, now: float, limit: int = 1000) -> list[SessionRecord]:
        stmt = (
            select(_t)
            .where(_t.c.expires_at > _float("now", now))
            .order_by(_t.c.created_at.desc(), _t.c.id_hash.desc())
            .limit(limit)
        )
        with _unavailable():
            async with self._engine.connect() as conn:
                rows = (await conn.execute(stmt)).mappings().all()
        return [_record(row) for row in rows]

    async def sweep(self, now: float) -> int:
        """Delete expired rows in batches of :data:`SWEEP_BATCH`, each its own transaction."""
        batch = (
            select(_t.c.id_hash)
            .where(_t.c.expires_at <= _float("now", now))
            .limit(SWEEP_BATCH)
            .scalar_subquery()
        )
        stmt = delete(_t).where(_t.c.id_hash.in_(batch))
        total = 0
        with _unavailable():
            while True:
                async with self._engine.begin() as conn:
                    removed = (await conn.execute(stmt)).rowcount
                total += removed
                if removed < SWEEP_BATCH:
                    return total

    async def ping(self) -> None:
        await sql.ping(self._engine)

    async def close(self) -> None:
        if self._owns_engine:
            await self._engine.dispose()
