"""Remember-me tokens in the SQL database (they live as long as the users they belong to)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Float, Index, String, Table, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tessera.identity.remember import RememberToken
from tessera.stores.sql import guarded, metadata

remember_tokens = Table(
    "tessera_remember",
    metadata,
    Column("selector", String(32), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("validator_hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("last_used_at", Float),
    Column("previous_hash", String(64)),
    Column("rotated_at", Float),
    Index("ix_tessera_remember_user", "user_id"),
)


def _row_to_token(row: Any) -> RememberToken:
    return RememberToken(**dict(row._mapping))


class SqlRememberStore:
    """:class:`~tessera.identity.remember.RememberStore` on SQLite or PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, token: RememberToken) -> None:
        async def op() -> None:
            async with self.engine.begin() as conn:
                await conn.execute(insert(remember_tokens).values(**_values(token)))

        await guarded(op)

    async def get(self, selector: str) -> RememberToken | None:
        async def op() -> RememberToken | None:
            async with self.engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(remember_tokens).where(remember_tokens.c.selector == selector)
                    )
                ).first()
            return _row_to_token(row) if row else None

        return await guarded(op)

    async def rotate(self, selector: str, expected_hash: str, new: RememberToken) -> bool:
        async def op() -> bool:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    update(remember_tokens)
                    .where(
                        remember_tokens.c.selector == selector,
                        remember_tokens.c.validator_hash == expected_hash,
                    )
                    .values(**_values(new))
                )
            return result.rowcount == 1

        return await guarded(op)

    async def delete(self, selector: str) -> bool:
        async def op() -> bool:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    delete(remember_tokens).where(remember_tokens.c.selector == selector)
                )
            return result.rowcount == 1

        return await guarded(op)

    async def delete_for_user(self, user_id: str) -> int:
        async def op() -> int:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    delete(remember_tokens).where(remember_tokens.c.user_id == user_id)
                )
            return int(result.rowcount)

        return await guarded(op)


def _values(token: RememberToken) -> dict[str, Any]:
    return {
        "selector": token.selector,
        "user_id": token.user_id,
        "validator_hash": token.validator_hash,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "last_used_at": token.last_used_at,
        "previous_hash": token.previous_hash,
        "rotated_at": token.rotated_at,
    }
