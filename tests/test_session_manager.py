"""The session manager: IDs, timeouts, sliding renewal, rotation, size budget, per-user index."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tessera.clock import FakeClock
from tessera.config import Settings
from tessera.errors import (
    ConfigError,
    SessionDataInvalid,
    SessionNotLoaded,
    SessionTooLarge,
    StoreUnavailable,
    TesseraError,
)
from tessera.metrics import Metrics
from tessera.sessions import (
    DEFAULT_MAX_PER_USER,
    CookieAction,
    Session,
    SessionManager,
    hash_session_id,
    is_well_formed,
    new_session_id,
)
from tessera.stores.memory_sessions import MemorySessionStore
from tessera.stores.sessions import SessionRecord


class CountingStore:
    """Wraps a store, counting calls per method and the writes (renewing loads included)."""

    def __init__(self, inner: MemorySessionStore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.writes = 0

    async def create(self, record: SessionRecord) -> None:
        self.calls["create"] += 1
        self.writes += 1
        await self.inner.create(record)

    async def load(
        self, id_hash: str, now: float, renewal_interval: float
    ) -> tuple[SessionRecord, bool] | None:
        self.calls["load"] += 1
        found = await self.inner.load(id_hash, now, renewal_interval)
        self.writes += bool(found and found[1])
        return found

    async def update(
        self, record: SessionRecord, now: float, previous: SessionRecord | None = None
    ) -> bool:
        self.calls["update"] += 1
        self.writes += 1
        return await self.inner.update(record, now, previous)

    async def replace(self, old_id_hash: str, record: SessionRecord, now: float) -> bool:
        self.calls["replace"] += 1
        self.writes += 1
        return await self.inner.replace(old_id_hash, record, now)

    async def delete(self, id_hash: str) -> bool:
        self.calls["delete"] += 1
        return await self.inner.delete(id_hash)

    async def list_for_user(self, user_id: str, now: float) -> list[SessionRecord]:
        return await self.inner.list_for_user(user_id, now)

    async def delete_for_user(self, user_id: str, *, keep: str | None = None) -> int:
        return await self.inner.delete_for_user(user_id, keep=keep)

    async def list_all(self, now: float, limit: int = 1000) -> list[SessionRecord]:
        return await self.inner.list_all(now, limit)

    async def sweep(self, now: float) -> int:
        return await self.inner.sweep(now)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture
def store() -> CountingStore:
    return CountingStore(MemorySessionStore())


@pytest.fixture
def manager(store: CountingStore, clock: FakeClock) -> SessionManager:
    return SessionManager(store, clock=clock, metrics=Metrics())


async def stored(manager: SessionManager, **data: Any) -> str:
    """A saved session's raw ID."""
    session = manager.begin(None)
    session.update(data or {"k": 1})
    result = await manager.save(session)
    assert result.action is CookieAction.SET
    assert result.session_id
    return result.session_id


# --- IDs ---------------------------------------------------------------------------------


def test_new_ids_are_256_bit_and_well_formed() -> None:
    ids = {new_session_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 43 and is_well_formed(i) for i in ids)


@given(st.text(max_size=100) | st.from_regex(r"[A-Za-z0-9_-]{43}", fullmatch=True))
def test_format_check_accepts_only_canonical_encodings(value: str) -> None:
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    canonical = (
        len(value) == 43
        and set(value) <= alphabet
        and base64.urlsafe_b64encode(base64.urlsafe_b64decode(value + "=")).decode() == value + "="
    )
    assert is_well_formed(value) is canonical


@given(st.binary(min_size=32, max_size=32))
def test_format_check_accepts_every_encoding_of_32_bytes(raw: bytes) -> None:
    assert is_well_formed(base64.urlsafe_b64encode(raw).rstrip(b"=").decode())


async def test_store_keeps_only_the_digest(manager: SessionManager, store: CountingStore) -> None:
    secret = await stored(manager)
    (record,) = await store.list_all(manager.clock.now())
    assert record.id_hash == hash_session_id(secret)
    assert secret not in repr(record)


async def test_malformed_id_never_reaches_the_store(
    manager: SessionManager, store: CountingStore
) -> None:
    for garbage in ("", "x" * 43, "a" * 5000, "ü" * 43, new_session_id()[:-1] + "B"):
        assert await manager.load(garbage) is None
    assert store.calls["load"] == 0
    assert manager.metrics.get("sessions.cookie_invalid") == 5


