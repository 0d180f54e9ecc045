"""The SessionStore contract, run against every store: memory, SQLite, PostgreSQL and Redis.

Stores are checked through the Protocol alone, with a fake clock; PostgreSQL and Redis are the
real servers (a private schema / key prefix per test, see conftest.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.clock import FakeClock
from tessera.stores.factory import redis_client
from tessera.stores.redis_sessions import RedisSessionStore
from tessera.stores.sessions import SessionRecord, SessionStore
from tessera.stores.sql_sessions import SqlSessionStore
from tests.conftest import REDIS_URL

IDLE = 1800.0
ABSOLUTE = 12 * 3600.0
RENEW = 60.0
NEVER = 1e12
"""A renewal interval no test reaches: a load that only reads."""


async def _factory_client(query: str) -> AsyncIterator[object]:
    client = redis_client(REDIS_URL + query)
    yield client
    await client.aclose()


@pytest.fixture
async def factory_redis() -> AsyncIterator[object]:
    """The factory's client: hiredis encoding, replies read straight from hiredis, RESP3."""
    async for client in _factory_client(""):
        yield client


@pytest.fixture
async def factory_redis_resp2() -> AsyncIterator[object]:
    """The factory's client speaking RESP2."""
    async for client in _factory_client("?protocol=2"):
        yield client


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        "sqlite-sqlalchemy",
        "postgres",
        "postgres-sqlalchemy",
        "redis",
        "redis-factory",
        "redis-factory-resp2",
    ]
)
def store(request: pytest.FixtureRequest) -> SessionStore:
    """Each store in turn, empty; the engine and client fixtures close what they opened.

    Redis runs three ways: a plain redis-py client (redis-py reads every reply), and the
    factory's client, whose replies the auto-pipeline reads straight from hiredis, under RESP3
    (redis-py's default) and RESP2. SQL runs twice: the per-request statements sent on the
    driver (the default), and everything through SQLAlchemy's execution (``on_driver=False``,
    as on another driver).
    """
    kind = request.param
    if kind.startswith("redis"):
        client = {
            "redis": "redis_client",
            "redis-factory": "factory_redis",
            "redis-factory-resp2": "factory_redis_resp2",
        }[kind]
        return RedisSessionStore(
            request.getfixturevalue(client), request.getfixturevalue("redis_prefix")
        )
    if kind == "memory":
        from tessera.stores.memory_sessions import MemorySessionStore

        return MemorySessionStore()
    database, _, path = kind.partition("-")
    return SqlSessionStore(request.getfixturevalue(f"{database}_engine"), on_driver=not path)


def new_digest() -> str:
    return hashlib.sha256(secrets.token_bytes(32)).hexdigest()


def make(
    now: float,
    *,
    user_id: str | None = None,
    data: bytes = b'{"n": 1}',
    idle: float = IDLE,
    absolute: float = ABSOLUTE,
    **fields: object,
) -> SessionRecord:
    return SessionRecord(
        id_hash=new_digest(),
        data=data,
        created_at=now,
        last_seen=now,
        idle_timeout=idle,
        absolute_expires_at=now + absolute,
        user_id=user_id,
        **fields,  # type: ignore[arg-type]
    )


async def read(store: SessionStore, id_hash: str, now: float) -> SessionRecord | None:
    """Load without renewing: what the store holds for that digest at ``now``."""
    loaded = await store.load(id_hash, now, NEVER)
    return None if loaded is None else loaded[0]


# --- create / load -------------------------------------------------------------------------


async def test_create_then_load_round_trips_every_field(
    store: SessionStore, clock: FakeClock
) -> None:
    """Every field, including fractional times and non-ASCII strings, comes back unchanged."""
    clock.advance(0.123456789)
    record = SessionRecord(
        id_hash=new_digest(),
        data='{"name": "Zoë", "flag": "✓", "日本": [1, 2.5, null]}'.encode(),
        created_at=clock.now() - 10.25,
        last_seen=clock.now(),
        idle_timeout=900.5,
        absolute_expires_at=clock.now() + 3600.75,
        user_id="user-ü-1",
        kind="token",
        ip="2001:db8::1",
        user_agent="Mozilla/5.0 (X11; Linux) Zoë/1.0",
        remembered=True,
        persistent=True,
    )
    # Every field must differ from its default, or a store that drops one would still pass.
    assert all(
        getattr(record, name) != default for name, default in SessionRecord._field_defaults.items()
    )
    await store.create(record)
    assert await store.load(record.id_hash, clock.now(), RENEW) == (record, False)


