"""Key persistence: the KeyStore contract on memory, SQLite and PostgreSQL; sources; bootstrap."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tessera.clock import FakeClock
from tessera.config import Settings, load_settings
from tessera.errors import ConfigError, Conflict, NotFound
from tessera.keys import KeyState, KeyUse, ManagedKey, new_key
from tessera.keys_file import dump_secrets_file, env_hmac_key
from tessera.keys_store import (
    EnvSecretKeyStore,
    FileKeySource,
    load_keyring,
    load_keyring_from,
    open_key_store,
    rotate_keys,
)
from tessera.stores.keys import KeyRecord, KeyStore, MemoryKeyStore
from tessera.stores.sql import create_engine, ensure_schema
from tessera.stores.sql_keys import SqlKeyStore, keys_table
from tests.conftest import POSTGRES_URL

DAY = 86400.0


@pytest.fixture(autouse=True)
def _no_key_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings built here must see only what each test passes."""
    for name in ("TESSERA_SECRET_KEY", "TESSERA_SECRETS_FILE", "TESSERA_SIGNING_ALGORITHM"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> KeyStore:
    """Every writable KeyStore implementation, on real databases."""
    if request.param == "memory":
        return MemoryKeyStore()
    engine: AsyncEngine = request.getfixturevalue(f"{request.param}_engine")
    return SqlKeyStore(engine)


def record(use: str = "sign", alg: str = "EdDSA", at: float = 100.0) -> KeyRecord:
    return new_key(use, alg if use == "sign" else None, at).to_record()


def settings_for(engine: AsyncEngine, **overrides: object) -> Settings:
    """Settings whose database is the test engine's (only the URL kind matters here)."""
    return load_settings(database_url=str(engine.url), **overrides)


# --- the contract --------------------------------------------------------------------------


async def test_new_store_is_empty_and_writable(store: KeyStore) -> None:
    assert await store.load_all() == []
    assert not store.read_only
    assert isinstance(store, KeyStore)


async def test_added_record_loads_back_exactly(store: KeyStore) -> None:
    for use, alg in [("hmac", None), ("sign", "RS256")]:
        stored = record(use, alg or "HS256")
        assert await store.add_first(stored)
    loaded = {r.kid: r for r in await store.load_all()}
    assert len(loaded) == 2
    for r in loaded.values():
        assert ManagedKey.from_record(r).to_record() == r


async def test_add_first_stores_only_the_first_key_of_a_use(store: KeyStore) -> None:
    first, second = record(), record()
    assert await store.add_first(first)
    assert not await store.add_first(second)
    assert await store.add_first(record("hmac"))
    assert {r.kid for r in await store.load_all() if r.use == "sign"} == {first.kid}


async def test_save_rotation_adds_the_new_key_and_changes_only_times(store: KeyStore) -> None:
    old = record(at=100.0)
    await store.add_first(old)
    retiring = KeyRecord(
        old.kid, "sign", "HS256", "ignored", 0.0, 0.0, retiring_at=200.0, retired_at=300.0
    )
    new = record(alg="ES256", at=200.0)
    await store.save_rotation(new, [retiring])
    loaded = {r.kid: r for r in await store.load_all()}
    assert loaded[new.kid] == new
    kept = loaded[old.kid]
    assert (kept.retiring_at, kept.retired_at) == (200.0, 300.0)
    assert (kept.material, kept.alg, kept.activated_at) == (old.material, old.alg, old.activated_at)


async def test_save_rotation_of_an_unknown_key_writes_nothing(store: KeyStore) -> None:
    old = record()
    await store.add_first(old)
    ghost = record()
    changed = [
        KeyRecord(old.kid, "sign", "EdDSA", old.material, 100.0, 100.0, 150.0, 160.0),
        ghost,
    ]
    with pytest.raises(NotFound, match=ghost.kid):
        await store.save_rotation(record(), changed)
    assert await store.load_all() == [old]


async def test_save_rotation_with_a_taken_kid_conflicts(store: KeyStore) -> None:
    old = record()
    await store.add_first(old)
    with pytest.raises(Conflict):
        await store.save_rotation(old, [])
    assert await store.load_all() == [old]


# --- load_keyring on the database ----------------------------------------------------------


async def test_first_start_generates_one_key_per_use_and_later_starts_reuse_them(
    sqlite_engine: AsyncEngine, clock: FakeClock
) -> None:
    settings = settings_for(sqlite_engine, signing_algorithm="ES256")
    ring = await load_keyring(settings, sqlite_engine, clock)
    assert ring.signing_key().alg == "ES256"
    assert len(ring.hmac_keys()) == 1
    again = await load_keyring(settings, sqlite_engine, clock)
    assert again.kids() == ring.kids()
    assert len(await SqlKeyStore(sqlite_engine).load_all()) == 2


async def test_rotation_persists_and_the_old_key_retires_after_the_overlap(
    postgres_engine: AsyncEngine, clock: FakeClock
) -> None:
    settings = settings_for(postgres_engine)
    store = SqlKeyStore(postgres_engine)
    first = (await load_keyring_from(store, clock, "EdDSA")).signing_key()
    clock.advance(DAY)
    rotation = await rotate_keys(store, clock, KeyUse.SIGN, "RS256", settings.key_rotation_overlap)
    assert [k.kid for k in rotation.retiring] == [first.kid]

    ring = await load_keyring(settings, postgres_engine, clock)
    assert ring.signing_key().kid == rotation.new.kid
    assert ring.signing_key().alg == "RS256"
    assert ring.key_for_kid(first.kid) == first
    clock.advance(settings.key_rotation_overlap)
    assert ring.state_of(first.kid) is KeyState.RETIRED
    assert ring.key_for_kid(first.kid) is None
    reloaded = await load_keyring(settings, postgres_engine, clock)
    assert reloaded.key_for_kid(first.kid) is None
    assert len(reloaded) == 3  # retired keys stay listed


class CountingStore(SqlKeyStore):
    """A SqlKeyStore that remembers what each add_first returned.

    With a ``gate``, the first add_first of every instance waits until all of them got there:
    every instance has then seen an empty table, so the race is certain, not up to timing.
    """

    __slots__ = ("gate", "outcomes")

    def __init__(self, engine: AsyncEngine, gate: asyncio.Barrier | None = None) -> None:
        super().__init__(engine)
        self.outcomes: list[bool] = []
        self.gate = gate

    async def add_first(self, record: KeyRecord) -> bool:
        if self.gate is not None and not self.outcomes:
            # Bounded: a bootstrap that stops calling add_first fails instead of hanging.
            await asyncio.wait_for(self.gate.wait(), timeout=30)
        stored = await super().add_first(record)
        self.outcomes.append(stored)
        return stored


@pytest.fixture(params=["sqlite", "postgres"])
def db_engine(request: pytest.FixtureRequest) -> AsyncEngine:
    """Each real database in turn (resolved in a sync fixture: async tests cannot)."""
    engine: AsyncEngine = request.getfixturevalue(f"{request.param}_engine")
    return engine


async def test_instances_starting_at_once_on_an_empty_database_agree_on_the_keys(
    db_engine: AsyncEngine,
) -> None:
    """Eight 'instances' (own engines, own pools) bootstrap concurrently; one key per use wins."""
    engine = db_engine
    if engine.dialect.name == "postgresql":
        # Same private schema as the fixture's engine, reached through separate pools.
        connect_args = {"server_settings": {"search_path": await _search_path(engine)}}
        engines = [create_engine(POSTGRES_URL, connect_args=connect_args) for _ in range(8)]
    else:
        engines = [create_engine(str(engine.url)) for _ in range(8)]
    try:
        clock = FakeClock()
        gate = asyncio.Barrier(len(engines))
        stores = [CountingStore(e, gate) for e in engines]
        rings = await asyncio.gather(*(load_keyring_from(s, clock, "EdDSA") for s in stores))
    finally:
        for e in engines:
            await e.dispose()
    outcomes = [outcome for s in stores for outcome in s.outcomes]
    assert outcomes.count(True) == 2  # one winner per use...
    assert outcomes.count(False) >= len(engines) - 1  # ...every other instance lost a race
    assert len({ring.signing_key().kid for ring in rings}) == 1
    assert len({ring.hmac_keys()[0].kid for ring in rings}) == 1
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(keys_table))).scalar_one()
    assert count == 2


