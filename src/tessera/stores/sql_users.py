"""Users in SQL (SQLite, PostgreSQL): table ``tessera_users``.

Case-insensitive uniqueness of usernames and emails is the database's job, not a
check-then-insert in Python: the table keeps a lower-case key column beside each display column
with a UNIQUE constraint on it, so two concurrent registrations of "Alice" and "alice" cannot
both succeed, whichever process or instance handles them. Several NULL emails are allowed (SQL
UNIQUE ignores NULLs on both databases).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Boolean, Column, Float, String, Table, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tessera.errors import Conflict, NotFound
from tessera.identity.users import (
    MAX_EMAIL_LENGTH,
    MAX_USERNAME_LENGTH,
    User,
    email_key,
    email_lookup_key,
    normalize_email,
    username_key,
    username_lookup_key,
)
from tessera.stores.sql import metadata, unavailable_on_error

__all__ = ["SqlUserStore", "users_table"]

users_table = Table(
    "tessera_users",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("username", String(MAX_USERNAME_LENGTH), nullable=False),
    Column("username_key", String(MAX_USERNAME_LENGTH), nullable=False, unique=True),
    Column("email", String(MAX_EMAIL_LENGTH), nullable=True),
    # casefold can lengthen a string (ß -> ss), hence the room beyond the display column.
    Column("email_key", String(2 * MAX_EMAIL_LENGTH), nullable=True, unique=True),
    Column("password_hash", String(512), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("password_changed_at", Float, nullable=False),
)


def _to_user(row: RowMapping) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        password_hash=row["password_hash"],
        disabled=bool(row["disabled"]),
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        password_changed_at=float(row["password_changed_at"]),
    )


def _conflict(exc: IntegrityError) -> Conflict:
    # Both databases name the violated column (SQLite) or constraint (PostgreSQL) on the first
    # line; later lines may quote the offending value, which is user text and must not count.
    text = str(exc.orig).lower().splitlines()[0] if str(exc.orig) else ""
    if "email_key" in text:
        return Conflict("this email address is taken", code="email_taken")
    if "username_key" in text:
        return Conflict("this username is taken", code="username_taken")
    return Conflict("a user with this id exists", code="user_exists")


class SqlUserStore:
    """A :class:`tessera.identity.users.UserStore` on SQLAlchemy Core."""

    __slots__ = ("_engine",)

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, user: User) -> None:
        values = {
            "id": user.id,
            "username": user.username,
            "username_key": username_key(user.username),
            "email": user.email,
            "email_key": email_key(user.email) if user.email is not None else None,
            "password_hash": user.password_hash,
            "disabled": user.disabled,
            "created_at": user.created_at,
            "updated_at": user.updated_at,
            "password_changed_at": user.password_changed_at,
        }
        with unavailable_on_error():
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(users_table.insert().values(**values))
            except IntegrityError as exc:
                raise _conflict(exc) from None

    async def _one(self, column: Column[Any], value: str) -> User | None:
        with unavailable_on_error():
            async with self._engine.connect() as conn:
                row = (
                    (await conn.execute(select(users_table).where(column == value)))
                    .mappings()
                    .first()
                )
        return _to_user(row) if row is not None else None

    async def get_by_id(self, user_id: str) -> User | None:
        return await self._one(users_table.c.id, user_id)

    async def get_by_username(self, username: str) -> User | None:
        key = username_lookup_key(username)
        return await self._one(users_table.c.username_key, key) if key is not None else None

    async def get_by_email(self, email: str) -> User | None:
        key = email_lookup_key(email)
        return await self._one(users_table.c.email_key, key) if key is not None else None

    async def list(self, limit: int = 1000, offset: int = 0) -> builtins.list[User]:
        query = select(users_table).order_by(users_table.c.username_key).limit(limit).offset(offset)
        with unavailable_on_error():
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).mappings().all()
        return [_to_user(r) for r in rows]

    async def _update(self, user_id: str, values: Mapping[str, Any]) -> User:
        """Apply ``values`` and return the updated row, in one transaction."""
        with unavailable_on_error():
            try:
                async with self._engine.begin() as conn:
                    result = await conn.execute(
                        update(users_table).where(users_table.c.id == user_id).values(**values)
                    )
                    if result.rowcount == 0:
                        raise NotFound("no such user", code="user_not_found")
                    row = (
                        (await conn.execute(select(users_table).where(users_table.c.id == user_id)))
                        .mappings()
                        .one()
                    )
            except IntegrityError as exc:
                raise _conflict(exc) from None
        return _to_user(row)

    async def set_password_hash(
        self, user_id: str, password_hash: str, now: float, *, password_changed: bool = True
    ) -> User:
        values: dict[str, Any] = {"password_hash": password_hash, "updated_at": now}
        if password_changed:
            values["password_changed_at"] = now
        return await self._update(user_id, values)

    async def set_disabled(self, user_id: str, disabled: bool, now: float) -> User:
        return await self._update(user_id, {"disabled": disabled, "updated_at": now})

    async def set_email(self, user_id: str, email: str | None, now: float) -> User:
        normalized = normalize_email(email) if email is not None else None
        return await self._update(
            user_id,
            {
                "email": normalized,
                "email_key": normalized.casefold() if normalized is not None else None,
                "updated_at": now,
            },
        )
