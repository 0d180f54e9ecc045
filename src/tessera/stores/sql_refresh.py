"""Refresh-token families in the SQL database (SQLite, PostgreSQL).

Rotation is one transaction whose first statement is the winning move, a conditional
``UPDATE tokens SET rotated_at = now ... WHERE token_hash = :h AND rotated_at IS NULL AND
family is live and ours ... RETURNING family_id``. The database serializes concurrent updates
of one row (PostgreSQL re-evaluates the WHERE clause on the committed row after waiting for the
row lock; SQLite has a single writer), so exactly one transaction gets the row back and
inserts the successor; every other one gets nothing and, in the same transaction, reads the now
committed state to answer GRACE, REUSED (revoking the family), or a refusal. That is the effect
of ``SELECT ... FOR UPDATE`` without holding a lock across a round trip.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Table,
    and_,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tessera.stores.refresh_tokens import RefreshFamily, RotateOutcome, RotateResult
from tessera.stores.sql import guarded, metadata
from tessera.stores.sql import ping as sql_ping

refresh_families = Table(
    "tessera_refresh_families",
    metadata,
    Column("family_id", String(64), primary_key=True),
    Column("user_id", String(128), nullable=False),
    Column("sid", String(128), nullable=False),
    Column("client_id", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("revoked_at", Float),
    Index("ix_tessera_refresh_families_user", "user_id"),
    Index("ix_tessera_refresh_families_sid", "sid"),
    Index("ix_tessera_refresh_families_expires", "expires_at"),
)

refresh_tokens = Table(
    "tessera_refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column(
        "family_id",
        String(64),
        ForeignKey("tessera_refresh_families.family_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("created_at", Float, nullable=False),
    Column("rotated_at", Float),
    Column("successor_hash", String(64)),
    Column("successor_box", LargeBinary),
    Index("ix_tessera_refresh_tokens_family", "family_id"),
)

_F = refresh_families.c
_T = refresh_tokens.c


def _family(row: Any) -> RefreshFamily:
    m = row._mapping
    return RefreshFamily(
        family_id=m["family_id"],
        user_id=m["user_id"],
        sid=m["sid"],
        client_id=m["client_id"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
    )


class SqlRefreshTokenStore:
    """:class:`~tessera.stores.refresh_tokens.RefreshTokenStore` on SQLite or PostgreSQL."""

    __slots__ = ("engine",)

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def __repr__(self) -> str:
        return f"<SqlRefreshTokenStore {self.engine.dialect.name}>"

    async def create(self, family: RefreshFamily, token_hash: str) -> None:
        async def op() -> None:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(refresh_families).values(
                        family_id=family.family_id,
                        user_id=family.user_id,
                        sid=family.sid,
                        client_id=family.client_id,
                        created_at=family.created_at,
                        expires_at=family.expires_at,
                        revoked_at=family.revoked_at,
                    )
                )
                await conn.execute(
                    insert(refresh_tokens).values(
                        token_hash=token_hash,
                        family_id=family.family_id,
                        created_at=family.created_at,
                    )
                )

        await guarded(op)

    async def rotate(
        self,
        token_hash: str,
        client_id: str,
        successor_hash: str,
        successor_box: bytes,
        now: float,
        grace: float,
    ) -> RotateResult:
        async def op() -> RotateResult:
            async with self.engine.begin() as conn:
                live_families = select(_F.family_id).where(
                    _F.client_id == client_id,
                    _F.revoked_at.is_(None),
                    _F.expires_at > now,
                )
                won = (
                    await conn.execute(
                        update(refresh_tokens)
                        .where(
                            _T.token_hash == token_hash,
                            _T.rotated_at.is_(None),
                            _T.family_id.in_(live_families),
                        )
                        .values(
                            rotated_at=now,
                            successor_hash=successor_hash,
                            successor_box=successor_box,
                        )
                        .returning(_T.family_id)
                    )
                ).first()
                if won is not None:
                    await conn.execute(
                        insert(refresh_tokens).values(
                            token_hash=successor_hash, family_id=won.family_id, created_at=now
                        )
                    )
                    family = await self._get(conn, won.family_id)
                    return RotateResult(RotateOutcome.ROTATED, family, successor_hash)
                return await self._classify(conn, token_hash, client_id, now, grace)

        return await guarded(op)

    async def _classify(
        self, conn: AsyncConnection, token_hash: str, client_id: str, now: float, grace: float
    ) -> RotateResult:
        """Why the conditional update matched nothing, acting on reuse (same transaction)."""
        row = (
            await conn.execute(
                select(refresh_families, _T.rotated_at, _T.successor_hash, _T.successor_box)
                .select_from(refresh_tokens.join(refresh_families))
                .where(_T.token_hash == token_hash)
            )
        ).first()
        if row is None:
            return RotateResult(RotateOutcome.UNKNOWN)
        family = _family(row)
        if family.client_id != client_id:
            return RotateResult(RotateOutcome.WRONG_CLIENT, family)
        if family.revoked_at is not None:
            return RotateResult(RotateOutcome.REVOKED, family)
        if now >= family.expires_at:
            return RotateResult(RotateOutcome.EXPIRED, family)
        rotated_at = row.rotated_at
        if rotated_at is None:
            # Unreachable with one snapshot (the update would have matched); never revoke on it.
            return RotateResult(RotateOutcome.UNKNOWN, family)
        if now - rotated_at <= grace:
            return RotateResult(RotateOutcome.GRACE, family, row.successor_hash, row.successor_box)
        await conn.execute(
            update(refresh_families)
            .where(_F.family_id == family.family_id, _F.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return RotateResult(
            RotateOutcome.REUSED,
            RefreshFamily(
                family.family_id,
                family.user_id,
                family.sid,
                family.client_id,
                family.created_at,
                family.expires_at,
                now,
            ),
        )

    async def _get(self, conn: AsyncConnection, family_id: str) -> RefreshFamily | None:
        row = (
            await conn.execute(select(refresh_families).where(_F.family_id == family_id))
        ).first()
        return None if row is None else _family(row)

    async def get_family(self, family_id: str) -> RefreshFamily | None:
        async def op() -> RefreshFamily | None:
            async with self.engine.connect() as conn:
                return await self._get(conn, family_id)

        return await guarded(op)

    async def _revoke(self, condition: Any, now: float) -> int:
        async def op() -> int:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    update(refresh_families)
                    .where(and_(condition, _F.revoked_at.is_(None)))
                    .values(revoked_at=now)
                )
            return int(result.rowcount)

        return await guarded(op)

    async def revoke_family(self, family_id: str, now: float) -> bool:
        return await self._revoke(_F.family_id == family_id, now) == 1

    async def revoke_for_session(self, sid: str, now: float) -> int:
        return await self._revoke(_F.sid == sid, now)

    async def revoke_for_user(self, user_id: str, now: float) -> int:
        return await self._revoke(_F.user_id == user_id, now)

    async def sweep(self, now: float) -> int:
        async def op() -> int:
            async with self.engine.begin() as conn:
                dead = select(_F.family_id).where(_F.expires_at <= now)
                # Tokens first: SQLite enforces ON DELETE CASCADE only with foreign_keys=ON,
                # which a foreign engine may not set.
                await conn.execute(delete(refresh_tokens).where(_T.family_id.in_(dead)))
                result = await conn.execute(delete(refresh_families).where(_F.expires_at <= now))
            return int(result.rowcount)

        return await guarded(op)

    async def ping(self) -> None:
        await sql_ping(self.engine)

    async def close(self) -> None:
        """Nothing to release: the engine is shared by every SQL store and its owner disposes it."""