async def test_unknown_id_is_counted(manager: SessionManager) -> None:
    assert await manager.load(new_session_id()) is None
    assert manager.metrics.get("sessions.unknown") == 1


def test_instant_store_counts_garbage_and_unknown_ids_apart(clock: FakeClock) -> None:
    # open_now looks a cookie up before the full format check (which only runs on a miss):
    # garbage must still be counted as invalid, a well-formed stranger as unknown, and both
    # must come out as a new session whose dead cookie is deleted.
    manager = SessionManager(MemorySessionStore(), clock=clock, metrics=Metrics())
    garbage = ["x" * 43, new_session_id()[:-1] + "B", "ü" * 43, "a" * 44, "", "=" * 43]
    for value in [*garbage, new_session_id()]:
        session = manager.open_now(value)
        assert session is not None
        assert session.is_new
        assert session._stale_cookie
    assert manager.metrics.get("sessions.cookie_invalid") == len(garbage)
    assert manager.metrics.get("sessions.unknown") == 1


def test_repr_never_shows_the_secret() -> None:
    secret = new_session_id()
    session = Session._pending(secret)
    assert secret not in repr(session)


# --- timeouts and renewal ------------------------------------------------------------------


async def test_idle_session_expires(manager: SessionManager, clock: FakeClock) -> None:
    secret = await stored(manager)
    clock.advance(30 * 60 - 1)
    assert await manager.load(secret) is not None
    clock.advance(30 * 60)
    assert await manager.load(secret) is None


async def test_sliding_renewal_writes_at_most_once_per_interval(
    manager: SessionManager, store: CountingStore, clock: FakeClock
) -> None:
    secret = await stored(manager)
    store.writes = 0
    renewed = 0
    for _ in range(600):  # ten minutes of one request per second
        clock.advance(1)
        session = await manager.load(secret)
        assert session is not None
        renewed += session.renewed
        assert (await manager.save(session)).action is CookieAction.KEEP  # same cookie
    assert store.writes == renewed == 10


async def test_a_renewal_never_puts_back_a_cookie_a_parallel_login_replaced(
    manager: SessionManager, clock: FakeClock
) -> None:
    """Tab 2 loads the session as its renewal comes due; tab 1 logs in meanwhile (new ID).
    Tab 2's answer, arriving last, must not set the old ID again: that logged the browser out
    straight after its login."""
    secret = await stored(manager, a=1)
    clock.advance(manager.renewal_interval)
    reading = await manager.load(secret)
    assert reading is not None
    assert reading.renewed
    logging_in = await manager.load(secret)
    assert logging_in is not None
    logging_in.login("alice")
    assert (await manager.save(logging_in)).action is CookieAction.SET
    assert (await manager.save(reading)).action is CookieAction.KEEP


async def test_activity_keeps_a_session_past_its_idle_timeout(
    manager: SessionManager, clock: FakeClock
) -> None:
    secret = await stored(manager)
    for _ in range(6):
        clock.advance(20 * 60)
        assert await manager.load(secret) is not None


async def test_absolute_expiry_despite_activity(manager: SessionManager, clock: FakeClock) -> None:
    secret = await stored(manager)
    for _ in range(12 * 6 - 1):
        clock.advance(10 * 60)
        assert await manager.load(secret) is not None
    clock.advance(10 * 60)
    assert await manager.load(secret) is None


async def test_remember_me_lifetime_is_longer_and_cookie_persistent(
    manager: SessionManager, clock: FakeClock
) -> None:
    session = await manager.create(
        user_id="u", absolute_timeout=30 * 86400, idle_timeout=7 * 86400, persistent=True
    )
    assert session.secret_id is not None
    clock.advance(13 * 3600)
    loaded = await manager.load(session.secret_id)  # past the default 12 h lifetime
    assert loaded is not None
    assert loaded.persistent
    assert (await manager.save(loaded)).action is CookieAction.KEEP  # its cookie already lasts
    result = await manager.rotate(loaded)  # a new cookie: it lasts to the same absolute end
    assert result.action is CookieAction.SET
    assert result.max_age == 30 * 86400 - 13 * 3600


async def test_touch_renews_now(manager: SessionManager, clock: FakeClock) -> None:
    secret = await stored(manager)
    clock.advance(5)
    session = await manager.load(secret)
    assert session is not None
    assert not session.renewed
    assert await manager.touch(session)
    assert session.record is not None
    assert session.record.last_seen == clock.now()


