"""What only the Redis session store promises: key layout, relative TTLs, index upkeep, errors."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import DataError, ResponseError

from tessera.clock import FakeClock
from tessera.config import Settings
from tessera.errors import ConfigError, StoreUnavailable
from tessera.stores.factory import open_session_store, redis_client
from tessera.stores.redis_autopipeline import AutoPipeline, HiredisPackingConnection
from tessera.stores.redis_sessions import RedisSessionStore, _record, _session_fields
from tessera.stores.sessions import SessionRecord
from tests.conftest import REDIS_URL


@pytest.fixture
def store(redis_client: aioredis.Redis, redis_prefix: str) -> RedisSessionStore:
    """A store on the real server under this test's private prefix."""
    return RedisSessionStore(redis_client, redis_prefix)


def record(
    now: float, n: int = 0, *, idle: float = 100.0, user_id: str | None = "alice"
) -> SessionRecord:
    return SessionRecord(
        id_hash=hashlib.sha256(f"{now}-{n}".encode()).hexdigest(),
        data=b"{}",
        created_at=now,
        last_seen=now,
        idle_timeout=idle,
        absolute_expires_at=now + 1000.0,
        user_id=user_id,
    )


def test_every_key_is_hash_tagged_by_what_its_scripts_know() -> None:
    """A session key's cluster slot is its digest's, an index key's is its user's."""
    store = RedisSessionStore(aioredis.Redis(), "app")
    digest = "ab" * 32
    assert store._session_key(digest) == f"app:s:{{{digest}}}"
    assert key_slot(store._session_key(digest).encode()) == key_slot(digest.encode())
    assert key_slot(store._user_key("u-42").encode()) == key_slot(b"u-42")


async def test_ttls_are_relative_to_the_injected_clock(
    store: RedisSessionStore, redis_client: aioredis.Redis, clock: FakeClock
) -> None:
    """With a fake clock far from real time, keys still live for idle and absolute seconds."""
    rec = record(clock.now(), idle=100.0)
    await store.create(rec)
    session_ttl = await redis_client.pttl(store._session_key(rec.id_hash))
    index_ttl = await redis_client.pttl(store._user_key("alice"))
    assert 99_000 < session_ttl <= 100_000
    assert 999_000 < index_ttl <= 1_000_000


async def test_renewal_resets_the_native_ttl(
    store: RedisSessionStore, redis_client: aioredis.Redis, clock: FakeClock
) -> None:
    """A renewing load gives the key a full idle timeout again, in the same script."""
    rec = record(clock.now(), idle=100.0)
    await store.create(rec)
    clock.advance(90.0)
    assert await store.load(rec.id_hash, clock.now(), 60.0) == (rec.touched(clock.now()), True)
    assert 99_000 < await redis_client.pttl(store._session_key(rec.id_hash)) <= 100_000


async def test_renewal_ttl_stops_at_the_absolute_deadline(
    store: RedisSessionStore, redis_client: aioredis.Redis, clock: FakeClock
) -> None:
    """Near the absolute deadline the renewed TTL is what remains of the session's life."""
    rec = record(clock.now(), idle=100.0)._replace(absolute_expires_at=clock.now() + 120.0)
    await store.create(rec)
    clock.advance(90.0)
    await store.load(rec.id_hash, clock.now(), 60.0)
    assert 29_000 < await redis_client.pttl(store._session_key(rec.id_hash)) <= 30_000


async def test_delete_and_rotation_clean_the_user_index(
    store: RedisSessionStore, redis_client: aioredis.Redis, clock: FakeClock
) -> None:
    """delete() and replace() remove the old digest from the user's index at once."""
    index = store._user_key("alice")
    a, b = record(clock.now(), 1), record(clock.now(), 2)
    await store.create(a)
    await store.create(b)
    await store.delete(a.id_hash)
    rotated = b._replace(id_hash="f" * 64)
    assert await store.replace(b.id_hash, rotated, clock.now()) is True
    assert await redis_client.zrange(index, 0, -1) == [rotated.id_hash.encode()]


