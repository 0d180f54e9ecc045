"""Login throttling: one contract over memory, SQLite, PostgreSQL and Redis, with a fake clock."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from sqlalchemy import select

from tessera.clock import FakeClock
from tessera.errors import ConfigError
from tessera.identity.throttle import (
    LoginThrottle,
    ThrottleDecision,
    ThrottlePolicy,
    ThrottleStore,
    account_throttle_key,
    ip_throttle_key,
)
from tessera.metrics import Metrics
from tessera.stores.memory_throttle import MemoryThrottleStore
from tessera.stores.redis_throttle import RedisThrottleStore
from tessera.stores.sql_throttle import SqlThrottleStore, throttle_table

IP = "203.0.113.7"
WINDOW = 15 * 60
OK = ThrottleDecision(True, 0)


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def store(request: pytest.FixtureRequest) -> ThrottleStore:
    """Each throttle store, empty (Redis under a key prefix of this test's own)."""
    if request.param == "memory":
        return MemoryThrottleStore()
    if request.param == "redis":
        client: Redis = request.getfixturevalue("redis_client")
        return RedisThrottleStore(client, prefix=request.getfixturevalue("redis_prefix"))
    return SqlThrottleStore(request.getfixturevalue(f"{request.param}_engine"))


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def throttle(store: ThrottleStore, clock: FakeClock, metrics: Metrics) -> LoginThrottle:
    return LoginThrottle(store, clock, metrics=metrics)


async def fail(
    throttle: LoginThrottle, n: int, account: str = "alice", ip: str | None = IP
) -> None:
    for _ in range(n):
        await throttle.record_failure(account, ip)


async def test_store_satisfies_the_protocol(store: ThrottleStore) -> None:
    assert isinstance(store, ThrottleStore)


async def test_attempts_below_the_account_limit_are_allowed(throttle: LoginThrottle) -> None:
    assert await throttle.check("alice", IP) == OK
    await fail(throttle, 4)
    assert await throttle.check("alice", IP) == OK


async def test_the_limit_th_failure_blocks_for_the_base_delay(
    throttle: LoginThrottle, clock: FakeClock, metrics: Metrics
) -> None:
    await fail(throttle, 4)
    assert await throttle.record_failure("alice", IP) == ThrottleDecision(False, 1)
    assert await throttle.check("alice", IP) == ThrottleDecision(False, 1)
    assert await throttle.check("ALICE", "198.51.100.1") == ThrottleDecision(False, 1)
    assert metrics.get("login.throttled") == 2
    assert metrics.get("login.failed") == 5
    clock.advance(1)
    assert await throttle.check("alice", IP) == OK


async def test_other_accounts_are_not_blocked_by_one_accounts_failures(
    throttle: LoginThrottle,
) -> None:
    await fail(throttle, 6)
    assert not (await throttle.check("alice", IP)).allowed
    assert await throttle.check("bob", IP) == OK


async def test_backoff_doubles_with_each_further_failure(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    await fail(throttle, 4)
    seen = []
    for _ in range(6):
        decision = await throttle.record_failure("alice", IP)
        seen.append(decision.retry_after)
        assert await throttle.check("alice", IP) == decision
        clock.advance(decision.retry_after - 0.5)
        assert not (await throttle.check("alice", IP)).allowed
        clock.advance(0.5)
        assert await throttle.check("alice", IP) == OK
    assert seen == [1, 2, 4, 8, 16, 32]


async def test_backoff_is_capped(throttle: LoginThrottle, clock: FakeClock) -> None:
    await fail(throttle, 5 + 40)  # 2**40 s without the cap
    assert await throttle.check("alice", IP) == ThrottleDecision(False, WINDOW)
    clock.advance(WINDOW - 1)
    assert await throttle.check("alice", IP) == ThrottleDecision(False, 1)


async def test_retry_after_is_rounded_up(throttle: LoginThrottle, clock: FakeClock) -> None:
    await fail(throttle, 6)  # blocked for 2 s
    clock.advance(0.25)
    assert await throttle.check("alice", IP) == ThrottleDecision(False, 2)
    clock.advance(1)
    assert await throttle.check("alice", IP) == ThrottleDecision(False, 1)


async def test_failures_older_than_the_window_are_forgotten(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    await fail(throttle, 4)
    clock.advance(WINDOW - 1)
    # Still inside the window: the fifth failure blocks.
    assert not (await throttle.record_failure("alice", IP)).allowed
    clock.advance(WINDOW)
    assert await throttle.check("alice", IP) == OK
    # The count restarted: four more failures are allowed again.
    await fail(throttle, 4)
    assert await throttle.check("alice", IP) == OK


async def test_an_attacker_retrying_at_once_gets_few_guesses_per_window(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    """Retrying the moment Retry-After allows: limit + ~log2(max/base) guesses per window."""
    start, guesses_first_window, guesses = clock.now(), 0, 0
    while clock.now() < start + 4 * WINDOW:
        decision = await throttle.check("alice", None)
        if decision.allowed:
            await throttle.record_failure("alice", None)
            guesses += 1
            guesses_first_window += clock.now() < start + WINDOW
            clock.advance(0.1)
        else:
            clock.advance(decision.retry_after)
    # Five free guesses, then one after each block of 1, 2, 4 ... 256 s; the next block (512 s)
    # runs past the window.
    assert guesses_first_window == 5 + 9
    assert guesses <= 4 * 15


async def test_success_resets_the_account_but_not_the_ip(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    await fail(throttle, 5)
    clock.advance(1)
    await throttle.record_success("alice", IP)
    assert await throttle.check("alice", IP) == OK
    await fail(throttle, 4)
    assert await throttle.check("alice", IP) == OK
    # The IP kept counting: 5 + 4 = 9, plus 11 on other accounts reaches its limit of 20.
    for i in range(11):
        await throttle.record_failure(f"user{i}", IP)
    assert await throttle.check("alice", IP) == ThrottleDecision(False, 1)


async def test_ip_limit_spans_accounts(throttle: LoginThrottle, clock: FakeClock) -> None:
    for i in range(19):
        await throttle.record_failure(f"user{i}", IP)
    assert await throttle.check("fresh", IP) == OK
    assert await throttle.record_failure("user19", IP) == ThrottleDecision(False, 1)
    assert await throttle.check("fresh", IP) == ThrottleDecision(False, 1)
    assert await throttle.check("fresh", "198.51.100.1") == OK
    assert await throttle.check("fresh", None) == OK
    await throttle.record_failure("user20", IP)
    assert await throttle.check("fresh", IP) == ThrottleDecision(False, 2)


async def test_without_an_ip_only_the_account_counts(throttle: LoginThrottle) -> None:
    await fail(throttle, 5, ip=None)
    assert not (await throttle.check("alice", None)).allowed
    assert await throttle.check("bob", IP) == OK


async def test_the_longer_of_account_and_ip_blocks_wins(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    for i in range(20):
        await throttle.record_failure(f"user{i}", IP)
    await fail(throttle, 5)  # alice: 5 failures -> 1 s; the IP: 25 failures -> 32 s
    assert await throttle.check("alice", IP) == ThrottleDecision(False, 32)
    assert await throttle.check("alice", "198.51.100.1") == ThrottleDecision(False, 1)


async def test_concurrent_failures_are_all_counted(store: ThrottleStore) -> None:
    key = account_throttle_key("alice")
    counts = await asyncio.gather(*(store.add_failure([key], 1000.0, WINDOW) for _ in range(30)))
    assert sorted(c[0] for c in counts) == list(range(1, 31))
    [state] = await store.get([key])
    assert state is not None
    assert state.failures == 30


async def test_store_restarts_a_stale_count_at_exactly_the_window(store: ThrottleStore) -> None:
    key = ip_throttle_key(IP)
    assert await store.add_failure([key], 1000.0, 10.0) == [1]
    assert await store.add_failure([key], 1009.5, 10.0) == [2]
    assert await store.add_failure([key], 1019.5, 10.0) == [1]


async def test_store_get_keeps_key_order_and_reports_absent_keys(store: ThrottleStore) -> None:
    a, b = account_throttle_key("a"), account_throttle_key("b")
    await store.add_failure([b], 5.5, WINDOW)
    states = await store.get([a, b])
    assert states[0] is None
    assert states[1] is not None
    assert (states[1].failures, states[1].last_failure) == (1, 5.5)
    await store.reset(b)
    assert await store.get([a, b]) == [None, None]


async def test_memory_store_sweeps_expired_states_and_stays_bounded() -> None:
    store = MemoryThrottleStore(max_keys=3)
    await store.add_failure(["k1", "k2"], 0.0, 10.0)
    await store.add_failure(["k3"], 5.0, 10.0)
    assert await store.sweep(10.0) == 2
    assert await store.get(["k1", "k2", "k3"]) == [None, None, (await store.get(["k3"]))[0]]
    await store.add_failure(["k4", "k5", "k6"], 6.0, 10.0)
    assert (await store.get(["k3"]))[0] is None  # least recently failed, evicted


async def test_sql_store_sweeps_and_keeps_no_plain_usernames_or_ips(
    sqlite_engine: object, clock: FakeClock
) -> None:
    store = SqlThrottleStore(sqlite_engine)  # type: ignore[arg-type]
    throttle = LoginThrottle(store, clock)
    await throttle.record_failure("Alice", IP)
    async with sqlite_engine.connect() as conn:  # type: ignore[attr-defined]
        keys = list((await conn.execute(select(throttle_table.c.key))).scalars())
    assert set(keys) == {account_throttle_key("alice"), ip_throttle_key(IP)}
    assert not any("alice" in k.lower() or IP in k for k in keys)
    assert await store.sweep(clock.now() + WINDOW - 1) == 0
    assert await store.sweep(clock.now() + WINDOW) == 2


async def test_redis_keys_are_digests_with_a_relative_ttl(
    redis_client: Redis, redis_prefix: str, clock: FakeClock
) -> None:
    """The TTL is the window measured from the passed-in now, whatever the fake clock says."""
    store = RedisThrottleStore(redis_client, prefix=redis_prefix)
    await LoginThrottle(store, clock).record_failure("Alice", IP)
    keys = [k.decode() async for k in redis_client.scan_iter(match=f"{redis_prefix}:*")]
    try:
        assert len(keys) == 2
        assert not any("alice" in k.lower() or IP in k for k in keys)
        for key in keys:
            ttl = await redis_client.pttl(key)
            assert WINDOW * 1000 - 5000 < ttl <= WINDOW * 1000
        assert await store.sweep(clock.now()) == 0
    finally:
        await redis_client.delete(*keys)


def test_account_keys_ignore_case_and_differ_from_ip_keys() -> None:
    assert account_throttle_key("Alice") == account_throttle_key("aLICE")
    assert account_throttle_key("alice") != account_throttle_key("bob")
    assert account_throttle_key("1.2.3.4") != ip_throttle_key("1.2.3.4")
    assert len(account_throttle_key("x" * 10_000)) == 66


@pytest.mark.parametrize(
    "policy",
    [
        {"account_limit": 0},
        {"ip_limit": 0},
        {"base_delay": 0},
        {"base_delay": 10, "max_delay": 5},
        {"max_delay": 3600, "window": 900},
    ],
)
def test_inconsistent_policies_are_refused(policy: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        ThrottlePolicy(**policy)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=1, max_value=50))
def test_delay_grows_monotonically_and_stays_within_bounds(failures: int, limit: int) -> None:
    policy = ThrottlePolicy()
    delay = policy.delay(failures, limit)
    assert 0 <= delay <= policy.max_delay
    assert policy.delay(failures + 1, limit) >= delay
    assert (delay == 0) == (failures < limit)