async def test_optional_fields_round_trip_as_none(store: SessionStore, clock: FakeClock) -> None:
    """An anonymous session without IP or user agent keeps its None fields and defaults."""
    record = make(clock.now())
    await store.create(record)
    assert await read(store, record.id_hash, clock.now()) == record


async def test_load_of_unknown_digest_is_none(store: SessionStore, clock: FakeClock) -> None:
    """A digest that was never stored loads as None."""
    assert await store.load(new_digest(), clock.now(), RENEW) is None


async def test_load_ends_exactly_at_idle_timeout(store: SessionStore, clock: FakeClock) -> None:
    """A session is live just before its idle deadline and gone at it."""
    record = make(clock.now(), idle=100.0)
    await store.create(record)
    clock.advance(99.5)
    assert await read(store, record.id_hash, clock.now()) == record
    clock.advance(0.5)
    assert await store.load(record.id_hash, clock.now(), RENEW) is None


async def test_absolute_timeout_ends_a_busy_session(store: SessionStore, clock: FakeClock) -> None:
    """Renewals keep extending the idle deadline but never past the absolute one."""
    record = make(clock.now(), idle=100.0, absolute=250.0)
    await store.create(record)
    for _ in range(2):
        clock.advance(90.0)
        loaded = await store.load(record.id_hash, clock.now(), RENEW)
        assert loaded is not None
        assert loaded[1] is True
    clock.advance(70.0)  # t=250: idle deadline would be 280, absolute is 250
    assert await store.load(record.id_hash, clock.now(), RENEW) is None


# --- renewal -------------------------------------------------------------------------------


async def test_renewal_when_due_moves_last_seen(store: SessionStore, clock: FakeClock) -> None:
    """A load at or past the renewal interval reports True and stores last_seen = now."""
    record = make(clock.now())
    await store.create(record)
    clock.advance(RENEW)
    loaded = await store.load(record.id_hash, clock.now(), RENEW)
    assert loaded == (record.touched(clock.now()), True)
    assert await read(store, record.id_hash, clock.now()) == record.touched(clock.now())


async def test_no_renewal_before_due(store: SessionStore, clock: FakeClock) -> None:
    """A load before the interval reports False and leaves last_seen where it was."""
    record = make(clock.now())
    await store.create(record)
    clock.advance(RENEW - 0.5)
    assert await store.load(record.id_hash, clock.now(), RENEW) == (record, False)
    assert await read(store, record.id_hash, clock.now()) == record


async def test_loads_that_find_the_renewal_due_at_once_write_it_once(
    store: SessionStore, clock: FakeClock
) -> None:
    """A burst of requests after a pause all find the renewal due: one of them writes it, the
    others find it done (at most one write per renewal interval, however many requests)."""
    record = make(clock.now())
    await store.create(record)
    clock.advance(RENEW)
    first = clock.now()
    loads = await asyncio.gather(
        *(store.load(record.id_hash, first + i / 1000, RENEW) for i in range(16))
    )
    assert all(loaded is not None for loaded in loads)
    assert sum(loaded[1] for loaded in loads if loaded is not None) == 1
    stored = await read(store, record.id_hash, first + 1)
    assert stored is not None
    assert stored.last_seen in {first + i / 1000 for i in range(16)}


async def test_renewal_extends_life_past_the_old_idle_deadline(
    store: SessionStore, clock: FakeClock
) -> None:
    """After a renewal the session outlives the idle deadline it had before."""
    record = make(clock.now(), idle=100.0)
    await store.create(record)
    clock.advance(90.0)
    assert (await store.load(record.id_hash, clock.now(), RENEW)) is not None
    clock.advance(60.0)  # 150s after creation, 60s after the renewal
    assert await read(store, record.id_hash, clock.now()) == record.touched(clock.now() - 60.0)


async def test_zero_interval_renews_on_every_load(store: SessionStore, clock: FakeClock) -> None:
    """With a renewal interval of 0 every load writes last_seen."""
    record = make(clock.now())
    await store.create(record)
    assert await store.load(record.id_hash, clock.now(), 0.0) == (record, True)
    clock.advance(1.5)
    assert await store.load(record.id_hash, clock.now(), 0.0) == (
        record.touched(clock.now()),
        True,
    )