async def test_update_moving_users_cleans_the_old_index(
    store: RedisSessionStore, redis_client: aioredis.Redis, clock: FakeClock
) -> None:
    """A session moved to another user leaves the old user's index."""
    rec = record(clock.now())
    await store.create(rec)
    assert await store.update(rec._replace(user_id="bob"), clock.now()) is True
    assert await redis_client.exists(store._user_key("alice")) == 0
    assert await redis_client.zrange(store._user_key("bob"), 0, -1) == [rec.id_hash.encode()]


async def test_usual_update_of_a_logged_in_session_keeps_and_repairs_the_index(
    store: RedisSessionStore, redis_client: aioredis.Redis, clock: FakeClock
) -> None:
    """Same user, same absolute expiry: no TTL extension is sent, but the entry is re-added."""
    rec = record(clock.now())
    await store.create(rec)
    changed = rec._replace(data=b"[1]", last_seen=clock.now() + 5)
    assert store._update_commands(changed, clock.now() + 5, rec)[1] == 3  # ZADD, PEXPIRE NX
    assert store._update_commands(changed, clock.now() + 5, None)[1] == 4  # and PEXPIRE GT
    index = store._user_key("alice")
    await redis_client.delete(index)  # lost: evicted at maxmemory, a failover, an operator
    assert await store.update(changed, clock.now() + 5, rec) is True
    assert await redis_client.zrange(index, 0, -1) == [rec.id_hash.encode()]
    assert await redis_client.pttl(index) > 0
    assert await store.delete_for_user("alice") == 1
    assert await store.load(rec.id_hash, clock.now() + 5, 60.0) is None


async def test_update_with_stale_previous_leaves_the_session_indexed(
    store: RedisSessionStore, redis_client: aioredis.Redis, clock: FakeClock
) -> None:
    """Moved to bob by another writer after our load, written back as alice's: in her index."""
    rec = record(clock.now())
    await store.create(rec)
    assert await store.update(rec._replace(user_id="bob"), clock.now()) is True
    assert await store.update(rec._replace(data=b"[2]"), clock.now(), rec) is True
    assert await redis_client.zrange(store._user_key("alice"), 0, -1) == [rec.id_hash.encode()]
    assert await redis_client.zrange(store._user_key("bob"), 0, -1) == []
    assert await store.delete_for_user("alice") == 1


async def test_list_for_user_drops_entries_past_absolute_expiry(
    store: RedisSessionStore, redis_client: aioredis.Redis, clock: FakeClock
) -> None:
    """Index entries whose absolute deadline passed are removed; others only filtered."""
    short = record(clock.now(), 1)._replace(absolute_expires_at=clock.now() + 50.0)
    idle_expired = record(clock.now(), 2, idle=20.0)
    live = record(clock.now(), 3, idle=500.0)
    for rec in (short, idle_expired, live):
        await store.create(rec)
    clock.advance(60.0)
    assert await store.list_for_user("alice", clock.now()) == [live]
    members = await redis_client.zrange(store._user_key("alice"), 0, -1)
    # The idle-expired entry stays until its absolute deadline: it cannot be told apart from a
    # create in flight, and dropping that one would hide a live session from delete_for_user.
    assert sorted(members) == sorted([idle_expired.id_hash.encode(), live.id_hash.encode()])


async def test_index_entries_without_a_session_are_never_listed(
    store: RedisSessionStore, redis_client: aioredis.Redis, clock: FakeClock
) -> None:
    """A dangling index entry (a crash between index and session writes) stays invisible."""
    rec = record(clock.now())
    await store.create(rec)
    await redis_client.zadd(store._user_key("alice"), {"e" * 64: clock.now() + 500.0})
    assert await store.list_for_user("alice", clock.now()) == [rec]
    assert await store.delete_for_user("alice") == 1


async def test_delete_for_user_spares_a_session_now_owned_by_someone_else(
    store: RedisSessionStore, redis_client: aioredis.Redis, clock: FakeClock
) -> None:
    """A stale entry in alice's index never lets delete_for_user remove bob's session."""
    rec = record(clock.now(), user_id="bob")
    await store.create(rec)
    await redis_client.zadd(store._user_key("alice"), {rec.id_hash: rec.absolute_expires_at})
    assert await store.delete_for_user("alice") == 0
    assert await store.list_for_user("bob", clock.now()) == [rec]


