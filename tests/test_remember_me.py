"""Remember-me tokens: single use with rotation, theft detection, grace for racing tabs."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tessera.clock import FakeClock
from tessera.identity.remember import (
    MemoryRememberStore,
    RememberMe,
    RememberStore,
    TheftDetected,
)
from tessera.stores.sql_remember import SqlRememberStore


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> RememberStore:
    """Every remember-me store; the SQL ones on real SQLite and PostgreSQL databases."""
    if request.param == "memory":
        return MemoryRememberStore()
    engine: AsyncEngine = request.getfixturevalue(f"{request.param}_engine")
    return SqlRememberStore(engine)


@pytest.fixture
def remember(store: RememberStore, clock: FakeClock) -> RememberMe:
    return RememberMe(store, clock, lifetime=30 * 86400, grace=10)


async def test_cookie_logs_in_and_rotates(remember: RememberMe) -> None:
    cookie = await remember.issue("u1")
    result = await remember.consume(cookie)
    assert result is not None
    assert result.user_id == "u1"
    assert result.cookie_value is not None
    assert result.cookie_value != cookie
    assert result.cookie_value.split(":")[0] == cookie.split(":")[0]


async def test_validator_is_stored_only_as_a_digest(
    remember: RememberMe, store: RememberStore
) -> None:
    cookie = await remember.issue("u1")
    selector, validator = cookie.split(":")
    token = await store.get(selector)
    assert token is not None
    assert validator not in repr(token)
    assert token.validator_hash != validator


async def test_replaying_a_rotated_cookie_is_theft(remember: RememberMe, clock: FakeClock) -> None:
    """After the grace window, the old validator means two parties held the cookie."""
    stolen = await remember.issue("u1")
    assert await remember.consume(stolen) is not None
    clock.advance(11)
    with pytest.raises(TheftDetected) as info:
        await remember.consume(stolen)
    assert info.value.user_id == "u1"


async def test_racing_tabs_within_grace_are_not_theft(
    remember: RememberMe, clock: FakeClock
) -> None:
    cookie = await remember.issue("u1")
    first = await remember.consume(cookie)
    clock.advance(2)
    second = await remember.consume(cookie)
    assert first is not None
    assert second is not None
    assert second.user_id == "u1"
    assert second.cookie_value is None


async def test_parallel_consumption_yields_one_rotation(remember: RememberMe) -> None:
    cookie = await remember.issue("u1")
    results = await asyncio.gather(*(remember.consume(cookie) for _ in range(5)))
    rotated = [r for r in results if r is not None and r.cookie_value is not None]
    assert all(r is not None and r.user_id == "u1" for r in results)
    assert len(rotated) == 1


async def test_expired_cookie_is_ignored_and_deleted(
    remember: RememberMe, store: RememberStore, clock: FakeClock
) -> None:
    cookie = await remember.issue("u1")
    clock.advance(30 * 86400 + 1)
    assert await remember.consume(cookie) is None
    assert await store.get(cookie.split(":")[0]) is None


@pytest.mark.parametrize(
    "value", ["", "garbage", "a:b", "x" * 22 + ":" + "y" * 42, "x" * 22 + ":" + "!" * 43]
)
async def test_malformed_cookie_reads_as_absent(remember: RememberMe, value: str) -> None:
    assert await remember.consume(value) is None


async def test_unknown_selector_reads_as_absent(remember: RememberMe) -> None:
    assert await remember.consume("a" * 22 + ":" + "b" * 43) is None


async def test_forget_user_removes_every_token(remember: RememberMe) -> None:
    one = await remember.issue("u1")
    two = await remember.issue("u1")
    other = await remember.issue("u2")
    assert await remember.forget_user("u1") == 2
    assert await remember.consume(one) is None
    assert await remember.consume(two) is None
    assert await remember.consume(other) is not None


async def test_forget_deletes_the_cookie_token(remember: RememberMe) -> None:
    cookie = await remember.issue("u1")
    await remember.forget(cookie)
    assert await remember.consume(cookie) is None


async def test_check_reads_a_token_without_using_it_up(
    remember: RememberMe, clock: FakeClock
) -> None:
    """What "log out everywhere else" asks before re-issuing: the current validator passes and
    stays current; an unknown selector is None; a validator rotated away is theft."""
    cookie = await remember.issue("u1")
    token = await remember.check(cookie)
    assert token is not None
    assert token.user_id == "u1"
    result = await remember.consume(cookie)  # still the current one: check did not rotate it
    assert result is not None
    assert result.cookie_value is not None
    assert await remember.check("a" * 22 + ":" + "b" * 43) is None
    clock.advance(11)  # past the grace window
    with pytest.raises(TheftDetected):
        await remember.check(cookie)


async def test_a_reissued_token_keeps_the_end_it_is_given(
    remember: RememberMe, clock: FakeClock
) -> None:
    cookie = await remember.issue("u1", expires_at=clock.now() + 60)
    clock.advance(61)
    assert await remember.consume(cookie) is None


async def test_check_takes_the_previous_validator_within_the_grace_window_only(
    remember: RememberMe, clock: FakeClock
) -> None:
    """Racing tabs: one rotated the token, the other still holds the validator it replaced."""
    cookie = await remember.issue("u1")
    assert await remember.consume(cookie) is not None  # rotated: cookie is the previous one
    clock.advance(5)
    assert await remember.check(cookie) is not None
    clock.advance(6)
    with pytest.raises(TheftDetected):
        await remember.check(cookie)


async def test_check_finds_no_expired_token(remember: RememberMe, clock: FakeClock) -> None:
    cookie = await remember.issue("u1", expires_at=clock.now() + 60)
    clock.advance(60)
    assert await remember.check(cookie) is None
