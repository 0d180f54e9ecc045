"""The middleware's shortcut for a Cookie header that starts with the session cookie.

``SessionMiddleware`` reads the session ID straight out of the header when the session cookie
comes first and has an ID's length, and only otherwise runs the cookie parser. Whatever the
header, the session a request gets must be the one the parser's answer gives.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tessera.asgi.sessions import SessionMiddleware
from tessera.clock import FakeClock
from tessera.cookies._parse import cookie_value
from tessera.sessions import Session, SessionManager
from tessera.sessions._ids import ID_LENGTH
from tessera.stores.memory_sessions import MemorySessionStore

NAME = "session"
KNOWN = "A" * 42 + "E"  # well-formed; the store below holds a session under it


def _state(session: Session) -> tuple[Any, ...]:
    return (session.is_new, session.secret_id, session._stale_cookie, dict(session))


async def _through_middleware(manager: SessionManager, header: bytes) -> tuple[Any, ...]:
    """The state of the session the app sees (the save afterwards changes it)."""
    seen: list[tuple[Any, ...]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(_state(scope["session"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        pass

    middleware = SessionMiddleware(app, manager=manager, dev=True, cookie_name=NAME)
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"cookie", header)]}
    await middleware(scope, receive, send)
    return seen[0]


_ID_BYTES = st.text(
    st.sampled_from('AEIMQUYcgkosw048-_zZ9 \t";=é'), min_size=ID_LENGTH - 2, max_size=ID_LENGTH + 2
).map(lambda s: s.encode())
_REST = st.sampled_from([b"", b";", b"; a=b", b" ; a=b", b";session=" + KNOWN.encode(), b"x"])


@given(
    value=st.one_of(_ID_BYTES, st.just(KNOWN.encode()), st.just(b'"' + KNOWN.encode() + b'"')),
    rest=_REST,
    name=st.sampled_from([b"session", b"Session", b" session", b"session "]),
)
async def test_shortcut_gives_the_session_the_parser_names(
    value: bytes, rest: bytes, name: bytes
) -> None:
    header = name + b"=" + value + rest
    clock = FakeClock()
    store = MemorySessionStore()
    manager = SessionManager(store, clock=clock)
    created = await manager.create({"k": 1})
    known = created.secret_id
    assert known is not None
    # Put the known session under the ID the strategies use.
    header = header.replace(KNOWN.encode(), known.encode())

    got = await _through_middleware(manager, header)
    expected = await manager.resolve(manager.begin(cookie_value(header, NAME)))
    assert got == _state(expected)