async def test_scripts_are_reloaded_after_the_server_forgot_them(
    store: RedisSessionStore, clock: FakeClock
) -> None:
    """A NOSCRIPT reply (server restarted) loads the scripts and replays the pipeline once."""
    rec = record(clock.now())
    await store.create(rec)
    store._update_script.sha = "0" * 40  # what the server no longer knows
    assert await store.update(rec._replace(data=b"[1]"), clock.now()) is True
    loaded = await store.load(rec.id_hash, clock.now(), 60.0)
    assert loaded is not None
    assert loaded[0].data == b"[1]"


async def test_list_all_sees_only_its_prefix(
    redis_client: aioredis.Redis, redis_prefix: str, clock: FakeClock
) -> None:
    """Two prefixes on one server (glob characters included) never see each other's sessions."""
    mine = RedisSessionStore(redis_client, redis_prefix + "[*?]")
    other = RedisSessionStore(redis_client, redis_prefix + "[*?]x")
    a, b = record(clock.now(), 1), record(clock.now(), 2)
    await mine.create(a)
    await other.create(b)
    assert await mine.list_all(clock.now()) == [a]
    assert await other.list_all(clock.now()) == [b]


async def test_a_client_that_decodes_responses_is_refused() -> None:
    """Session data is bytes; a decoding client would corrupt it, so it is a config error."""
    client = aioredis.Redis(decode_responses=True)
    with pytest.raises(ConfigError):
        RedisSessionStore(client)
    await client.aclose()


async def test_redis_down_raises_store_unavailable(clock: FakeClock) -> None:
    """A Redis that refuses connections fails closed with StoreUnavailable on every call."""
    # No retries: redis-py's default backoff would spend seconds per call proving the point.
    client = aioredis.Redis(
        host="127.0.0.1", port=1, password="hunter2-secret", retry=Retry(NoBackoff(), 0)
    )
    store = RedisSessionStore(client, owns_client=True)
    try:
        rec = record(clock.now())
        for call in (
            store.ping(),
            store.load(rec.id_hash, clock.now(), 60.0),
            store.create(rec),
            store.update(rec, clock.now()),
            store.list_for_user("alice", clock.now()),
        ):
            with pytest.raises(StoreUnavailable) as info:
                await call
            assert info.value.store == "redis"
            assert "hunter2" not in str(info.value)
    finally:
        await store.close()


async def test_factory_opens_redis_from_the_url_and_closes_it() -> None:
    """session_store=redis connects to redis_url; close() closes the client it opened."""
    store = await open_session_store(Settings(session_store="redis", redis_url=REDIS_URL))
    assert isinstance(store, RedisSessionStore)
    await store.ping()
    connections = store._client.connection_pool._available_connections
    assert [c.is_connected for c in connections] == [True]
    await store.close()
    assert [c.is_connected for c in connections] == [False]


# --- auto-pipelining -----------------------------------------------------------------------


async def test_concurrent_loads_share_one_pipeline(
    store: RedisSessionStore, clock: FakeClock
) -> None:
    """Loads issued together by concurrent requests reach Redis as one pipeline, each answered."""
    records = [record(clock.now(), n) for n in range(8)]
    for rec in records:
        await store.create(rec)
    before = store._batch.batches_sent
    loaded = await asyncio.gather(*(store.load(r.id_hash, clock.now(), 60.0) for r in records))
    assert store._batch.batches_sent == before + 1
    assert loaded == [(r, False) for r in records]


async def test_a_failed_pipeline_fails_every_caller_with_store_unavailable(
    clock: FakeClock,
) -> None:
    """When the batch's connection fails, each request in it gets StoreUnavailable."""
    client = aioredis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    store = RedisSessionStore(client, owns_client=True)
    try:
        results = await asyncio.gather(
            *(store.load(record(clock.now(), n).id_hash, clock.now(), 60.0) for n in range(5)),
            store.update(record(clock.now()), clock.now()),
            return_exceptions=True,
        )
        assert store._batch.batches_sent == 1
        assert all(isinstance(r, StoreUnavailable) for r in results)
    finally:
        await store.close()