# --- update --------------------------------------------------------------------------------


async def test_update_of_live_session_is_stored(store: SessionStore, clock: FakeClock) -> None:
    """Data and metadata of a live session are replaced."""
    record = make(clock.now(), user_id="u1")
    await store.create(record)
    clock.advance(10.0)
    changed = record._replace(
        data=b'{"cart": [1]}',
        last_seen=clock.now(),
        ip="192.0.2.7",
        remembered=True,
        persistent=True,
    )
    assert await store.update(changed, clock.now()) is True
    assert await read(store, record.id_hash, clock.now()) == changed
    assert await store.list_for_user("u1", clock.now()) == [changed]


async def test_update_told_the_previous_record_stores_and_lists_alike(
    store: SessionStore, clock: FakeClock
) -> None:
    """With ``previous`` (the manager's usual save) the result is the same as without it."""
    record = make(clock.now(), user_id="u1")
    await store.create(record)
    clock.advance(10.0)
    changed = record._replace(data=b'{"n": 2}', last_seen=clock.now())
    assert await store.update(changed, clock.now(), record) is True
    assert await read(store, record.id_hash, clock.now()) == changed
    assert await store.list_for_user("u1", clock.now()) == [changed]
    await store.delete(record.id_hash)
    assert await store.update(changed._replace(data=b"{}"), clock.now(), changed) is False
    assert await read(store, record.id_hash, clock.now()) is None
    assert await store.list_for_user("u1", clock.now()) == []


async def test_update_can_move_a_session_to_another_user(
    store: SessionStore, clock: FakeClock
) -> None:
    """After an update naming a new user, only that user's list shows the session."""
    record = make(clock.now(), user_id="before")
    await store.create(record)
    moved = record._replace(user_id="after")
    assert await store.update(moved, clock.now()) is True
    assert await store.list_for_user("before", clock.now()) == []
    assert await store.list_for_user("after", clock.now()) == [moved]
    assert await store.delete_for_user("before") == 0
    assert await read(store, record.id_hash, clock.now()) == moved


async def test_update_after_delete_does_not_resurrect(
    store: SessionStore, clock: FakeClock
) -> None:
    """A late save of a deleted session returns False and writes nothing."""
    record = make(clock.now(), user_id="u1")
    await store.create(record)
    await store.delete(record.id_hash)
    assert await store.update(record._replace(data=b"{}"), clock.now()) is False
    assert await read(store, record.id_hash, clock.now()) is None
    assert await store.list_for_user("u1", clock.now()) == []


async def test_update_after_expiry_does_not_resurrect(
    store: SessionStore, clock: FakeClock
) -> None:
    """A save of an expired session returns False, even with a fresh last_seen."""
    record = make(clock.now(), user_id="u1", idle=100.0)
    await store.create(record)
    clock.advance(100.0)
    assert await store.update(record.touched(clock.now()), clock.now()) is False
    assert await read(store, record.id_hash, clock.now()) is None
    assert await store.list_for_user("u1", clock.now()) == []


async def test_update_of_unknown_session_creates_nothing(
    store: SessionStore, clock: FakeClock
) -> None:
    """update() is never an upsert."""
    record = make(clock.now(), user_id="u1")
    assert await store.update(record, clock.now()) is False
    assert await read(store, record.id_hash, clock.now()) is None
    assert await store.list_for_user("u1", clock.now()) == []


# --- replace (rotation) --------------------------------------------------------------------


async def test_replace_moves_the_session_to_a_new_digest(
    store: SessionStore, clock: FakeClock
) -> None:
    """After replace the old digest is gone and the new one holds the same data."""
    old = make(clock.now(), user_id="u1", data=b'{"step": "login"}')
    await store.create(old)
    clock.advance(5.0)
    new = old._replace(id_hash=new_digest(), last_seen=clock.now())
    assert await store.replace(old.id_hash, new, clock.now()) is True
    assert await read(store, old.id_hash, clock.now()) is None
    assert await read(store, new.id_hash, clock.now()) == new
    assert await store.list_for_user("u1", clock.now()) == [new]