# --- create, save, rotate, destroy ---------------------------------------------------------


async def test_empty_new_session_costs_nothing(
    manager: SessionManager, store: CountingStore
) -> None:
    session = manager.begin(None)
    assert session.get("x") is None
    assert (await manager.save(session)).action is CookieAction.KEEP
    assert sum(store.calls.values()) == 0


async def test_read_only_request_writes_nothing(
    manager: SessionManager, store: CountingStore
) -> None:
    secret = await stored(manager, visits=1)
    store.writes = 0
    session = await manager.load(secret)
    assert session is not None
    assert session["visits"] == 1
    assert session.accessed
    assert not session.modified
    assert (await manager.save(session)).action is CookieAction.KEEP
    assert store.writes == 0


async def test_changes_are_saved(manager: SessionManager) -> None:
    secret = await stored(manager, visits=1)
    session = await manager.load(secret)
    assert session is not None
    session["visits"] += 1
    assert (await manager.save(session)).action is CookieAction.KEEP
    again = await manager.load(secret)
    assert again is not None
    assert dict(again) == {"visits": 2}


async def test_login_rotates_and_kills_the_old_id(
    manager: SessionManager, clock: FakeClock
) -> None:
    secret = await stored(manager, cart=[1, 2])
    session = await manager.load(secret)
    assert session is not None
    clock.advance(100)
    session.login("alice")
    result = await manager.save(session)
    assert result.action is CookieAction.SET
    assert result.session_id != secret
    assert await manager.load(secret) is None
    assert result.session_id is not None
    fresh = await manager.load(result.session_id)
    assert fresh is not None
    assert fresh.user_id == "alice"
    assert fresh["cart"] == [1, 2]
    assert fresh.record is not None
    assert fresh.record.created_at == clock.now()


async def test_rotate_keeps_data_and_lifetime(manager: SessionManager, clock: FakeClock) -> None:
    secret = await stored(manager, a=1)
    session = await manager.load(secret)
    assert session is not None
    created = session.record.created_at if session.record else None
    clock.advance(10)
    result = await manager.rotate(session)
    assert result.session_id
    assert result.session_id != secret
    assert await manager.load(secret) is None
    rotated = await manager.load(result.session_id)
    assert rotated is not None
    assert dict(rotated) == {"a": 1}
    assert rotated.record is not None
    assert rotated.record.created_at == created


async def test_a_save_that_loses_to_a_login_leaves_its_new_cookie_alone(
    manager: SessionManager,
) -> None:
    """A request that changes the session while another logs in (rotates it) finds it gone: it
    must not delete the cookie, or its response, arriving after the login's, logs the browser
    out; nor may a later save of the same session (the middleware's) do it."""
    secret = await stored(manager, a=1)
    logging_in, busy = await manager.load(secret), await manager.load(secret)
    assert logging_in is not None
    assert busy is not None
    logging_in.login("alice")
    assert (await manager.save(logging_in)).action is CookieAction.SET
    busy["b"] = 2
    lost = await manager.save(busy)
    assert lost.gone
    assert lost.action is CookieAction.KEEP
    again = await manager.resolve(manager.begin(secret))  # the next request with the old ID
    assert (await manager.save(again)).action is CookieAction.CLEAR


async def test_an_app_rotation_that_lost_is_not_undone_by_the_middleware_save(
    manager: SessionManager,
) -> None:
    secret = await stored(manager, a=1)
    first, second = await manager.load(secret), await manager.load(secret)
    assert first is not None
    assert second is not None
    await manager.rotate(first)
    assert (await manager.rotate(second)).gone
    assert (await manager.save(second)).action is CookieAction.KEEP


async def test_the_losing_rotation_of_a_double_submitted_login_leaves_the_cookie_alone(
    manager: SessionManager,
) -> None:
    """A login form sent twice rotates one session twice: one wins and sets the new cookie;
    the other reports the session gone but must not delete the cookie, or its response,
    arriving after the winner's, would log the browser straight out."""
    secret = await stored(manager, a=1)
    first, second = await manager.load(secret), await manager.load(secret)
    assert first is not None
    assert second is not None
    first.login("alice")
    second.login("alice")
    won, lost = await manager.save(first), await manager.save(second)
    assert won.action is CookieAction.SET
    assert lost.gone
    assert lost.action is CookieAction.KEEP
    assert won.session_id is not None
    assert await manager.load(won.session_id) is not None


