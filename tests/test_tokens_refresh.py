"""Refresh tokens: rotation, reuse detection, grace window, one contract over every store."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.clock import FakeClock
from tessera.errors import InvalidGrant, RefreshTokenReused
from tessera.stores.memory_refresh import MemoryRefreshTokenStore
from tessera.stores.redis_refresh import RedisRefreshTokenStore
from tessera.stores.refresh_tokens import RefreshTokenStore
from tessera.stores.sql_refresh import SqlRefreshTokenStore
from tessera.tokens.refresh import (
    RefreshTokens,
    hash_token,
    open_successor,
    seal_successor,
)

TTL = 30 * 86400


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def store(request: pytest.FixtureRequest) -> RefreshTokenStore:
    """Every refresh-token store implementation, on real servers (fixtures close them)."""
    kind = request.param
    if kind == "memory":
        return MemoryRefreshTokenStore()
    if kind in ("sqlite", "postgres"):
        return SqlRefreshTokenStore(request.getfixturevalue(f"{kind}_engine"))
    return RedisRefreshTokenStore(
        request.getfixturevalue("redis_client"), request.getfixturevalue("redis_prefix")
    )


@pytest.fixture
def tokens(store: RefreshTokenStore, clock: FakeClock) -> RefreshTokens:
    return RefreshTokens(store, clock, family_ttl=TTL, grace=10)


async def test_issue_then_rotate_returns_a_new_token_in_the_same_family(
    tokens: RefreshTokens,
) -> None:
    first = await tokens.issue("user-1", "sid-1", "app")
    second = await tokens.rotate(first.refresh_token, "app")
    assert second.refresh_token != first.refresh_token
    assert (second.family_id, second.sid, second.user_id) == (first.family_id, "sid-1", "user-1")
    assert second.expires_at == first.expires_at  # rotation never extends the family
    assert not second.duplicate


async def test_store_keeps_only_digests(store: RefreshTokenStore, tokens: RefreshTokens) -> None:
    """The raw token never reaches the store: only its SHA-256 digest does."""
    first = await tokens.issue("user-1", "sid-1", "app")
    assert (
        hash_token(first.refresh_token) == hashlib.sha256(first.refresh_token.encode()).hexdigest()
    )
    if isinstance(store, MemoryRefreshTokenStore):
        assert first.refresh_token not in repr(store.__getattribute__("_tokens"))


async def test_tokens_are_256_bit_urlsafe(tokens: RefreshTokens) -> None:
    first = await tokens.issue("user-1", "sid-1", "app")
    assert len(first.refresh_token) == 43
    assert first.refresh_token not in repr(first)


async def test_unknown_token_is_rejected(tokens: RefreshTokens) -> None:
    with pytest.raises(InvalidGrant) as caught:
        await tokens.rotate("A" * 43, "app")
    assert caught.value.reason == "unknown"
    assert caught.value.http_status == 400


async def test_wrong_client_is_rejected_without_spending_the_token(tokens: RefreshTokens) -> None:
    first = await tokens.issue("user-1", "sid-1", "app")
    with pytest.raises(InvalidGrant) as caught:
        await tokens.rotate(first.refresh_token, "other-app")
    assert caught.value.reason == "wrong_client"
    assert (await tokens.rotate(first.refresh_token, "app")).family_id == first.family_id


async def test_expired_family_is_rejected(tokens: RefreshTokens, clock: FakeClock) -> None:
    first = await tokens.issue("user-1", "sid-1", "app")
    clock.advance(TTL - 1)
    second = await tokens.rotate(first.refresh_token, "app")
    clock.advance(1)
    with pytest.raises(InvalidGrant) as caught:
        await tokens.rotate(second.refresh_token, "app")
    assert caught.value.reason == "expired"


async def test_reuse_after_grace_revokes_the_family_and_reports_the_session(
    tokens: RefreshTokens, store: RefreshTokenStore, clock: FakeClock
) -> None:
    first = await tokens.issue("user-1", "sid-1", "app")
    second = await tokens.rotate(first.refresh_token, "app")
    clock.advance(11)
    with pytest.raises(RefreshTokenReused) as caught:
        await tokens.rotate(first.refresh_token, "app")
    assert (caught.value.sid, caught.value.user_id) == ("sid-1", "user-1")
    assert caught.value.family_id == first.family_id
    family = await store.get_family(first.family_id)
    assert family is not None
    assert family.revoked_at == clock.now()
    with pytest.raises(InvalidGrant) as later:
        await tokens.rotate(second.refresh_token, "app")  # the legitimate holder is out too
    assert later.value.reason == "revoked"


async def test_duplicate_within_grace_gets_the_same_successor(
    tokens: RefreshTokens, clock: FakeClock
) -> None:
    first = await tokens.issue("user-1", "sid-1", "app")
    second = await tokens.rotate(first.refresh_token, "app")
    clock.advance(10)
    again = await tokens.rotate(first.refresh_token, "app")
    assert again.refresh_token == second.refresh_token
    assert again.duplicate
    third = await tokens.rotate(again.refresh_token, "app")  # and the chain goes on
    assert third.family_id == first.family_id


async def test_parallel_refreshes_share_one_successor_and_never_fork(
    tokens: RefreshTokens, clock: FakeClock
) -> None:
    """N concurrent refreshes of one token: one rotation, N identical answers, nobody out."""
    first = await tokens.issue("user-1", "sid-1", "app")
    results = await asyncio.gather(*(tokens.rotate(first.refresh_token, "app") for _ in range(8)))
    successors = {r.refresh_token for r in results}
    assert len(successors) == 1
    assert sum(not r.duplicate for r in results) == 1
    (successor,) = successors
    # No fork: the successor is the one live token; rotating it works, and nothing else was
    # stored live in the family (a second successor would be a token nobody holds).
    nxt = await tokens.rotate(successor, "app")
    assert nxt.family_id == first.family_id
    clock.advance(11)
    with pytest.raises(RefreshTokenReused):
        await tokens.rotate(first.refresh_token, "app")


async def test_revoke_session_and_user_end_their_families(tokens: RefreshTokens) -> None:
    a = await tokens.issue("user-1", "sid-1", "app")
    b = await tokens.issue("user-1", "sid-2", "app")
    c = await tokens.issue("user-2", "sid-3", "app")
    assert await tokens.revoke_session("sid-1") == 1
    assert await tokens.revoke_session("sid-1") == 0
    with pytest.raises(InvalidGrant):
        await tokens.rotate(a.refresh_token, "app")
    assert await tokens.revoke_user("user-1") == 1
    with pytest.raises(InvalidGrant):
        await tokens.rotate(b.refresh_token, "app")
    assert (await tokens.rotate(c.refresh_token, "app")).user_id == "user-2"
    assert await tokens.revoke_family(c.family_id)
    assert not await tokens.revoke_family(c.family_id)


async def test_sweep_forgets_expired_families(
    tokens: RefreshTokens, store: RefreshTokenStore, clock: FakeClock
) -> None:
    first = await tokens.issue("user-1", "sid-1", "app")
    clock.advance(TTL)
    await store.sweep(clock.now())
    if not isinstance(store, RedisRefreshTokenStore):  # Redis expires keys on its own clock
        assert await store.get_family(first.family_id) is None
    with pytest.raises(InvalidGrant):
        await tokens.rotate(first.refresh_token, "app")


async def test_store_ping(store: RefreshTokenStore) -> None:
    await store.ping()


@given(st.text(max_size=80))
def test_malformed_tokens_are_refused_before_the_store(presented: str) -> None:
    """Anything not shaped like our tokens is refused as malformed, without a store lookup."""

    class Exploding(MemoryRefreshTokenStore):
        async def rotate(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
            raise AssertionError("store reached")

    tokens = RefreshTokens(Exploding(), FakeClock(), family_ttl=TTL)
    if len(presented) == 43 and all(c.isalnum() or c in "-_" for c in presented):
        return
    with pytest.raises(InvalidGrant) as caught:
        asyncio.run(tokens.rotate(presented, "app"))
    assert caught.value.reason == "malformed"


def test_successor_box_opens_only_with_the_old_token() -> None:
    old, new, other = "a" * 43, "b" * 43, "c" * 43
    box = seal_successor(old, new, hash_token(new))
    assert open_successor(old, box, hash_token(new)) == new
    assert open_successor(other, box, hash_token(new)) is None
    assert open_successor(old, box, hash_token(other)) is None  # bound to the successor digest
    assert new.encode() not in box
