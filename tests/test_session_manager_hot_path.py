"""The per-request shortcuts of the session path keep the behaviour of the slow ways they replace.

Each shortcut (a record copy without ``_replace``, one shared C JSON encoder, a direct C JSON
scan, one pass over the request headers, expiry filings that writes no longer add) is pinned here
against the straightforward version or the promise it must keep.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.asgi.sessions import MAX_USER_AGENT, _cookie_header, _user_agent
from tessera.clock import FakeClock
from tessera.errors import SessionDataInvalid
from tessera.sessions.manager import _saved, encode_data
from tessera.sessions.session import _decode
from tessera.stores.memory_sessions import MemorySessionStore
from tessera.stores.sessions import SessionRecord


def full_record() -> SessionRecord:
    """A record whose every field differs from its default, so a dropped field shows."""
    record = SessionRecord(
        id_hash="a" * 64,
        data=b'{"k":1}',
        created_at=1.5,
        last_seen=2.5,
        idle_timeout=300.0,
        absolute_expires_at=9000.0,
        user_id="u1",
        kind="token",
        ip="192.0.2.1",
        user_agent="ua",
        remembered=True,
        persistent=True,
    )
    assert all(
        getattr(record, name) != default for name, default in SessionRecord._field_defaults.items()
    )
    return record


def test_saved_record_equals_dataclasses_replace() -> None:
    """The save path's record copy changes data and last_seen and keeps every other field."""
    record = full_record()
    assert _saved(record, b"{}", 7.25) == record._replace(data=b"{}", last_seen=7.25)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(data=st.dictionaries(st.text(), JSON, max_size=5))
def test_shared_encoder_writes_what_json_dumps_writes(data: dict[str, object]) -> None:
    """encode_data's shared encoder gives the bytes of the documented json.dumps call."""
    expected = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert encode_data(data, 1 << 20) == expected.encode()


def test_shared_encoder_refuses_a_reference_cycle() -> None:
    """Without the circular check, a cycle still ends in SessionDataInvalid, not a crash."""
    cyclic: dict[str, object] = {}
    cyclic["self"] = [cyclic]
    with pytest.raises(SessionDataInvalid):
        encode_data(cyclic, 1 << 20)
    assert encode_data({"after": 1}, 100) == b'{"after":1}'  # nothing left over from the failure


@given(data=st.dictionaries(st.text(), JSON, max_size=5))
def test_direct_scan_decodes_what_json_loads_decodes(data: dict[str, object]) -> None:
    """The session's decoder reads back what the manager wrote exactly as json.loads would."""
    raw = encode_data(data, 1 << 20)
    assert _decode(raw) == json.loads(raw) == data


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(b"", {}), (None, {}), (b"[1]", {}), (b' {"a": 1} ', {"a": 1}), (b'"s"', {})],
)
def test_direct_scan_accepts_what_json_loads_accepts(
    raw: bytes | None, expected: dict[str, object]
) -> None:
    """Padding is left to json.loads; a stored non-object is an empty session, as before."""
    assert _decode(raw) == expected


@pytest.mark.parametrize("raw", [b"{} x", b"{", b"x", b"\xff"])
def test_corrupt_stored_data_raises_the_json_error(raw: bytes) -> None:
    """Garbage in the store raises json's own error naming it, never a StopIteration."""
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
        _decode(raw)


@given(
    headers=st.lists(
        st.tuples(
            st.sampled_from([b"cookie", b"Cookie", b"user-agent", b"User-Agent", b"host", b"x"]),
            st.binary(max_size=600),
        ),
        max_size=6,
    )
)
def test_header_reads_match_a_plain_scan(headers: list[tuple[bytes, bytes]]) -> None:
    """Cookie fields joined in order and the first User-Agent, capped, whatever the name's case."""
    cookie, user_agent = _cookie_header({"headers": headers}), _user_agent({"headers": headers})
    fields = [v for k, v in headers if k.lower() == b"cookie"]
    assert cookie == (b"; ".join(fields) if fields else None)
    agents = [v for k, v in headers if k.lower() == b"user-agent"]
    expected = agents[0].decode("latin-1")[:MAX_USER_AGENT] if agents else None
    assert user_agent == expected


def _filings(store: MemorySessionStore) -> int:
    return sum(len(bucket) for bucket in store._due.values())


def make(now: float, n: int, idle: float = 100.0) -> SessionRecord:
    return SessionRecord(
        id_hash=hashlib.sha256(b"%d" % n).hexdigest(),
        data=b"{}",
        created_at=now,
        last_seen=now,
        idle_timeout=idle,
        absolute_expires_at=now + 10_000.0,
    )


async def test_saving_on_every_request_files_the_session_once(clock: FakeClock) -> None:
    """A session written and renewed on every request keeps one expiry filing, not one per write."""
    store = MemorySessionStore()
    record = make(clock.now(), 1)
    await store.create(record)
    for _ in range(500):
        clock.advance(1.0)
        assert await store.load(record.id_hash, clock.now(), 0.0) is not None
        assert await store.update(_saved(record, b"[]", clock.now()), clock.now())
    assert _filings(store) == 1


async def test_a_renewed_session_outlives_its_first_filing_and_still_expires(
    clock: FakeClock,
) -> None:
    """When its first filing comes due, a renewed session is filed again and swept later."""
    store = MemorySessionStore()
    record = make(clock.now(), 1)
    await store.create(record)
    clock.advance(90.0)
    await store.update(_saved(record, b"[]", clock.now()), clock.now())  # now expires at 190
    clock.advance(20.0)
    assert await store.sweep(clock.now()) == 0
    assert len(store) == 1
    clock.advance(80.0)  # t = 190
    assert await store.sweep(clock.now()) == 1
    assert len(store) == 0


async def test_an_update_that_shortens_the_expiry_is_swept_on_time(clock: FakeClock) -> None:
    """A write moving the expiry earlier files the session where it now falls due."""
    store = MemorySessionStore()
    record = make(clock.now(), 1, idle=1000.0)
    await store.create(record)
    await store.update(record._replace(idle_timeout=10.0), clock.now())
    clock.advance(10.0)
    assert await store.sweep(clock.now()) == 1