async def test_anonymous_login_creates_the_session(manager: SessionManager) -> None:
    session = manager.begin(None)
    session.login("bob")
    result = await manager.save(session)
    assert result.action is CookieAction.SET
    assert result.session_id
    loaded = await manager.load(result.session_id)
    assert loaded is not None
    assert loaded.user_id == "bob"


async def test_destroy_deletes_and_clears_the_cookie(manager: SessionManager) -> None:
    secret = await stored(manager)
    session = await manager.load(secret)
    assert session is not None
    result = await manager.destroy(session)
    assert result.action is CookieAction.CLEAR
    assert await manager.load(secret) is None


async def test_writing_after_logout_starts_a_new_session(manager: SessionManager) -> None:
    secret = await stored(manager)
    session = await manager.load(secret)
    assert session is not None
    session.login("u")
    await manager.save(session)
    session.logout()
    session["flash"] = "bye"
    result = await manager.save(session)
    assert result.action is CookieAction.SET
    assert result.session_id
    fresh = await manager.load(result.session_id)
    assert fresh is not None
    assert fresh.user_id is None
    assert dict(fresh) == {"flash": "bye"}
    assert await manager.list_sessions("u") == []


async def test_save_never_resurrects_a_destroyed_session(manager: SessionManager) -> None:
    secret = await stored(manager)
    session = await manager.load(secret)
    assert session is not None
    await manager.store.delete(hash_session_id(secret))  # logged out elsewhere meanwhile
    session["late"] = True
    result = await manager.save(session)
    assert result.gone
    # The cookie is left alone: another request may have rotated the session (a login) and set
    # the new one; the next request with a cookie that is merely dead deletes it.
    assert result.action is CookieAction.KEEP
    assert await manager.load(secret) is None
    assert manager.metrics.get("sessions.gone") == 1
    assert (await manager.save(session)).action is CookieAction.KEEP  # saved again: still alone


async def test_rotation_never_resurrects_either(manager: SessionManager) -> None:
    secret = await stored(manager)
    session = await manager.load(secret)
    assert session is not None
    await manager.store.delete(hash_session_id(secret))
    session.login("u")
    assert (await manager.save(session)).gone
    assert await manager.list_sessions("u") == []


async def test_dead_cookie_is_cleared_once(manager: SessionManager) -> None:
    session = await manager.resolve(manager.begin(new_session_id()))
    assert session.is_new
    assert (await manager.save(session)).action is CookieAction.CLEAR


# --- data rules ----------------------------------------------------------------------------


async def test_size_budget_names_size_and_budget(store: CountingStore, clock: FakeClock) -> None:
    manager = SessionManager(store, clock=clock, max_bytes=100)
    session = manager.begin(None)
    session["blob"] = "x" * 200
    with pytest.raises(SessionTooLarge, match=r"211 bytes .* budget of 100 bytes"):
        await manager.save(session)
    assert store.calls["create"] == 0


async def test_budget_counts_compact_json(store: CountingStore, clock: FakeClock) -> None:
    data = {"a": [1, 2, 3], "b": "é"}
    size = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
    manager = SessionManager(store, clock=clock, max_bytes=size)
    session = manager.begin(None)
    session.update(data)
    assert (await manager.save(session)).action is CookieAction.SET


@pytest.mark.parametrize("value", [object(), {1, 2}, b"bytes", float("nan")])
async def test_non_json_values_fail_clearly(manager: SessionManager, value: object) -> None:
    session = manager.begin(None)
    session["bad"] = value
    with pytest.raises(SessionDataInvalid, match="JSON") as info:
        await manager.save(session)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, TesseraError)


def test_non_string_keys_are_refused() -> None:
    with pytest.raises(SessionDataInvalid):
        Session()[1] = "x"  # type: ignore[index]


def test_unloaded_session_refuses_use() -> None:
    session = Session._pending(new_session_id())
    with pytest.raises(SessionNotLoaded, match="load_session"):
        session.get("x")


def test_settings_configure_the_manager(store: CountingStore) -> None:
    settings = Settings(
        session_idle_timeout=5,
        session_renewal_interval=2,
        session_max_bytes=10,
        session_max_per_user=2,
    )
    manager = SessionManager.from_settings(settings, store)
    assert (
        manager.idle_timeout,
        manager.renewal_interval,
        manager.max_bytes,
        manager.max_per_user,
    ) == (5, 2, 10, 2)


