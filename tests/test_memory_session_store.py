"""The memory session store: bounded LRU, per-user index, expiry in O(expired)."""

from __future__ import annotations

import asyncio
import hashlib

from tessera.metrics import Metrics
from tessera.stores.memory_sessions import MemorySessionStore
from tessera.stores.sessions import SessionRecord, SessionStore

T0 = 1_800_000_000.0


def rec(n: int, *, user: str | None = None, at: float = T0, idle: float = 1800.0) -> SessionRecord:
    return SessionRecord(
        id_hash=hashlib.sha256(str(n).encode()).hexdigest(),
        data=b"{}",
        created_at=at,
        last_seen=at,
        idle_timeout=idle,
        absolute_expires_at=at + 43200,
        user_id=user,
    )


def test_implements_the_protocol() -> None:
    assert isinstance(MemorySessionStore(), SessionStore)


async def test_full_store_evicts_least_recently_used_and_counts_it() -> None:
    metrics = Metrics()
    store = MemorySessionStore(max_sessions=2, metrics=metrics)
    await store.create(rec(1, user="u"))
    await store.create(rec(2))
    assert await store.load(rec(1).id_hash, T0, 60) is not None  # 1 is now the most recent
    await store.create(rec(3))
    assert await store.load(rec(2).id_hash, T0, 60) is None
    assert await store.load(rec(1).id_hash, T0, 60) is not None
    assert metrics.get("sessions.evicted") == 1
    assert len(store) == 2


async def test_eviction_also_leaves_the_user_index() -> None:
    store = MemorySessionStore(max_sessions=1)
    await store.create(rec(1, user="u"))
    await store.create(rec(2))
    assert await store.list_for_user("u", T0) == []
    assert await store.delete_for_user("u") == 0


async def test_load_renews_only_when_the_interval_has_passed() -> None:
    store = MemorySessionStore()
    await store.create(rec(1))
    first = await store.load(rec(1).id_hash, T0 + 30, 60)
    assert first is not None
    assert first[1] is False
    assert first[0].last_seen == T0
    second = await store.load(rec(1).id_hash, T0 + 60, 60)
    assert second is not None
    assert second[1] is True
    assert second[0].last_seen == T0 + 60


async def test_sweep_removes_only_what_is_due() -> None:
    store = MemorySessionStore()
    await store.create(rec(1, idle=100))
    await store.create(rec(2, idle=200))
    assert await store.sweep(T0 + 99) == 0
    assert await store.sweep(T0 + 150) == 1
    assert len(store) == 1
    assert await store.sweep(T0 + 1000) == 1
    assert len(store) == 0


async def test_renewed_session_survives_its_stale_expiry_filing() -> None:
    """Lazy invalidation: the filing made at create is skipped once the session was renewed."""
    store = MemorySessionStore()
    await store.create(rec(1, idle=100))
    assert await store.load(rec(1).id_hash, T0 + 90, 60) is not None  # renewed to T0+190
    assert await store.sweep(T0 + 120) == 0
    assert len(store) == 1
    assert await store.sweep(T0 + 190) == 1


async def test_sweep_touches_only_due_filings() -> None:
    """A sweep with nothing due examines nothing, however many sessions there are."""
    store = MemorySessionStore()
    for n in range(1000):
        await store.create(rec(n, at=T0 + n))
    assert await store.sweep(T0 + 1799) == 0
    assert len(store._due_heap) == 1000
    assert await store.sweep(T0 + 1805) == 6
    assert len(store._due_heap) == 994


async def test_writes_expire_due_sessions_without_a_sweep() -> None:
    store = MemorySessionStore()
    await store.create(rec(1, idle=10))
    await store.create(rec(2, at=T0 + 20))
    assert len(store) == 1


async def test_update_and_replace_never_resurrect() -> None:
    store = MemorySessionStore()
    await store.create(rec(1))
    await store.delete(rec(1).id_hash)
    assert await store.update(rec(1), T0) is False
    assert await store.replace(rec(1).id_hash, rec(2), T0) is False
    assert len(store) == 0