async def test_replace_can_log_an_anonymous_session_in(
    store: SessionStore, clock: FakeClock
) -> None:
    """Rotation on login: the new record names the user and joins their index."""
    old = make(clock.now())
    await store.create(old)
    new = old._replace(id_hash=new_digest(), user_id="u1", persistent=True)
    assert await store.replace(old.id_hash, new, clock.now()) is True
    assert await store.list_for_user("u1", clock.now()) == [new]


@pytest.mark.parametrize("how", ["deleted", "expired", "never"])
async def test_replace_of_gone_session_creates_nothing(
    store: SessionStore, clock: FakeClock, how: str
) -> None:
    """replace returns False and does not create the new record when the old one is gone."""
    old = make(clock.now(), user_id="u1", idle=100.0)
    if how != "never":
        await store.create(old)
    if how == "deleted":
        await store.delete(old.id_hash)
    if how == "expired":
        clock.advance(100.0)
    new = old._replace(id_hash=new_digest(), last_seen=clock.now())
    assert await store.replace(old.id_hash, new, clock.now()) is False
    assert await read(store, new.id_hash, clock.now()) is None
    assert await read(store, old.id_hash, clock.now()) is None
    assert await store.list_for_user("u1", clock.now()) == []


async def test_only_one_of_two_concurrent_rotations_wins(
    store: SessionStore, clock: FakeClock
) -> None:
    """Two parallel rotations of one session leave exactly one new session."""
    old = make(clock.now(), user_id="u1")
    await store.create(old)
    a = old._replace(id_hash=new_digest())
    b = old._replace(id_hash=new_digest())
    results = await asyncio.gather(
        store.replace(old.id_hash, a, clock.now()), store.replace(old.id_hash, b, clock.now())
    )
    assert sorted(results) == [False, True]
    winner = a if results[0] else b
    assert await store.list_for_user("u1", clock.now()) == [winner]


async def test_a_rotation_racing_log_out_everywhere_never_survives_it(
    store: SessionStore, clock: FakeClock
) -> None:
    """Whichever goes first, no session of the user is live once both are done: a rotation
    that loses says so, and one that wins leaves its new ID where ``delete_for_user`` finds it.
    (Redis took the old session before indexing the new one, PostgreSQL deleted and inserted:
    either way "log out everywhere" could miss the rotated session.) Repeated, as the window
    is a round trip wide."""
    for _ in range(30):
        old = make(clock.now(), user_id="racer")
        await store.create(old)
        new = old._replace(id_hash=new_digest())
        await asyncio.gather(
            store.replace(old.id_hash, new, clock.now()), store.delete_for_user("racer")
        )
        assert await store.list_for_user("racer", clock.now()) == []
        assert await read(store, new.id_hash, clock.now()) is None


# --- delete / per-user ---------------------------------------------------------------------


async def test_delete_returns_whether_it_existed(store: SessionStore, clock: FakeClock) -> None:
    """Deleting a live session returns True once, then False."""
    record = make(clock.now(), user_id="u1")
    await store.create(record)
    assert await store.delete(record.id_hash) is True
    assert await store.delete(record.id_hash) is False
    assert await read(store, record.id_hash, clock.now()) is None
    assert await store.list_for_user("u1", clock.now()) == []


async def test_list_for_user_lists_live_sessions_oldest_first(
    store: SessionStore, clock: FakeClock
) -> None:
    """Only that user's live sessions are listed, ordered by created_at."""
    expired = make(clock.now(), user_id="alice", idle=50.0)
    await store.create(expired)
    clock.advance(10.0)
    first = make(clock.now(), user_id="alice")
    clock.advance(10.0)
    second = make(clock.now(), user_id="alice", kind="token")
    other = make(clock.now(), user_id="bob")
    # Created newest first, so insertion order cannot pass for age order.
    for record in (second, other, first):
        await store.create(record)
    clock.advance(40.0)
    assert await store.list_for_user("alice", clock.now()) == [first, second]
    assert await store.list_for_user("bob", clock.now()) == [other]
    assert await store.list_for_user("carol", clock.now()) == []


async def test_delete_for_user_keeps_the_named_session(
    store: SessionStore, clock: FakeClock
) -> None:
    """delete_for_user removes the user's other sessions, counts them, and spares other users."""
    mine = [make(clock.now() + i, user_id="alice") for i in range(3)]
    theirs = make(clock.now(), user_id="bob")
    anonymous = make(clock.now())
    for record in (*mine, theirs, anonymous):
        await store.create(record)
    assert await store.delete_for_user("alice", keep=mine[1].id_hash) == 2
    assert await store.list_for_user("alice", clock.now()) == [mine[1]]
    assert await read(store, mine[0].id_hash, clock.now()) is None
    assert await store.list_for_user("bob", clock.now()) == [theirs]
    assert await read(store, anonymous.id_hash, clock.now()) == anonymous


