"""Revocation marks in the SQL database: one row per subject, the latest instant wins."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Float, Index, String, Table, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from tessera.stores.revocations import MarkKind, RevocationMark
from tessera.stores.sql import guarded, metadata

revocations = Table(
    "tessera_revocations",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("subject", String(128), primary_key=True),
    Column("at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_tessera_revocations_expires", "expires_at"),
    Index("ix_tessera_revocations_at", "at"),  # load_since; made by migration 2 -> 3 before
)

_R = revocations.c


class SqlRevocationStore:
    """:class:`~tessera.stores.revocations.RevocationStore` on SQLite or PostgreSQL.

    Has no feed: instances sharing only a database learn of other instances' marks when they
    reload (:meth:`~tessera.tokens.revocation.RevocationView.load`), which the server does every
    couple of seconds; Redis pushes them instead.
    """

    __slots__ = ("engine",)

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def __repr__(self) -> str:
        return f"<SqlRevocationStore {self.engine.dialect.name}>"

    async def add(self, mark: RevocationMark) -> None:
        dialect: Any = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(revocations).values(
            kind=mark.kind.value, subject=mark.subject, at=mark.at, expires_at=mark.expires_at
        )
        later = stmt.excluded.at > _R.at
        # An upsert that keeps the later mark: concurrent instances cannot move one backwards.
        stmt = stmt.on_conflict_do_update(
            index_elements=[_R.kind, _R.subject],
            set_={
                "at": case((later, stmt.excluded.at), else_=_R.at),
                "expires_at": case((later, stmt.excluded.expires_at), else_=_R.expires_at),
            },
        )

        async def op() -> None:
            async with self.engine.begin() as conn:
                await conn.execute(stmt)

        await guarded(op)

    async def load_live(self, now: float) -> list[RevocationMark]:
        async def op() -> list[RevocationMark]:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(select(revocations).where(_R.expires_at > now))).all()
            return [RevocationMark(MarkKind(r.kind), r.subject, r.at, r.expires_at) for r in rows]

        return await guarded(op)

    async def load_since(self, since: float, now: float) -> list[RevocationMark]:
        """The live marks made after ``since`` (their ``at``): what a poll needs, not all."""

        async def op() -> list[RevocationMark]:
            query = select(revocations).where(_R.at > since, _R.expires_at > now)
            async with self.engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            return [RevocationMark(MarkKind(r.kind), r.subject, r.at, r.expires_at) for r in rows]

        return await guarded(op)

    async def sweep(self, now: float) -> int:
        async def op() -> int:
            async with self.engine.begin() as conn:
                result = await conn.execute(delete(revocations).where(_R.expires_at <= now))
            return int(result.rowcount)

        return await guarded(op)