def test_sessions_per_user_are_capped_by_default_and_zero_lifts_the_cap(
    store: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().session_max_per_user == DEFAULT_MAX_PER_USER == 100
    assert SessionManager(store).max_per_user == DEFAULT_MAX_PER_USER
    assert SessionManager.from_settings(Settings(), store).max_per_user == DEFAULT_MAX_PER_USER
    monkeypatch.setenv("TESSERA_SESSION_MAX_PER_USER", "0")
    assert SessionManager.from_settings(Settings(), store).max_per_user is None
    assert (
        SessionManager.from_settings(Settings(session_max_per_user=None), store).max_per_user
        is None
    )
    with pytest.raises(ValidationError):
        Settings(session_max_per_user=-1)


async def test_the_default_cap_keeps_the_newest_hundred(clock: FakeClock) -> None:
    """A script that logs in and never logs out cannot grow a user's sessions without end."""
    manager = SessionManager(MemorySessionStore(), clock=clock)
    created = []
    for _ in range(DEFAULT_MAX_PER_USER + 2):
        created.append(await manager.create(user_id="u"))
        clock.advance(1)
    listed = [i.id for i in await manager.list_sessions("u")]
    assert listed == [c.id for c in created[2:]]
    assert manager.metrics.get("sessions.capped") == 2


def test_nonsense_configuration_is_refused(store: CountingStore) -> None:
    with pytest.raises(ConfigError):
        SessionManager(store, idle_timeout=0)


# --- per-user index ------------------------------------------------------------------------


async def test_listing_marks_the_current_session(manager: SessionManager, clock: FakeClock) -> None:
    first = await manager.create(user_id="u", ip="10.0.0.1", user_agent="A")
    clock.advance(1)
    second = await manager.create(user_id="u", ip="10.0.0.2", user_agent="B")
    infos = await manager.list_sessions("u", current=second)
    assert [(i.id, i.ip, i.user_agent, i.current) for i in infos] == [
        (first.id, "10.0.0.1", "A", False),
        (second.id, "10.0.0.2", "B", True),
    ]
    assert all(i.id != s.secret_id for i in infos for s in (first, second))


async def test_revoke_only_own_sessions(manager: SessionManager) -> None:
    mine = await manager.create(user_id="u")
    theirs = await manager.create(user_id="v")
    assert theirs.id
    assert mine.id
    assert not await manager.revoke("u", theirs.id)
    assert not await manager.revoke("u", "not-a-handle")
    assert await manager.revoke("u", mine.id)
    assert await manager.list_sessions("u") == []
    assert len(await manager.list_sessions("v")) == 1


async def test_revoke_all_and_all_but_current(manager: SessionManager) -> None:
    sessions = [await manager.create(user_id="u") for _ in range(3)]
    assert await manager.revoke_others("u", sessions[1]) == 2
    assert [i.id for i in await manager.list_sessions("u")] == [sessions[1].id]
    assert await manager.revoke_all("u") == 1
    assert await manager.list_sessions("u") == []


async def test_cap_revokes_the_oldest(store: CountingStore, clock: FakeClock) -> None:
    manager = SessionManager(store, clock=clock, max_per_user=2)
    created = []
    for _ in range(3):
        created.append(await manager.create(user_id="u"))
        clock.advance(1)
    assert [i.id for i in await manager.list_sessions("u")] == [c.id for c in created[1:]]
    assert manager.metrics.get("sessions.capped") == 1


async def test_cap_evicts_the_same_kind_first_and_tells_the_hooks(clock: FakeClock) -> None:
    """An app that logs in again and again evicts its own older sessions, not the browser."""
    manager = SessionManager(MemorySessionStore(), clock=clock, max_per_user=2)
    evicted: list[str] = []

    async def hook(record: SessionRecord) -> None:
        evicted.append(record.id_hash)

    manager.on_evicted.append(hook)
    browser = await manager.create(user_id="u")
    clock.advance(1)
    apps = []
    for _ in range(3):
        apps.append(await manager.create(user_id="u", kind="token"))
        clock.advance(1)
    listed = [i.id for i in await manager.list_sessions("u")]
    assert listed == [browser.id, apps[2].id]
    assert evicted == [apps[0].id, apps[1].id]


async def test_cap_evicts_from_the_kind_with_most_sessions_least_recently_used_first(
    clock: FakeClock,
) -> None:
    """App sessions that filled the cap give way to new browser logins, stalest first, until
    the kinds are even: the user is not held to one browser by scripts that never log out."""
    manager = SessionManager(MemorySessionStore(), clock=clock, max_per_user=4)
    first_browser = await manager.create(user_id="u")
    clock.advance(1)
    apps = []
    for _ in range(3):
        apps.append(await manager.create(user_id="u", kind="token"))
        clock.advance(1)
    assert await manager.touch(apps[0])  # used since: the stalest app session is now apps[1]
    clock.advance(1)
    second_browser = await manager.create(user_id="u")
    live = {i.id for i in await manager.list_sessions("u")}
    assert live == {first_browser.id, second_browser.id, apps[0].id, apps[2].id}
    clock.advance(1)
    third_browser = await manager.create(user_id="u")  # browsers now outnumber apps
    live = {i.id for i in await manager.list_sessions("u")}
    assert live == {second_browser.id, third_browser.id, apps[0].id, apps[2].id}


class _ListedBeforeEitherEvicts(CountingStore):
    """Answers every listing with the first one it gave: two logins that listed at once."""

    snapshot: list[SessionRecord] | None = None

    async def list_for_user(self, user_id: str, now: float) -> list[SessionRecord]:
        if self.snapshot is None:
            self.snapshot = await self.inner.list_for_user(user_id, now)
        return list(self.snapshot)


async def test_two_logins_at_once_do_not_evict_each_other(clock: FakeClock) -> None:
    store = _ListedBeforeEitherEvicts(MemorySessionStore())
    manager = SessionManager(store, clock=clock, max_per_user=2)
    browser = await manager.create(user_id="u")
    store.snapshot = None
    clock.advance(1)
    manager.max_per_user = None  # both app sessions are stored before either checks the cap
    first = await manager.create(user_id="u", kind="token")
    clock.advance(1)
    second = await manager.create(user_id="u", kind="token")
    manager.max_per_user = 2
    records = {r.id_hash: r for r in await store.inner.list_for_user("u", clock.now())}
    for new in (second, first):  # each checks against the listing both saw
        assert new.id is not None
        await manager._enforce_cap(records[new.id], clock.now())
    live = {r.id_hash for r in await store.inner.list_for_user("u", clock.now())}
    assert second.id in live  # the newest login always survives
    assert browser.id not in live or first.id not in live


async def test_logins_evicting_one_session_at_once_end_it_once(clock: FakeClock) -> None:
    """Concurrent logins of one user list the same oldest session: its tokens are ended and
    its revocation recorded once, not once per login."""
    store = _ListedBeforeEitherEvicts(MemorySessionStore())
    manager = SessionManager(store, clock=clock, max_per_user=None)
    calls: list[str] = []

    async def hook(record: SessionRecord) -> None:
        calls.append(record.id_hash)
        await asyncio.sleep(0.01)  # ends tokens in a store: the other login runs meanwhile

    manager.on_evicted.append(hook)
    oldest = await manager.create(user_id="u")
    logins = []
    for _ in range(3):
        clock.advance(1)
        logins.append(await manager.create(user_id="u"))
    manager.max_per_user = 3
    records = {r.id_hash: r for r in await store.inner.list_for_user("u", clock.now())}
    await asyncio.gather(
        *(manager._enforce_cap(records[s.id], clock.now()) for s in logins if s.id is not None)
    )
    assert calls == [oldest.id]


class _RotatedMeanwhile(CountingStore):
    """The first session the cap deletes was rotated to a new ID just before (same record)."""

    rotated: str | None = None

    async def delete(self, id_hash: str) -> bool:
        if self.rotated is None:
            old = await self.inner.load(id_hash, 0.0, 1e9)
            assert old is not None
            self.rotated = hashlib.sha256(id_hash.encode()).hexdigest()
            await self.inner.replace(id_hash, old[0]._replace(id_hash=self.rotated), 0.0)
        return await self.inner.delete(id_hash)


async def test_a_victim_rotated_away_meanwhile_is_still_evicted(clock: FakeClock) -> None:
    """Its delete finds nothing (its ID changed): the cap lists again and ends it by its new ID,
    rather than leaving the user over the cap."""
    store = _RotatedMeanwhile(MemorySessionStore())
    manager = SessionManager(store, clock=clock, max_per_user=1)
    await manager.create(user_id="u")
    clock.advance(1)
    new = await manager.create(user_id="u")
    assert store.rotated is not None
    assert [i.id for i in await manager.list_sessions("u")] == [new.id]


async def test_an_eviction_whose_hook_fails_keeps_the_session_and_the_login(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Ending an evicted session's tokens failed: it stays whole (tokens and record) for the
    next login to try again, and the login that triggered it goes on."""
    manager = SessionManager(MemorySessionStore(), clock=clock, max_per_user=1)

    async def down(record: SessionRecord) -> None:
        raise StoreUnavailable("redis", "ConnectionError")

    manager.on_evicted.append(down)
    old = await manager.create(user_id="u")
    clock.advance(1)
    new = await manager.create(user_id="u")
    assert [i.id for i in await manager.list_sessions("u")] == [old.id, new.id]
    assert "stays until the next login" in caplog.text
    assert manager.metrics.get("sessions.capped") == 0


async def test_a_cap_of_one_still_means_one_session_whatever_the_kind(clock: FakeClock) -> None:
    manager = SessionManager(MemorySessionStore(), clock=clock, max_per_user=1)
    await manager.create(user_id="u")
    clock.advance(1)
    app = await manager.create(user_id="u", kind="token")
    assert [i.id for i in await manager.list_sessions("u")] == [app.id]


class _RevokedMeanwhile(CountingStore):
    """Someone else revokes the first session this store is asked to delete, just before."""

    racing = True

    async def delete(self, id_hash: str) -> bool:
        if self.racing:
            self.racing = False
            await self.inner.delete(id_hash)
        return await self.inner.delete(id_hash)


async def test_cap_counts_a_session_deleted_meanwhile_as_gone(clock: FakeClock) -> None:
    """The oldest session vanishes between the cap's listing and its delete: no extra revoke."""
    manager = SessionManager(_RevokedMeanwhile(MemorySessionStore()), clock=clock, max_per_user=2)
    created = []
    for _ in range(3):
        created.append(await manager.create(user_id="u"))
        clock.advance(1)
    assert [i.id for i in await manager.list_sessions("u")] == [c.id for c in created[1:]]
    assert manager.metrics.get("sessions.capped") == 0  # not ours: the other revoke counted it


async def test_cap_applies_at_login(store: CountingStore, clock: FakeClock) -> None:
    manager = SessionManager(store, clock=clock, max_per_user=1)
    old = await manager.create(user_id="u")
    clock.advance(1)
    session = manager.begin(await stored(manager))
    await manager.resolve(session)
    session.login("u")
    await manager.save(session)
    assert [i.id for i in await manager.list_sessions("u")] == [session.id]
    assert old.secret_id
    assert await manager.load(old.secret_id) is None


def test_flags_track_reads_and_writes() -> None:
    session = Session()
    assert not session.accessed
    assert "a" not in session
    assert session.accessed
    assert not session.modified
    session.setdefault("a", [])
    assert session.modified
    assert session.pop("a") == []
    session.modified = False
    session.clear()  # clearing nothing changes nothing
    assert not session.modified


async def test_untouched_loaded_data_is_never_decoded(manager: SessionManager) -> None:
    """A request that never reads its session pays no JSON decoding and writes nothing."""
    secret = await stored(manager, a=1)
    session = await manager.load(secret)
    assert session is not None
    assert session._data is None
    assert (await manager.save(session)).action is CookieAction.KEEP
    assert not session.accessed


class _StoreOfTheFirstProtocol(CountingStore):
    """A third-party store written before ``update`` took ``previous``."""

    async def update(self, record: SessionRecord, now: float) -> bool:  # type: ignore[override]
        self.calls["update"] += 1
        return await self.inner.update(record, now)


async def test_a_store_without_previous_in_update_still_saves(clock: FakeClock) -> None:
    store = _StoreOfTheFirstProtocol(MemorySessionStore())
    manager = SessionManager(store, clock=clock, metrics=Metrics())
    session = manager.begin(None)
    session["n"] = 1
    secret = (await manager.save(session)).session_id
    assert secret is not None
    loaded = await manager.load(secret)
    assert loaded is not None
    loaded["n"] = 2
    await manager.save(loaded)
    assert store.calls["update"] == 1
    again = await manager.load(secret)
    assert again is not None
    assert again["n"] == 2
