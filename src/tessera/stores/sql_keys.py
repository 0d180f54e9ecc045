"""The key ring in SQL (SQLite or PostgreSQL): table ``tessera_keys``.

The ``first_of`` column holds the use (``hmac``/``sign``) on the key that bootstrapped that use
and NULL on every later key. Its UNIQUE constraint is what makes :meth:`SqlKeyStore.add_first`
atomic across server instances on both databases without locks: of two instances starting at
once on an empty database, the second insert fails and that instance reloads the winner's key.
(Both SQLite and PostgreSQL allow any number of NULLs in a UNIQUE column.)
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Column, Float, String, Table, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tessera.errors import Conflict, NotFound
from tessera.stores.keys import KeyRecord
from tessera.stores.sql import metadata, unavailable_on_error

keys_table = Table(
    "tessera_keys",
    metadata,
    Column("kid", String(128), primary_key=True),
    Column("use", String(16), nullable=False),
    Column("alg", String(16), nullable=False),
    Column("material", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("activated_at", Float, nullable=False),
    Column("retiring_at", Float, nullable=True),
    Column("retired_at", Float, nullable=True),
    Column("first_of", String(16), nullable=True, unique=True),
)


class SqlKeyStore:
    """:class:`~tessera.stores.keys.KeyStore` on a SQLAlchemy async engine."""

    __slots__ = ("_engine",)

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        return f"<SqlKeyStore {self._engine.dialect.name}>"

    @property
    def read_only(self) -> bool:
        return False

    async def load_all(self) -> list[KeyRecord]:
        query = select(
            keys_table.c.kid,
            keys_table.c.use,
            keys_table.c.alg,
            keys_table.c.material,
            keys_table.c.created_at,
            keys_table.c.activated_at,
            keys_table.c.retiring_at,
            keys_table.c.retired_at,
        ).order_by(keys_table.c.activated_at, keys_table.c.kid)
        with unavailable_on_error():
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
        return [KeyRecord(*row) for row in rows]

    async def add_first(self, record: KeyRecord) -> bool:
        with unavailable_on_error():
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(
                        keys_table.insert().values(**_row(record), first_of=record.use)
                    )
            except IntegrityError:
                # Another instance bootstrapped this use first (or, astronomically unlikely, the
                # random kid collided); either way the caller reloads and uses what is stored.
                return False
        return True

    async def save_rotation(self, new: KeyRecord, changed: Sequence[KeyRecord]) -> None:
        with unavailable_on_error():
            try:
                async with self._engine.begin() as conn:
                    for record in changed:
                        result = await conn.execute(
                            keys_table.update()
                            .where(keys_table.c.kid == record.kid)
                            .values(retiring_at=record.retiring_at, retired_at=record.retired_at)
                        )
                        if result.rowcount != 1:
                            # Raising inside the transaction block rolls back the earlier updates.
                            raise NotFound(f"no stored key with kid {record.kid!r}")
                    await conn.execute(keys_table.insert().values(**_row(new)))
            except IntegrityError:
                raise Conflict(f"a key with kid {new.kid!r} is already stored") from None


def _row(record: KeyRecord) -> dict[str, object]:
    return {
        "kid": record.kid,
        "use": record.use,
        "alg": record.alg,
        "material": record.material,
        "created_at": record.created_at,
        "activated_at": record.activated_at,
        "retiring_at": record.retiring_at,
        "retired_at": record.retired_at,
    }