async def test_expired_session_cannot_be_updated() -> None:
    store = MemorySessionStore()
    await store.create(rec(1, idle=10))
    assert await store.update(rec(1), T0 + 10) is False
    assert await store.load(rec(1).id_hash, T0 + 10, 60) is None


async def test_replace_moves_the_user_index() -> None:
    store = MemorySessionStore()
    await store.create(rec(1, user="u"))
    assert await store.replace(rec(1).id_hash, rec(2, user="u"), T0) is True
    assert [r.id_hash for r in await store.list_for_user("u", T0)] == [rec(2).id_hash]
    assert await store.load(rec(1).id_hash, T0, 60) is None


async def test_per_user_listing_is_oldest_first_and_delete_keeps_one() -> None:
    store = MemorySessionStore()
    for n in (3, 1, 2):
        await store.create(rec(n, user="u", at=T0 + n))
    await store.create(rec(9, user="other"))
    listed = await store.list_for_user("u", T0 + 5)
    assert [r.created_at for r in listed] == [T0 + 1, T0 + 2, T0 + 3]
    assert await store.delete_for_user("u", keep=rec(2).id_hash) == 2
    assert [r.id_hash for r in await store.list_for_user("u", T0 + 5)] == [rec(2).id_hash]
    assert len(await store.list_for_user("other", T0 + 5)) == 1


async def test_update_can_move_a_session_to_another_user() -> None:
    store = MemorySessionStore()
    await store.create(rec(1, user="a"))
    assert await store.update(rec(1, user="b"), T0)
    assert await store.list_for_user("a", T0) == []
    assert len(await store.list_for_user("b", T0)) == 1


async def test_list_all_is_newest_first_and_limited() -> None:
    store = MemorySessionStore()
    for n in range(5):
        await store.create(rec(n, at=T0 + n))
    listed = await store.list_all(T0 + 10, limit=2)
    assert [r.created_at for r in listed] == [T0 + 4, T0 + 3]


async def test_repeated_strings_are_shared_between_sessions() -> None:
    store = MemorySessionStore()
    ua = "Mozilla/5.0 (X11; Linux x86_64)"
    a = SessionRecord(rec(1).id_hash, b"{}", T0, T0, 60, T0 + 60, user_agent="".join(ua))
    b = SessionRecord(rec(2).id_hash, b"{}", T0, T0, 60, T0 + 60, user_agent="".join(ua))
    assert a.user_agent is not b.user_agent
    await store.create(a)
    await store.create(b)
    first = await store.load(a.id_hash, T0, 60)
    second = await store.load(b.id_hash, T0, 60)
    assert first is not None
    assert second is not None
    assert first[0].user_agent is second[0].user_agent
    assert first[0] == a


def test_update_now_shortcut_applies_only_to_the_record_still_held() -> None:
    """``previous`` skips re-indexing only while the store still holds exactly that record."""
    store = MemorySessionStore()
    first = rec(1, user="u")
    asyncio.run(store.create(first))
    # Another request logged the session in as someone else meanwhile.
    moved = first._replace(user_id="v", last_seen=T0 + 1)
    assert store.update_now(moved, T0 + 1)
    # A late save copied from the old record must not be treated as "nothing changed":
    # the generic path moves the user index back, consistently.
    late = first._replace(data=b'{"k":1}', last_seen=T0 + 2)
    assert store.update_now(late, T0 + 2, previous=first)
    assert asyncio.run(store.list_for_user("v", T0 + 2)) == []
    assert [r.data for r in asyncio.run(store.list_for_user("u", T0 + 2))] == [b'{"k":1}']


def test_update_now_shortcut_refiles_an_expiry_moved_earlier() -> None:
    """A clock stepping back (last_seen earlier) still files the session where it falls due."""
    store = MemorySessionStore()
    first = rec(1, idle=100.0)
    assert store.update_now(first, T0) is False  # not stored yet: nothing resurrected
    asyncio.run(store.create(first))
    earlier = first._replace(last_seen=T0 - 50)
    assert store.update_now(earlier, T0, previous=first)
    assert asyncio.run(store.sweep(T0 + 60)) == 1  # due at T0 + 50, not T0 + 100
