"""Where the key ring comes from, and the two operations that touch it: load and rotate.

Sources, chosen from the settings:

- ``TESSERA_SECRETS_FILE``: the whole ring from a JSON file (read-only; rotate by editing it).
- ``TESSERA_SECRET_KEY``: the one HMAC key comes from this secret (read-only); signing keys
  still come from the database, because no signing key is derived from the secret.
- otherwise the database (:class:`~tessera.stores.sql_keys.SqlKeyStore`). On first start it
  holds nothing, and :func:`load_keyring` generates and stores one key per use, so a fresh
  install just works.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from tessera.clock import Clock
from tessera.config import Settings
from tessera.errors import ConfigError
from tessera.keys import KeyRing, KeyUse, ManagedKey, Rotation, new_key
from tessera.keys_file import env_hmac_key, parse_secrets_file
from tessera.stores.keys import KeyRecord, KeyStore
from tessera.stores.sql_keys import SqlKeyStore


class FileKeySource:
    """The key ring of a secrets file, read (and validated) on every load; never written."""

    __slots__ = ("_path",)

    def __init__(self, path: Path) -> None:
        self._path = path

    def __repr__(self) -> str:
        return f"<FileKeySource {self._path}>"

    @property
    def read_only(self) -> bool:
        return True

    async def load_all(self) -> list[KeyRecord]:
        try:
            # A secrets file is a few kilobytes read at startup and on `keys list`; a thread
            # hop would cost more than the blocking read.
            text = self._path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"secrets file {self._path}: cannot read ({exc.strerror})") from None
        return [key.to_record() for key in parse_secrets_file(text, f"secrets file {self._path}")]

    async def add_first(self, record: KeyRecord) -> bool:
        raise _read_only(f"the secrets file {self._path}")

    async def save_rotation(self, new: KeyRecord, changed: Sequence[KeyRecord]) -> None:
        raise _read_only(f"the secrets file {self._path}")


class EnvSecretKeyStore:
    """The HMAC key from ``TESSERA_SECRET_KEY`` plus the signing keys of another store."""

    __slots__ = ("_hmac", "_signing")

    def __init__(self, secret: str, signing: KeyStore) -> None:
        self._hmac = env_hmac_key(secret).to_record()
        self._signing = signing

    def __repr__(self) -> str:
        return f"<EnvSecretKeyStore hmac={self._hmac.kid} signing={self._signing!r}>"

    @property
    def read_only(self) -> bool:
        return self._signing.read_only

    async def load_all(self) -> list[KeyRecord]:
        signing = [r for r in await self._signing.load_all() if r.use == KeyUse.SIGN]
        return [self._hmac, *signing]

    async def add_first(self, record: KeyRecord) -> bool:
        if record.use == KeyUse.HMAC:
            raise _read_only("TESSERA_SECRET_KEY")
        return await self._signing.add_first(record)

    async def save_rotation(self, new: KeyRecord, changed: Sequence[KeyRecord]) -> None:
        if new.use == KeyUse.HMAC:
            raise _read_only("TESSERA_SECRET_KEY")
        await self._signing.save_rotation(new, changed)


def _read_only(source: str) -> ConfigError:
    return ConfigError(
        f"the keys come from {source}, which Tessera never writes; rotate by changing it "
        "(or unset it to keep the keys in the database)",
        code="read_only_keys",
    )


def open_key_store(settings: Settings, engine: AsyncEngine) -> KeyStore:
    """The key source the settings select (see the module docstring)."""
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    if settings.secrets_file is not None:
        if secret is not None:
            raise ConfigError(
                "TESSERA_SECRET_KEY and TESSERA_SECRETS_FILE are both set; "
                "put the HMAC secret in the secrets file"
            )
        return FileKeySource(settings.secrets_file)
    database = SqlKeyStore(engine)
    if secret is not None:
        return EnvSecretKeyStore(secret, database)
    return database


async def load_keyring_from(store: KeyStore, clock: Clock, signing_alg: str) -> KeyRing:
    """The ring in ``store``; on a writable store, first generate any use that has no key."""
    records = await store.load_all()
    if not store.read_only:
        present = {r.use for r in records}
        missing = [use for use in KeyUse if use.value not in present]
        for use in missing:
            key = new_key(use, signing_alg if use is KeyUse.SIGN else None, clock.now())
            await store.add_first(key.to_record())
        if missing:
            # Reload whether we won or lost: the stored keys are the ones every instance uses.
            records = await store.load_all()
    return KeyRing((ManagedKey.from_record(r) for r in records), clock)


async def load_keyring(settings: Settings, engine: AsyncEngine, clock: Clock) -> KeyRing:
    """The key ring the settings select; a new database gets one HMAC and one signing key."""
    return await load_keyring_from(
        open_key_store(settings, engine), clock, settings.signing_algorithm
    )


async def rotate_keys(
    store: KeyStore,
    clock: Clock,
    use: KeyUse | str,
    alg: str | None,
    overlap: float,
) -> Rotation:
    """Rotate one use in ``store``: a new active key, the active ones retiring after overlap.

    Raises :class:`ConfigError` (``read_only_keys``) when the keys come from a file or the
    environment.
    """
    records = await store.load_all()
    ring = KeyRing((ManagedKey.from_record(r) for r in records), clock)
    rotation = ring.rotate(use, alg, overlap=overlap)
    await store.save_rotation(
        rotation.new.to_record(), [key.to_record() for key in rotation.retiring]
    )
    return rotation
