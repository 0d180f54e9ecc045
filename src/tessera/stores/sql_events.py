"""Security events in SQL (SQLite, PostgreSQL): table ``tessera_events``.

Append-only; read per user, newest first, through the ``(user_id, at)`` index. ``detail`` is
kept as a JSON text column (portable across both databases, bounded by
:data:`tessera.identity.events.MAX_DETAIL_BYTES` before it gets here).
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from types import MappingProxyType

from sqlalchemy import Column, Float, Index, Integer, String, Table, Text, delete, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from tessera.identity.events import (
    MAX_IP_LENGTH,
    MAX_USER_AGENT_LENGTH,
    DetailValue,
    EventKind,
    SecurityEvent,
)
from tessera.stores.sql import metadata, unavailable_on_error

__all__ = ["SqlEventStore", "events_table"]

events_table = Table(
    "tessera_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(64), nullable=True),
    Column("kind", String(32), nullable=False),
    Column("at", Float, nullable=False),
    Column("ip", String(MAX_IP_LENGTH), nullable=True),
    Column("user_agent", String(MAX_USER_AGENT_LENGTH), nullable=True),
    Column("detail", Text, nullable=False),
    Index("ix_tessera_events_user_at", "user_id", "at"),
    Index("ix_tessera_events_at", "at"),
)


def _to_event(row: RowMapping) -> SecurityEvent:
    return SecurityEvent(
        id=int(row["id"]),
        kind=EventKind(row["kind"]),
        at=float(row["at"]),
        user_id=row["user_id"],
        ip=row["ip"],
        user_agent=row["user_agent"],
        detail=MappingProxyType(json.loads(row["detail"])),
    )


class SqlEventStore:
    """A :class:`tessera.identity.events.EventStore` on SQLAlchemy Core."""

    __slots__ = ("_engine",)

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def append(
        self,
        kind: EventKind,
        at: float,
        *,
        user_id: str | None,
        ip: str | None,
        user_agent: str | None,
        detail: Mapping[str, DetailValue],
    ) -> SecurityEvent:
        values = {
            "user_id": user_id,
            "kind": kind.value,
            "at": at,
            "ip": ip,
            "user_agent": user_agent,
            "detail": json.dumps(dict(detail), ensure_ascii=False, separators=(",", ":")),
        }
        with unavailable_on_error():
            async with self._engine.begin() as conn:
                result = await conn.execute(
                    events_table.insert().values(**values).returning(events_table.c.id)
                )
                event_id = int(result.scalar_one())
        return SecurityEvent(
            id=event_id,
            kind=kind,
            at=at,
            user_id=user_id,
            ip=ip,
            user_agent=user_agent,
            detail=MappingProxyType(dict(detail)),
        )

    async def list_for_user(self, user_id: str, limit: int = 50) -> builtins.list[SecurityEvent]:
        query = (
            select(events_table)
            .where(events_table.c.user_id == user_id)
            .order_by(events_table.c.at.desc(), events_table.c.id.desc())
            .limit(limit)
        )
        with unavailable_on_error():
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).mappings().all()
        return [_to_event(r) for r in rows]

    async def delete_before(self, when: float) -> int:
        with unavailable_on_error():
            async with self._engine.begin() as conn:
                result = await conn.execute(delete(events_table).where(events_table.c.at < when))
        return int(result.rowcount)