async def _search_path(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        return str((await conn.exec_driver_sql("SHOW search_path")).scalar_one())


async def test_ensure_schema_creates_the_keys_table(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/fresh.db")
    try:
        await ensure_schema(engine)
        assert await SqlKeyStore(engine).load_all() == []
    finally:
        await engine.dispose()


# --- read-only sources ---------------------------------------------------------------------


def write_file(tmp_path: Path, keys: list[ManagedKey]) -> Path:
    path = tmp_path / "secrets.json"
    path.write_text(dump_secrets_file(keys))
    return path


async def test_secrets_file_replaces_the_database_and_refuses_rotation(
    sqlite_engine: AsyncEngine, clock: FakeClock, tmp_path: Path
) -> None:
    keys = [new_key(KeyUse.HMAC, None, 0.0), new_key(KeyUse.SIGN, "ES256", 0.0)]
    path = write_file(tmp_path, keys)
    settings = settings_for(sqlite_engine, secrets_file=path)
    ring = await load_keyring(settings, sqlite_engine, clock)
    assert sorted(ring.kids()) == sorted(k.kid for k in keys)
    assert await SqlKeyStore(sqlite_engine).load_all() == []  # nothing generated in the DB
    store = open_key_store(settings, sqlite_engine)
    assert isinstance(store, FileKeySource)
    with pytest.raises(ConfigError, match="never writes") as info:
        await rotate_keys(store, clock, KeyUse.SIGN, None, DAY)
    assert info.value.code == "read_only_keys"
    assert json.loads(path.read_text())["keys"][1]["retiring_at"] is None


async def test_secrets_file_without_signing_keys_generates_none(
    sqlite_engine: AsyncEngine, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_file(tmp_path, [new_key(KeyUse.HMAC, None, 0.0)])
    ring = await load_keyring(settings_for(sqlite_engine, secrets_file=path), sqlite_engine, clock)
    assert ring.verification_keys() == []


async def test_missing_or_invalid_secrets_file_is_a_config_error(
    sqlite_engine: AsyncEngine, clock: FakeClock, tmp_path: Path
) -> None:
    missing = settings_for(sqlite_engine, secrets_file=tmp_path / "nope.json")
    with pytest.raises(ConfigError, match=r"nope\.json: cannot read"):
        await load_keyring(missing, sqlite_engine, clock)
    bad = tmp_path / "bad.json"
    bad.write_text('{"keys": [{"use": "hmac"}]}')
    with pytest.raises(ConfigError, match=r"bad\.json: keys\[0\]: needs exactly one"):
        await load_keyring(settings_for(sqlite_engine, secrets_file=bad), sqlite_engine, clock)


async def test_env_secret_is_the_hmac_key_and_signing_keys_come_from_the_database(
    sqlite_engine: AsyncEngine, clock: FakeClock
) -> None:
    secret = "s" * 40
    settings = settings_for(sqlite_engine, secret_key=secret)
    ring = await load_keyring(settings, sqlite_engine, clock)
    assert [k.kid for k in ring.hmac_keys()] == [env_hmac_key(secret).kid]
    assert ring.hmac_keys()[0].secret == secret.encode()
    stored = await SqlKeyStore(sqlite_engine).load_all()
    assert [r.use for r in stored] == ["sign"]
    assert ring.signing_key().kid == stored[0].kid

    store = open_key_store(settings, sqlite_engine)
    assert isinstance(store, EnvSecretKeyStore)
    assert secret not in repr(store)
    with pytest.raises(ConfigError, match="TESSERA_SECRET_KEY"):
        await rotate_keys(store, clock, KeyUse.HMAC, None, DAY)
    rotation = await rotate_keys(store, clock, KeyUse.SIGN, None, DAY)
    assert (await load_keyring(settings, sqlite_engine, clock)).signing_key() == rotation.new.key


async def test_env_secret_ignores_hmac_keys_left_in_the_database(
    sqlite_engine: AsyncEngine, clock: FakeClock
) -> None:
    await load_keyring(settings_for(sqlite_engine), sqlite_engine, clock)
    settings = settings_for(sqlite_engine, secret_key="k" * 32)
    ring = await load_keyring(settings, sqlite_engine, clock)
    assert [k.kid for k in ring.hmac_keys()] == [env_hmac_key("k" * 32).kid]


def test_secret_key_and_secrets_file_together_are_refused(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    settings = settings_for(sqlite_engine, secret_key="k" * 32, secrets_file=tmp_path / "s.json")
    with pytest.raises(ConfigError, match="both set"):
        open_key_store(settings, sqlite_engine)


async def test_rotation_on_an_empty_store_retires_nothing(clock: FakeClock) -> None:
    store = MemoryKeyStore()
    rotation = await rotate_keys(store, clock, KeyUse.HMAC, None, DAY)
    assert rotation.retiring == ()
    assert [r.kid for r in await store.load_all()] == [rotation.new.kid]
