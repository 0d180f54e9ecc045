"""The key store contract: how the key ring is persisted, and an in-memory implementation.

Stores keep :class:`KeyRecord` values, the serialized form of a key (PEM or base64url text),
and know nothing of algorithms or states; :mod:`tessera.keys` turns records into a ring and
decides rotations. Key material is stored as is (it must be usable, so it cannot be hashed);
protect the database and the secrets file like the keys they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from tessera.errors import Conflict, NotFound


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One persisted key. Times are Unix seconds; ``repr`` never shows the material."""

    kid: str
    use: str
    """``hmac`` (cookie, CSRF and consent signing secrets) or ``sign`` (token signing)."""
    alg: str
    material: str = field(repr=False)
    """PKCS#8 PEM for asymmetric keys, unpadded base64url for secrets."""
    created_at: float
    activated_at: float
    retiring_at: float | None = None
    retired_at: float | None = None


@runtime_checkable
class KeyStore(Protocol):
    """Where the key ring lives. Read-only sources (file, environment) refuse every write."""

    @property
    def read_only(self) -> bool:
        """True for sources configured outside Tessera; key generation and rotation skip them."""
        ...

    async def load_all(self) -> list[KeyRecord]:
        """Every stored key, in any state (retired ones included, for ``tessera keys list``)."""
        ...

    async def add_first(self, record: KeyRecord) -> bool:
        """Store ``record`` as the first key of its use, unless one was ever stored before.

        Atomic across instances: of several servers starting at once on an empty database,
        exactly one stores its key; the others get False and must reload. That keeps every
        instance on the same key instead of each signing with its own.
        """
        ...

    async def save_rotation(self, new: KeyRecord, changed: Sequence[KeyRecord]) -> None:
        """In one transaction, add ``new`` and store the new times of the ``changed`` keys.

        Only times change on existing keys; their material is never rewritten. Writes nothing
        and raises :class:`~tessera.errors.NotFound` when a changed key is absent, or
        :class:`~tessera.errors.Conflict` when ``new.kid`` is taken.
        """
        ...


class MemoryKeyStore:
    """A key store in a dict: for tests and single-process apps whose keys may die with them."""

    __slots__ = ("_first", "_records")

    def __init__(self, records: Sequence[KeyRecord] = ()) -> None:
        self._records: dict[str, KeyRecord] = {r.kid: r for r in records}
        self._first: set[str] = {r.use for r in records}

    def __repr__(self) -> str:
        return f"<MemoryKeyStore {len(self._records)} keys>"

    @property
    def read_only(self) -> bool:
        return False

    async def load_all(self) -> list[KeyRecord]:
        return list(self._records.values())

    async def add_first(self, record: KeyRecord) -> bool:
        if record.use in self._first:
            return False
        self._first.add(record.use)
        self._records[record.kid] = record
        return True

    async def save_rotation(self, new: KeyRecord, changed: Sequence[KeyRecord]) -> None:
        missing = [r.kid for r in changed if r.kid not in self._records]
        if missing:
            raise NotFound(f"no stored key with kid {missing[0]!r}")
        if new.kid in self._records:
            raise Conflict(f"a key with kid {new.kid!r} is already stored")
        for record in changed:
            self._records[record.kid] = replace(
                self._records[record.kid],
                retiring_at=record.retiring_at,
                retired_at=record.retired_at,
            )
        self._records[new.kid] = new
        self._first.add(new.use)