async def test_delete_for_user_without_keep_removes_all(
    store: SessionStore, clock: FakeClock
) -> None:
    """Without keep every session of the user goes; a second call finds nothing."""
    for i in range(2):
        await store.create(make(clock.now() + i, user_id="alice"))
    assert await store.delete_for_user("alice") == 2
    assert await store.list_for_user("alice", clock.now()) == []
    assert await store.delete_for_user("alice") == 0


# --- list_all / sweep / ping ---------------------------------------------------------------


async def test_list_all_is_newest_first_and_limited(store: SessionStore, clock: FakeClock) -> None:
    """Live sessions of everyone come newest first, at most ``limit``; expired ones never."""
    expired = make(clock.now(), idle=50.0)
    records = []
    for i in range(3):
        clock.advance(10.0)
        records.append(make(clock.now(), user_id=f"u{i}" if i else None))
    for record in (expired, *records):
        await store.create(record)
    clock.advance(30.0)
    assert await store.list_all(clock.now()) == records[::-1]
    assert await store.list_all(clock.now(), limit=2) == [records[2], records[1]]


async def test_sweep_removes_expired_and_keeps_live(store: SessionStore, clock: FakeClock) -> None:
    """After a sweep expired sessions stay gone and live ones stay; memory and SQL count them."""
    short = [make(clock.now(), user_id="u1", idle=100.0) for _ in range(3)]
    long = make(clock.now(), user_id="u1", idle=1000.0)
    for record in (*short, long):
        await store.create(record)
    clock.advance(150.0)
    removed = await store.sweep(clock.now())
    # Redis expires keys itself; its sweep has nothing to remove (documented in the store).
    assert removed == (0 if isinstance(store, RedisSessionStore) else 3)
    assert await store.sweep(clock.now()) == 0
    assert await read(store, long.id_hash, clock.now()) == long
    assert await read(store, short[0].id_hash, clock.now()) is None
    assert await store.list_for_user("u1", clock.now()) == [long]


async def test_sweep_spares_a_renewed_session(store: SessionStore, clock: FakeClock) -> None:
    """A renewal moves the expiry the sweep goes by, so a renewed session survives it."""
    record = make(clock.now(), idle=100.0)
    await store.create(record)
    clock.advance(90.0)
    assert await store.load(record.id_hash, clock.now(), RENEW) is not None
    clock.advance(20.0)  # past the first idle deadline, inside the renewed one
    assert await store.sweep(clock.now()) == 0
    assert await read(store, record.id_hash, clock.now()) == record.touched(clock.now() - 20.0)


async def test_ping_succeeds_on_a_reachable_store(store: SessionStore) -> None:
    """ping() returns quietly when the backend answers."""
    await store.ping()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 16,
        bytes(range(256)),
        '{"emoji": "🍪", "quote": "\\"", "nul": "\\u0000", "ß": "Ωμέγα"}'.encode(),
        b"{" + b'"k": "' + b"x" * 4000 + b'"}',
    ],
    ids=["empty", "nuls", "all-bytes", "unicode-json", "4k"],
)
async def test_session_data_is_binary_safe(
    store: SessionStore, clock: FakeClock, data: bytes
) -> None:
    """Data bytes round-trip exactly through create, update and rotation."""
    record = make(clock.now(), data=data)
    await store.create(record)
    assert await read(store, record.id_hash, clock.now()) == record
    updated = record._replace(data=data[::-1])
    assert await store.update(updated, clock.now()) is True
    rotated = updated._replace(id_hash=new_digest())
    assert await store.replace(record.id_hash, rotated, clock.now()) is True
    loaded = await read(store, rotated.id_hash, clock.now())
    assert loaded is not None
    assert loaded.data == data[::-1]


# --- concurrency and a model ---------------------------------------------------------------


