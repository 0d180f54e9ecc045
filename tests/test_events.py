"""Security events: bounded fields, newest-first listing, on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.clock import FakeClock
from tessera.errors import InvalidInput
from tessera.identity.events import (
    MAX_DETAIL_STRING_LENGTH,
    MAX_IP_LENGTH,
    MAX_USER_AGENT_LENGTH,
    EventKind,
    EventLog,
    EventStore,
    MemoryEventStore,
    clean_detail,
    clean_text,
)
from tessera.stores.sql_events import SqlEventStore


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> EventStore:
    """Each event store implementation, empty."""
    if request.param == "memory":
        return MemoryEventStore()
    return SqlEventStore(request.getfixturevalue(f"{request.param}_engine"))


@pytest.fixture
def log(store: EventStore, clock: FakeClock) -> EventLog:
    return EventLog(store, clock)


async def test_store_satisfies_the_protocol(store: EventStore) -> None:
    assert isinstance(store, EventStore)


async def test_recorded_events_come_back_newest_first(log: EventLog, clock: FakeClock) -> None:
    first = await log.record(EventKind.LOGIN_FAILED, user_id="u1", ip="203.0.113.9")
    clock.advance(5)
    second = await log.record(
        EventKind.LOGIN_SUCCEEDED,
        user_id="u1",
        ip="2001:db8::1",
        user_agent="Firefox/130",
        detail={"method": "password", "remember": True, "attempt": 2},
    )
    await log.record(EventKind.LOGOUT, user_id="u2")
    events = await log.list_for_user("u1")
    assert events == [second, first]
    assert second.at == clock.now()
    assert second.detail == {"method": "password", "remember": True, "attempt": 2}
    assert second.kind is EventKind.LOGIN_SUCCEEDED
    assert first.detail == {}
    assert first.id != second.id


async def test_same_instant_events_keep_insertion_order(log: EventLog) -> None:
    ids = [(await log.record(EventKind.SESSION_REVOKED, user_id="u1")).id for _ in range(3)]
    assert [e.id for e in await log.list_for_user("u1")] == ids[::-1]


async def test_limit_keeps_the_newest(log: EventLog, clock: FakeClock) -> None:
    for _ in range(60):
        await log.record(EventKind.LOGIN_FAILED, user_id="u1")
        clock.advance(1)
    events = await log.list_for_user("u1")
    assert len(events) == 50
    assert events[0].at == clock.now() - 1
    assert len(await log.list_for_user("u1", limit=3)) == 3
    with pytest.raises(InvalidInput):
        await log.list_for_user("u1", limit=0)


async def test_events_without_a_user_are_kept_but_listed_for_nobody(log: EventLog) -> None:
    event = await log.record(EventKind.LOGIN_FAILED, detail={"reason": "unknown_user"})
    assert event.user_id is None
    assert await log.list_for_user("") == []


async def test_attacker_supplied_text_is_truncated_and_defanged(log: EventLog) -> None:
    event = await log.record(
        EventKind.LOGIN_FAILED,
        user_id="u1",
        ip="1" * 500,
        user_agent="Evil\r\nSet-Cookie: x=1\x1b[31m" + "A" * 5000,
        detail={"attempted": "\u202eadmin" + "x" * 5000},
    )
    [stored] = await log.list_for_user("u1")
    assert stored == event
    assert len(stored.ip or "") == MAX_IP_LENGTH
    assert len(stored.user_agent or "") == MAX_USER_AGENT_LENGTH
    assert "\r" not in (stored.user_agent or "")
    assert "\x1b" not in (stored.user_agent or "")
    attempted = str(stored.detail["attempted"])
    assert len(attempted) == MAX_DETAIL_STRING_LENGTH
    assert attempted.startswith("\ufffdadmin")


async def test_delete_before_removes_old_events_only(
    store: EventStore, log: EventLog, clock: FakeClock
) -> None:
    await log.record(EventKind.LOGIN_FAILED, user_id="u1")
    clock.advance(100)
    recent = await log.record(EventKind.LOGIN_SUCCEEDED, user_id="u1")
    assert await store.delete_before(clock.now() - 50) == 1
    assert await log.list_for_user("u1") == [recent]


@pytest.mark.parametrize(
    "detail",
    [
        {"nested": {"a": 1}},
        {"list": [1, 2]},
        {"bytes": b"x"},
        {"nan": math.nan},
        {"inf": math.inf},
        {f"k{i}": i for i in range(17)},
    ],
)
def test_detail_must_be_a_small_flat_json_object(detail: dict[str, object]) -> None:
    with pytest.raises(InvalidInput) as info:
        clean_detail(detail)  # type: ignore[arg-type]
    assert info.value.code == "invalid_event"


def test_unknown_event_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="not_a_kind"):
        EventKind("not_a_kind")


@given(st.text(max_size=400), st.integers(min_value=0, max_value=300))
def test_clean_text_is_bounded_and_free_of_control_characters(value: str, limit: int) -> None:
    cleaned = clean_text(value, limit)
    assert cleaned is not None
    assert len(cleaned) <= limit
    assert not any(c in cleaned for c in "\r\n\t\x00\x1b\u202e")


@given(
    st.dictionaries(
        st.text(max_size=60),
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        max_size=16,
    )
)
def test_clean_detail_keeps_flat_scalars_bounded(detail: dict[str, object]) -> None:
    try:
        cleaned = clean_detail(detail)  # type: ignore[arg-type]
    except InvalidInput:
        # Only infinities are refused among these values.
        assert any(isinstance(v, float) and math.isinf(v) for v in detail.values())
        return
    assert len(cleaned) <= len(detail)
    assert all(len(k) <= 32 for k in cleaned)
    assert all(len(v) <= MAX_DETAIL_STRING_LENGTH for v in cleaned.values() if isinstance(v, str))
