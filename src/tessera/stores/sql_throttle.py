"""Login-throttle counters in SQL (SQLite, PostgreSQL): table ``tessera_throttle``.

A failure is one ``INSERT ... ON CONFLICT DO UPDATE`` whose ``CASE`` restarts a stale count, so
two instances counting failures on the same key at once never lose an increment and never need
a read-modify-write transaction. Rows carry ``expires_at`` (indexed) for :meth:`sweep`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, Float, Integer, String, Table, case, delete, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from tessera.errors import ConfigError
from tessera.identity.throttle import ThrottleState
from tessera.stores.sql import metadata, unavailable_on_error

__all__ = ["SqlThrottleStore", "throttle_table"]

throttle_table = Table(
    "tessera_throttle",
    metadata,
    Column("key", String(80), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_failure", Float, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
)


class SqlThrottleStore:
    """A :class:`tessera.identity.throttle.ThrottleStore` on SQLAlchemy Core."""

    __slots__ = ("_engine", "_insert")

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        name = engine.dialect.name
        if name == "postgresql":
            self._insert: Any = postgresql.insert
        elif name == "sqlite":
            self._insert = sqlite.insert
        else:
            raise ConfigError(f"the SQL throttle store does not support {name}")

    async def get(self, keys: Sequence[str]) -> list[ThrottleState | None]:
        query = select(throttle_table).where(throttle_table.c.key.in_(list(keys)))
        with unavailable_on_error():
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).mappings().all()
        found = {
            r["key"]: ThrottleState(int(r["failures"]), float(r["last_failure"])) for r in rows
        }
        return [found.get(k) for k in keys]

    async def add_failure(self, keys: Sequence[str], now: float, window: float) -> list[int]:
        t = throttle_table
        counts = []
        with unavailable_on_error():
            async with self._engine.begin() as conn:
                for key in keys:
                    stmt = self._insert(t).values(
                        key=key, failures=1, last_failure=now, expires_at=now + window
                    )
                    stmt = stmt.on_conflict_do_update(
                        index_elements=[t.c.key],
                        set_={
                            # Same arithmetic as the other stores, so a boundary case
                            # (exactly `window` later) restarts the count everywhere.
                            "failures": case(
                                (literal(now, Float) - t.c.last_failure >= window, 1),
                                else_=t.c.failures + 1,
                            ),
                            "last_failure": now,
                            "expires_at": now + window,
                        },
                    ).returning(t.c.failures)
                    counts.append(int((await conn.execute(stmt)).scalar_one()))
        return counts

    async def reset(self, key: str) -> None:
        with unavailable_on_error():
            async with self._engine.begin() as conn:
                await conn.execute(delete(throttle_table).where(throttle_table.c.key == key))

    async def sweep(self, now: float) -> int:
        with unavailable_on_error():
            async with self._engine.begin() as conn:
                result = await conn.execute(
                    delete(throttle_table).where(throttle_table.c.expires_at <= now)
                )
        return int(result.rowcount)