async def test_concurrent_loads_and_updates_do_not_corrupt(
    store: SessionStore, clock: FakeClock
) -> None:
    """Interleaved renewing loads and updates leave every session whole and one of its writes."""
    records = [make(clock.now(), user_id="u1", data=b'{"v": 0}') for _ in range(4)]
    for record in records:
        await store.create(record)
    versions = {b'{"v": %d}' % i for i in range(6)}

    async def write(record: SessionRecord, version: int) -> bool:
        return await store.update(record._replace(data=b'{"v": %d}' % version), clock.now())

    tasks = [store.load(r.id_hash, clock.now(), 0.0) for r in records for _ in range(10)]
    tasks += [write(r, v) for r in records for v in range(1, 6)]
    results = await asyncio.gather(*tasks)
    for result in results:
        if isinstance(result, tuple):
            assert result[0].data in versions
        else:
            assert result is True
    listed = await store.list_for_user("u1", clock.now())
    assert sorted(r.id_hash for r in listed) == sorted(r.id_hash for r in records)
    for record in listed:
        assert record.data in versions
        assert record._replace(data=b"") == records[0]._replace(id_hash=record.id_hash, data=b"")


OPS = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(["a", "b", None]), st.binary(max_size=24)),
    st.tuples(st.just("update"), st.integers(0, 9), st.sampled_from(["a", "b", None])),
    st.tuples(st.just("replace"), st.integers(0, 9)),
    st.tuples(st.just("delete"), st.integers(0, 9)),
    st.tuples(st.just("touch"), st.integers(0, 9)),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 10.0, 30.0, 60.0, 100.0, 250.0])),
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(OPS, min_size=1, max_size=14))
async def test_store_agrees_with_a_dict_model(
    store: SessionStore, ops: list[tuple[object, ...]]
) -> None:
    """Any sequence of create/update/replace/delete/renew/time-travel matches a plain dict."""
    clock = FakeClock()
    scope = secrets.token_hex(4)  # examples share the store: keep users apart
    model: dict[str, SessionRecord] = {}
    known: list[str] = []

    def user(name: object) -> str | None:
        return None if name is None else f"{scope}-{name}"

    def pick(index: object) -> str:
        return known[int(str(index)) % len(known)] if known else new_digest()

    def live(id_hash: str) -> SessionRecord | None:
        record = model.get(id_hash)
        return record if record is not None and record.is_live(clock.now()) else None

    for op, *args in ops:
        now = clock.now()
        if op == "create":
            data = cast(bytes, args[1])
            record = make(now, user_id=user(args[0]), data=data, idle=100.0, absolute=250.0)
            await store.create(record)
            model[record.id_hash] = record
            known.append(record.id_hash)
        elif op == "update":
            id_hash = pick(args[0])
            base = live(id_hash) or make(now)
            changed = base._replace(
                id_hash=id_hash,
                data=b"u" + base.data,
                user_id=user(args[1]),
                persistent=not base.persistent,
            )
            assert await store.update(changed, now) is (live(id_hash) is not None)
            if live(id_hash) is not None:
                model[id_hash] = changed
        elif op == "replace":
            id_hash = pick(args[0])
            new = (live(id_hash) or make(now))._replace(id_hash=new_digest(), last_seen=now)
            assert await store.replace(id_hash, new, now) is (live(id_hash) is not None)
            if live(id_hash) is not None:
                del model[id_hash]
                model[new.id_hash] = new
            known.append(new.id_hash)
        elif op == "delete":
            id_hash = pick(args[0])
            deleted = await store.delete(id_hash)
            if live(id_hash) is not None:
                assert deleted is True
            elif id_hash not in model:
                assert deleted is False
            model.pop(id_hash, None)
        elif op == "touch":
            id_hash = pick(args[0])
            loaded = await store.load(id_hash, now, 30.0)
            expected = live(id_hash)
            if expected is None:
                assert loaded is None
            else:
                due = now - expected.last_seen >= 30.0
                model[id_hash] = expected.touched(now) if due else expected
                assert loaded == (model[id_hash], due)
        else:
            clock.advance(float(str(args[0])))
        for id_hash in known:
            assert await read(store, id_hash, clock.now()) == live(id_hash)
        for name in ("a", "b"):
            listed = await store.list_for_user(f"{scope}-{name}", clock.now())
            expected_ids = {h for h in known if (r := live(h)) and r.user_id == user(name)}
            assert {r.id_hash for r in listed} == expected_ids
            assert [r.created_at for r in listed] == sorted(r.created_at for r in listed)