async def test_a_server_error_fails_only_the_group_that_caused_it(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    """One caller's bad command does not disturb the replies of the others in its batch."""
    batch = AutoPipeline(redis_client)
    text, counter = f"{redis_prefix}:text", f"{redis_prefix}:counter"
    await redis_client.set(text, "not a number")
    good, bad = await asyncio.gather(
        batch.execute([("INCR", counter), ("INCR", counter)]),
        batch.execute([("INCR", text)]),
        return_exceptions=True,
    )
    assert good == [1, 2]
    assert isinstance(bad, ResponseError)
    assert batch.batches_sent == 1
    await redis_client.delete(text, counter)


async def test_a_cancelled_caller_does_not_break_its_batch(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    """Cancelling one waiting caller leaves the others' replies intact."""
    batch = AutoPipeline(redis_client)
    key = f"{redis_prefix}:n"
    doomed = asyncio.ensure_future(batch.execute([("INCR", key)]))
    kept = asyncio.ensure_future(batch.execute([("INCR", key)]))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await kept == [2]  # both commands ran; only the reply of the cancelled one is dropped
    assert doomed.cancelled()
    await redis_client.delete(key)


@pytest.mark.parametrize("query", ["", "?protocol=2"])
async def test_factory_client_replies_are_read_straight_from_hiredis(
    query: str, redis_prefix: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the factory's client no reply goes through redis-py's per-reply read_response."""
    client = redis_client(REDIS_URL + query)
    store = RedisSessionStore(client, redis_prefix, owns_client=True)
    try:
        await client.ping()  # the handshake and a first command the ordinary way

        async def refuse(*args: object, **kwargs: object) -> object:
            raise AssertionError("read_response used on the hot path")

        monkeypatch.setattr(Connection, "read_response", refuse)
        rec = record(clock.now())
        await store.create(rec)
        assert await store.load(rec.id_hash, clock.now(), 60.0) == (rec, False)
        assert await store.update(rec._replace(data=b"[2]"), clock.now()) is True
        with pytest.raises(ResponseError):
            await store._batch.execute([("INCR", store._session_key(rec.id_hash))])
    finally:
        monkeypatch.undo()
        await store.close()


async def test_a_kept_connection_the_server_closed_is_replaced_without_failing(
    store: RedisSessionStore, redis_client: aioredis.Redis, clock: FakeClock
) -> None:
    """A connection Redis dropped since (idle timeout, restart) is replaced by the next batch."""
    rec = record(clock.now())
    await store.create(rec)
    kept = store._batch._link
    assert kept is not None
    host, port = kept.transport.get_extra_info("sockname")[:2]
    assert await redis_client.client_kill_filter(addr=f"{host}:{port}") == 1
    assert await store.load(rec.id_hash, clock.now(), 60.0) == (rec, False)
    assert store._batch._link is not kept
    await store.close()


async def test_close_hands_kept_connections_back_to_the_pool(
    redis_client: aioredis.Redis, redis_prefix: str, clock: FakeClock
) -> None:
    """A store that does not own its client leaves no connection checked out after close()."""
    store = RedisSessionStore(redis_client, redis_prefix)
    await store.create(record(clock.now()))
    pool = redis_client.connection_pool
    assert len(pool._in_use_connections) == 1
    await store.close()
    assert len(pool._in_use_connections) == 0
    assert redis_client.connection_pool is pool  # the client itself stays open
    assert await redis_client.ping()


async def test_factory_client_fails_fast_when_redis_is_down(clock: FakeClock) -> None:
    """The factory's client gives up on a refused connection in well under a second."""
    settings = Settings(session_store="redis", redis_url="redis://127.0.0.1:1/0")
    store = await open_session_store(settings)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.load("0" * 64, clock.now(), 60.0)
        assert time.monotonic() - started < 1.0
    finally:
        await store.close()


ARG = st.one_of(
    st.text(max_size=20),
    st.binary(max_size=20),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False),
    st.booleans(),
    st.binary(max_size=8).map(memoryview),
)


@given(
    name=st.sampled_from(["EVALSHA", "SCRIPT LOAD", b"HSET", b"CLIENT SETNAME"]),
    args=st.lists(ARG, max_size=6),
)
def test_hiredis_packing_encodes_exactly_like_redis_py(
    name: str | bytes, args: list[object]
) -> None:
    """The C encoder's bytes equal redis-py's for every argument; both refuse what it refuses."""
    command = (name, *args)
    try:
        expected = b"".join(bytes(p) for p in Connection().pack_command(*command))
    except DataError:
        with pytest.raises(DataError):
            HiredisPackingConnection().pack_command(*command)
        return
    packed = HiredisPackingConnection().pack_command(*command)
    assert b"".join(bytes(p) for p in packed) == expected


def test_factory_client_encodes_with_hiredis_on_tcp_only() -> None:
    """redis:// connections use the hiredis encoder; unix:// keeps its own connection class."""
    tcp = redis_client("redis://127.0.0.1:6379/0")
    unix = redis_client("unix:///tmp/redis.sock")
    assert tcp.connection_pool.connection_class is HiredisPackingConnection
    assert unix.connection_pool.connection_class is not HiredisPackingConnection


# --- record layout ------------------------------------------------------------------------


def legacy_fields(rec: SessionRecord) -> dict[str, str | bytes]:
    """The hash an earlier version wrote: one field per record field, floats as repr."""
    fields: dict[str, str | bytes] = {
        "data": rec.data,
        "created_at": repr(rec.created_at),
        "last_seen": repr(rec.last_seen),
        "idle_timeout": repr(rec.idle_timeout),
        "absolute_expires_at": repr(rec.absolute_expires_at),
        "kind": rec.kind,
        "remembered": "1" if rec.remembered else "0",
    }
    if rec.user_id is not None:
        fields["user_id"] = rec.user_id
    return fields


async def test_sessions_of_the_earlier_layout_are_read_renewed_and_rewritten(
    store: RedisSessionStore, redis_client: aioredis.Redis, clock: FakeClock
) -> None:
    """A session stored before the packed layout still loads, renews, and updates into it."""
    rec = record(clock.now() + 0.1, idle=100.0)
    key = store._session_key(rec.id_hash)
    await redis_client.hset(key, mapping=legacy_fields(rec))  # type: ignore[arg-type]
    await redis_client.pexpire(key, 100_000)
    assert await store.load(rec.id_hash, rec.last_seen, 60.0) == (rec, False)
    clock.advance(70.0)
    renewed = rec.touched(clock.now())
    assert await store.load(rec.id_hash, clock.now(), 60.0) == (renewed, True)
    assert float(await redis_client.hget(key, "last_seen")) == clock.now()  # type: ignore[arg-type]
    updated = renewed._replace(data=b'{"n":1}', user_id="bob", ip="::1")
    assert await store.update(updated, clock.now()) is True
    assert sorted(await redis_client.hkeys(key)) == [b"d", b"m", b"u"]
    assert await store.load(rec.id_hash, clock.now(), 60.0) == (updated, False)
    assert await redis_client.exists(store._user_key("alice")) == 0


async def test_sessions_of_the_earlier_layout_expire_and_are_deleted_as_before(
    store: RedisSessionStore, redis_client: aioredis.Redis, clock: FakeClock
) -> None:
    """Liveness of an earlier-layout session is decided by its fields; it can be rotated away."""
    dead, live = record(clock.now(), 1, idle=100.0), record(clock.now(), 2, idle=200.0)
    for rec in (dead, live):
        await redis_client.hset(store._session_key(rec.id_hash), mapping=legacy_fields(rec))  # type: ignore[arg-type]
    clock.advance(100.0)
    assert await store.update(dead, clock.now()) is False  # idle timeout passed: no resurrection
    assert await store.load(dead.id_hash, clock.now(), 60.0) is None
    rotated = live._replace(id_hash="e" * 64)
    assert await store.replace(live.id_hash, rotated, clock.now()) is True
    assert await redis_client.exists(store._session_key(live.id_hash)) == 0
    assert await store.delete(dead.id_hash) is True
    assert await store.list_for_user("alice", clock.now()) == [rotated]
    await redis_client.delete(store._session_key("e" * 64), store._user_key("alice"))


@given(
    created=st.floats(min_value=-1e12, max_value=1e12),
    idle=st.floats(min_value=0.0, max_value=1e9),
    text=st.one_of(st.none(), st.text(max_size=30)),
    flags=st.tuples(st.booleans(), st.booleans()),
)
def test_the_packed_layout_round_trips_every_field_exactly(
    created: float, idle: float, text: str | None, flags: tuple[bool, bool]
) -> None:
    """Every float, flag and optional string comes back exactly as written (no decimal detour)."""
    rec = SessionRecord(
        "ab" * 32,
        b"\x00\xff",
        created,
        created + idle / 3,
        idle,
        created + idle * 7,
        user_id=text,
        kind=text or "browser",
        ip=text,
        user_agent=None if text is None else text + "é",
        remembered=flags[0],
        persistent=flags[1],
    )
    fields = _session_fields(rec)
    stored = {
        str(name).encode(): value if isinstance(value, bytes) else str(value).encode()
        for name, value in zip(fields[::2], fields[1::2], strict=True)
    }
    assert _record(rec.id_hash, stored) == rec


async def test_a_user_id_of_a_str_subclass_logs_in(
    store: RedisSessionStore, clock: FakeClock
) -> None:
    """An app's own ``class UserId(str)`` is a str: the login stores it (redis-py refuses
    anything but exact types, so the session keeps it as a plain str)."""
    from tessera.sessions import SessionManager

    class UserId(str):
        def __str__(self) -> str:  # a pretty form must not become the stored identity
            return f"UserId<{str.__str__(self)}>"

    manager = SessionManager(store, clock=clock)
    session = await manager.create({"n": 1}, user_id=UserId("u-42"))
    assert type(session.user_id) is str
    assert session.user_id == "u-42"
    assert [info.id for info in await manager.list_sessions("u-42")] == [session.id]


@pytest.mark.parametrize("failure", ["lost", "cancelled"])
async def test_a_rotation_whose_take_fails_leaves_no_session_nobody_holds(
    store: RedisSessionStore, redis_client: aioredis.Redis, clock: FakeClock, failure: str
) -> None:
    """The new session is written before the old one is taken: if the take fails (Redis went
    away, the reply was lost), the new one is undone, so no session whose ID nobody holds stays
    listed on the account page or counts against the cap."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    old = record(clock.now(), 1)
    await store.create(old)
    real_eval = store._eval

    async def take_fails(script: object, key: str, *args: object) -> object:
        if script is store._take_script:
            if failure == "cancelled":  # the request went away (client gone, timeout)
                raise asyncio.CancelledError
            raise RedisConnectionError("lost")
        return await real_eval(script, key, *args)  # type: ignore[arg-type]

    store._eval = take_fails  # type: ignore[method-assign]
    new = old._replace(id_hash="e" * 64)
    with pytest.raises(StoreUnavailable if failure == "lost" else asyncio.CancelledError):
        await store.replace(old.id_hash, new, clock.now())
    assert [r.id_hash for r in await store.list_for_user("alice", clock.now())] == [old.id_hash]
    assert await redis_client.exists(store._session_key(new.id_hash)) == 0


async def test_a_rotation_cancelled_while_writing_the_new_session_leaves_no_orphan(
    store: RedisSessionStore, redis_client: aioredis.Redis, clock: FakeClock
) -> None:
    """Commands are queued at once and sent even if the caller stops waiting: a request
    cancelled after queueing the new session's write (client gone, timeout) still undoes it."""
    old = record(clock.now(), 1)
    await store.create(old)
    real_run = store._run
    first = True

    async def write_then_cancelled(commands: list[Any]) -> list[Any]:
        nonlocal first
        if first:
            first = False
            store._batch.execute(commands)  # queued: it goes out whatever happens next
            raise asyncio.CancelledError
        return await real_run(commands)

    store._run = write_then_cancelled  # type: ignore[method-assign]
    new = old._replace(id_hash="d" * 64)
    with pytest.raises(asyncio.CancelledError):
        await store.replace(old.id_hash, new, clock.now())
    assert [r.id_hash for r in await store.list_for_user("alice", clock.now())] == [old.id_hash]
    assert await redis_client.exists(store._session_key(new.id_hash)) == 0
