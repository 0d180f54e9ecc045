"""Revocation marks: stores, the in-memory view, expiry of marks, and pub/sub across instances."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.clock import FakeClock
from tessera.stores.redis_revocations import RedisRevocationStore
from tessera.stores.revocations import (
    MarkKind,
    MemoryRevocationStore,
    RevocationMark,
    RevocationStore,
)
from tessera.stores.sql_revocations import SqlRevocationStore
from tessera.tokens.revocation import RevocationView

LIFETIME = 600.0


@dataclass(frozen=True)
class Claims:
    sid: str
    sub: str
    iat: float


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def store(request: pytest.FixtureRequest) -> RevocationStore:
    """Every revocation store implementation, on real servers."""
    kind = request.param
    if kind == "memory":
        return MemoryRevocationStore()
    if kind in ("sqlite", "postgres"):
        return SqlRevocationStore(request.getfixturevalue(f"{kind}_engine"))
    return RedisRevocationStore(
        request.getfixturevalue("redis_client"), request.getfixturevalue("redis_prefix")
    )


def mark(kind: MarkKind, subject: str, at: float) -> RevocationMark:
    return RevocationMark(kind, subject, at, at + LIFETIME)


async def test_store_keeps_the_later_mark_per_subject(store: RevocationStore) -> None:
    await store.add(mark(MarkKind.USER, "u1", 1000.0))
    await store.add(mark(MarkKind.USER, "u1", 1100.0))
    await store.add(mark(MarkKind.USER, "u1", 1050.0))
    await store.add(mark(MarkKind.SESSION, "u1", 1000.0))  # same subject, other kind
    live = await store.load_live(1200.0)
    latest = {(m.kind, m.subject): m.at for m in live}
    for m in live:
        latest[(m.kind, m.subject)] = max(latest[(m.kind, m.subject)], m.at)
    assert latest == {(MarkKind.USER, "u1"): 1100.0, (MarkKind.SESSION, "u1"): 1000.0}


async def test_store_drops_expired_marks(store: RevocationStore) -> None:
    await store.add(mark(MarkKind.SESSION, "s1", 1000.0))
    await store.add(mark(MarkKind.SESSION, "s2", 1500.0))
    assert {m.subject for m in await store.load_live(1000.0 + LIFETIME)} == {"s2"}
    await store.sweep(1000.0 + LIFETIME)
    assert {m.subject for m in await store.load_live(0.0)} == {"s2"}


async def test_view_revokes_tokens_issued_at_or_before_the_mark(clock: FakeClock) -> None:
    view = RevocationView(MemoryRevocationStore(), clock, max_token_lifetime=LIFETIME)
    now = clock.now()
    await view.revoke_user("u1")
    assert view.is_revoked(Claims("s1", "u1", now - 100))
    assert view.is_revoked(Claims("s1", "u1", now))  # same second: fail closed
    assert not view.is_revoked(Claims("s1", "u1", now + 1))  # logged in again afterwards
    assert not view.is_revoked(Claims("s1", "u2", now - 100))
    await view.revoke_session("s9", at=now + 5)
    assert view.is_revoked(Claims("s9", "u3", now + 5))
    assert not view.is_revoked(Claims("s8", "u3", now))


async def test_view_forgets_marks_after_the_token_lifetime(clock: FakeClock) -> None:
    """Memory stays bounded: a mark goes once every token it concerns has expired."""
    view = RevocationView(MemoryRevocationStore(), clock, max_token_lifetime=LIFETIME, leeway=30)
    for i in range(100):
        await view.revoke_session(f"s{i}")
    assert len(view) == 100
    clock.advance(LIFETIME + 30)
    await view.revoke_user("late")  # any write prunes
    assert len(view) == 1


async def test_a_later_mark_survives_the_expiry_of_an_earlier_one(clock: FakeClock) -> None:
    view = RevocationView(MemoryRevocationStore(), clock, max_token_lifetime=LIFETIME, leeway=0)
    await view.revoke_user("u1")
    clock.advance(100)
    await view.revoke_user("u1")
    clock.advance(LIFETIME - 50)  # the first mark expired, the second has not
    await view.revoke_user("other")
    assert view.is_revoked(Claims("s", "u1", clock.now() - LIFETIME + 40))


async def test_view_loads_marks_from_the_store(store: RevocationStore, clock: FakeClock) -> None:
    first = RevocationView(store, clock, max_token_lifetime=LIFETIME)
    await first.revoke_user("u1")
    second = RevocationView(store, clock, max_token_lifetime=LIFETIME)
    assert not second.is_revoked(Claims("s", "u1", clock.now()))
    assert await second.load() == 1
    assert second.is_revoked(Claims("s", "u1", clock.now()))


async def test_marks_reach_another_instance_through_redis_pubsub(
    redis_client: object, redis_prefix: str, clock: FakeClock
) -> None:
    """Two views on one real Redis: a revocation on one is applied by the other's listener."""
    from redis.asyncio import Redis

    assert isinstance(redis_client, Redis)
    # Two stores and two views, as two server instances would have; the subscription takes a
    # connection of its own from the pool.
    store_a = RedisRevocationStore(redis_client, redis_prefix)
    store_b = RedisRevocationStore(redis_client, redis_prefix)
    view_a = RevocationView(store_a, clock, max_token_lifetime=LIFETIME, feed=store_a)
    view_b = RevocationView(store_b, clock, max_token_lifetime=LIFETIME, feed=store_b)
    await view_a.revoke_session("before-listen")  # stored before B listens: B loads it
    ready = asyncio.Event()
    listener = asyncio.create_task(view_b.listen(ready))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        assert view_b.is_revoked(Claims("before-listen", "u", clock.now()))
        await view_a.revoke_user("u1")
        for _ in range(200):
            if view_b.is_revoked(Claims("s", "u1", clock.now())):
                break
            await asyncio.sleep(0.01)
        assert view_b.is_revoked(Claims("s", "u1", clock.now()))
        assert not view_b.is_revoked(Claims("s", "u2", clock.now()))
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


@given(st.binary(max_size=200) | st.text(max_size=200))
def test_mark_parser_never_crashes_on_garbage(data: bytes | str) -> None:
    """Published messages are untrusted: anything but a mark is a ValueError, nothing else."""
    try:
        parsed = RevocationMark.from_json(data)
    except ValueError:
        return
    assert isinstance(parsed, RevocationMark)


def test_mark_round_trips_through_json() -> None:
    original = mark(MarkKind.SESSION, "sid:with:colons", 1234.5)
    assert RevocationMark.from_json(original.to_json()) == original
