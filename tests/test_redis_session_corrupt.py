"""A session hash the store cannot read (truncated, garbled, half an earlier layout) is no session.

Such a hash comes from a bug, a manual edit or a partial restore, never from a client; a request
presenting its ID must get a new session (its cookie cleared), not a 500, and the admin and
per-user listings must skip it rather than fail whole.
"""

from __future__ import annotations

import hashlib
import struct

import pytest
import redis.asyncio as aioredis

from tessera.clock import FakeClock
from tessera.errors import StoreUnavailable
from tessera.stores.redis_sessions import RedisSessionStore, _meta
from tessera.stores.sessions import SessionRecord


def _record(now: float) -> SessionRecord:
    return SessionRecord(
        id_hash=hashlib.sha256(f"corrupt-{now}".encode()).hexdigest(),
        data=b"{}",
        created_at=now,
        last_seen=now,
        idle_timeout=100.0,
        absolute_expires_at=now + 1000.0,
        user_id="alice",
    )


def _bad_kind(rec: SessionRecord) -> bytes:
    # A well-sized head whose kind is not UTF-8.
    good = _meta(rec)
    head = good[: struct.calcsize("<dddd??iii")]
    return head + b"\xff\xfe\xfd\xfc\xfb\xfa\xf9"


CORRUPT = {
    "m too short": lambda rec: {"d": b"{}", "m": b"\x00" * 10, "u": b"alice"},
    "m kind not utf-8": lambda rec: {"d": b"{}", "m": _bad_kind(rec), "u": b"alice"},
    "legacy without times": lambda rec: {"data": b"{}", "kind": b"browser", "user_id": b"alice"},
    "legacy time not a number": lambda rec: {
        "data": b"{}",
        "created_at": b"x",
        "last_seen": b"x",
        "idle_timeout": b"x",
        "absolute_expires_at": b"x",
        "kind": b"browser",
        "remembered": b"0",
        "user_id": b"alice",
    },
}


@pytest.mark.parametrize("corruption", sorted(CORRUPT))
async def test_a_corrupt_session_hash_reads_as_no_session(
    corruption: str, redis_client: aioredis.Redis, redis_prefix: str, clock: FakeClock
) -> None:
    store = RedisSessionStore(redis_client, redis_prefix)
    rec = _record(clock.now())
    key = store._session_key(rec.id_hash)
    index = store._user_key("alice")
    try:
        await redis_client.hset(key, mapping=CORRUPT[corruption](rec))  # type: ignore[arg-type]
        await redis_client.pexpire(key, 100_000)
        await redis_client.zadd(index, {rec.id_hash: rec.absolute_expires_at})
        await redis_client.pexpire(index, 100_000)
        assert await store.load(rec.id_hash, clock.now(), 60.0) is None
        assert await store.list_for_user("alice", clock.now()) == []
        assert rec.id_hash not in {r.id_hash for r in await store.list_all(clock.now())}
        # It can still be deleted (log out everywhere, admin revoke).
        assert await store.delete_for_user("alice") == 1
    finally:
        await redis_client.delete(key, index)
        await store.close()


async def test_a_foreign_key_of_another_type_is_store_unavailable_not_a_500(
    redis_client: aioredis.Redis, redis_prefix: str, clock: FakeClock
) -> None:
    """A string where a session hash belongs (WRONGTYPE: another program under our prefix).

    Redis refuses the command; that is the store being unusable, reported as such (503 with
    the error type), never an unhandled ResponseError.
    """
    store = RedisSessionStore(redis_client, redis_prefix)
    rec = _record(clock.now())
    key = store._session_key(rec.id_hash)
    try:
        await redis_client.set(key, b"not a hash", px=100_000)
        with pytest.raises(StoreUnavailable, match="ResponseError"):
            await store.load(rec.id_hash, clock.now(), 60.0)
        with pytest.raises(StoreUnavailable, match="ResponseError"):
            await store.update(rec, clock.now())
    finally:
        await redis_client.delete(key)
        await store.close()
