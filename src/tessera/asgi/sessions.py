"""SessionMiddleware: server-side sessions for any ASGI app (Starlette, FastAPI, bare ASGI).

The session is put at ``scope["session"]``, so Starlette's and FastAPI's ``request.session``
work unchanged; it is a :class:`tessera.sessions.Session` (a mapping of JSON values).

**Loading, and the one trade-off.** ``request.session`` is a synchronous mapping and stores are
async, so the session cannot be fetched on first dictionary access without blocking the event
loop. Hence:

- ``autoload=True`` (default): a request carrying a *well-formed* session cookie loads its
  session before the app runs. Requests without a cookie, or with a malformed one, never touch
  the store either way (a format check rejects garbage first).
- ``autoload=False``: nothing is loaded up front; endpoints that need the session call
  ``await load_session(request)`` (or depend on :func:`get_session` in FastAPI). Using the
  mapping before that raises :class:`tessera.errors.SessionNotLoaded`, never silently shows an
  empty session. This saves a store round trip on every request that does not need the session.

**What goes out.** Changes are saved just before ``http.response.start`` is forwarded (Set-Cookie
travels in that message), and only when something changed; Set-Cookie is sent only when the
session was created (non-empty), rotated or destroyed, or its cookie names no session; ``Vary:
Cookie`` when the session was read. A sliding renewal sends none: the cookie would be the same
(its Max-Age counts down to the absolute end, which renewal does not move), and a renewal sent
by a request that loaded the session just before a parallel login rotated it would put the dead
ID back in the browser. A 5xx response saves nothing and sets no cookie. Changes made
after the response started are not saved. WebSocket connections get the session read-only.

**Failure.** A forged, garbled, expired or unknown cookie means "no session" (counted in
``sessions.cookie_invalid`` / ``sessions.unknown``) and is deleted. A store that is down yields a
503 ``{"error": "store_unavailable", ...}`` and never anonymous access. Session data over the
size budget, or not JSON, is the app's bug: it is logged and answered with a 500 whose code
names it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from typing import Any

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tessera.asgi.responses import send_error
from tessera.config import Settings
from tessera.cookies import CookiePolicy
from tessera.cookies._parse import cookie_value
from tessera.errors import SessionDataInvalid, SessionTooLarge, StoreUnavailable, TesseraError
from tessera.sessions import CookieAction, SaveResult, Session, SessionManager
from tessera.sessions._ids import ID_LENGTH

SCOPE_SESSION = "session"
SCOPE_MANAGER = "tessera.session_manager"
MAX_USER_AGENT = 512
"""Characters of User-Agent recorded with a session: it comes from the network, so it is capped."""

_logger = logging.getLogger("tessera.sessions")


async def load_session(request_or_scope: HTTPConnection | Mapping[str, Any]) -> Session:
    """The request's session, loaded from the store if it was not yet (``autoload=False``).

    Accepts a Starlette/FastAPI request or an ASGI scope. Raises StoreUnavailable when the store
    is down (the middleware answers 503).
    """
    scope = (
        request_or_scope.scope
        if isinstance(request_or_scope, HTTPConnection)
        else (request_or_scope)
    )
    session = scope.get(SCOPE_SESSION)
    manager = scope.get(SCOPE_MANAGER)
    if not isinstance(session, Session) or not isinstance(manager, SessionManager):
        raise TesseraError(
            "no session in this request: is SessionMiddleware installed?",
            code="session_middleware_missing",
        )
    return await manager.resolve(session)


async def get_session(request: HTTPConnection) -> Session:
    """FastAPI/Starlette dependency: ``session: Session = Depends(get_session)``."""
    return await load_session(request)


class SessionMiddleware:
    """Pure ASGI middleware: ``SessionMiddleware(app, manager=..., dev=False)``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        manager: SessionManager,
        cookie_policy: CookiePolicy | None = None,
        dev: bool = False,
        cookie_name: str = "session",
        autoload: bool = True,
        logger: logging.Logger | None = None,
    ) -> None:
        """``cookie_policy`` wins over ``dev``; ``cookie_name`` is bare (the policy prefixes it)."""
        self.app = app
        self.manager = manager
        if cookie_policy is None:
            cookie_policy = CookiePolicy.development() if dev else CookiePolicy()
        self.policy = cookie_policy
        self.cookie_name = cookie_policy.name(cookie_name)
        # The header's start when the session cookie comes first, and where its ID would end.
        self._prefix = self.cookie_name.encode("latin-1") + b"="
        self._prefix_len = len(self._prefix)
        self._prefix_end = self._prefix_len + ID_LENGTH
        self.autoload = autoload
        self.logger = logger if logger is not None else _logger

    @classmethod
    def from_settings(
        cls, app: ASGIApp, settings: Settings, manager: SessionManager, *, autoload: bool = True
    ) -> SessionMiddleware:
        return cls(
            app,
            manager=manager,
            cookie_policy=CookiePolicy.from_settings(settings),
            cookie_name=settings.session_cookie_name,
            autoload=autoload,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        header = _cookie_header(scope)
        if header is None:
            secret = None
        elif header.startswith(self._prefix) and (
            # The usual case, without a parse: the session cookie comes first and its value
            # has an ID's length (anything else goes through the parser, which trims and
            # unquotes; a value it would change is not an ID either way).
            (size := len(header)) == self._prefix_end
            or (size > self._prefix_end and header[self._prefix_end] == _SEMICOLON)
        ):
            secret = header[self._prefix_len : self._prefix_end].decode("latin-1")
        else:
            secret = cookie_value(header, self.cookie_name)
        manager = self.manager
        # Loaded at once from a store without I/O; otherwise begun, and loaded by awaiting.
        session = manager.open_now(secret) if self.autoload else None
        if session is None:
            session = manager.begin(secret)
            if self.autoload and not session._loaded:
                try:
                    await manager.resolve(session)
                except (StoreUnavailable, OSError) as exc:
                    await self.respond_unavailable(scope, send, exc)
                    return
        scope[SCOPE_SESSION] = session
        scope[SCOPE_MANAGER] = manager
        if kind == "websocket":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(self, scope, session, send)
        try:
            await self.app(scope, receive, exchange.send_wrapper)
        except StoreUnavailable as exc:
            # The app's own load_session() (autoload=False) or a store call failed: fail closed
            # while a response can still be sent; otherwise the server's handler takes over.
            if exchange.started:
                raise
            exchange.started = True
            await self.respond_unavailable(scope, send, exc)

    async def respond_unavailable(self, scope: Scope, send: Send, exc: Exception) -> None:
        error = (
            exc
            if isinstance(exc, StoreUnavailable)
            else StoreUnavailable("session", type(exc).__name__)
        )
        self.logger.error("session store unavailable, answering 503: %s", error)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1011})
            return
        await send_error(send, 503, error)

    def set_cookie_header(self, result: SaveResult) -> tuple[bytes, bytes] | None:
        """The Set-Cookie header for a save result, through the cookie layer."""
        if result.action is CookieAction.SET and result.session_id is not None:
            cookie = self.policy.cookie(self.cookie_name, result.session_id, max_age=result.max_age)
        elif result.action is CookieAction.CLEAR:
            cookie = self.policy.cookie(self.cookie_name, "").deletion()
        else:
            return None
        return b"set-cookie", cookie.serialize().encode("latin-1")


class _Exchange:
    """The ``send`` of one HTTP request through the middleware: saves at response start."""

    __slots__ = ("middleware", "replaced", "scope", "send", "session", "started")

    def __init__(
        self, middleware: SessionMiddleware, scope: Scope, session: Session, send: Send
    ) -> None:
        self.middleware = middleware
        self.scope = scope
        self.session = session
        self.send = send
        self.started = False
        self.replaced = False

    def send_wrapper(self, message: Message) -> Awaitable[None]:
        # A plain function returning the awaitable to await (ASGI's ``send`` is "an awaitable
        # callable"): the usual message goes on as the server's own send, without a coroutine
        # of ours around each of the two messages of every response. Only a start message
        # whose save needs I/O, or a response replaced by an error, gets one.
        if self.replaced:
            return _nothing()  # The app's response was replaced by an error; drop the rest.
        if message["type"] != "http.response.start":
            return self.send(message)
        self.started = True
        if message["status"] >= 500:
            return self.send(self._start(message, None))  # a 5xx saves nothing
        try:
            # Synchronous when no I/O is needed (the usual request), else awaited.
            result = self.middleware.manager.save_now(self.session)
        except (StoreUnavailable, OSError, SessionTooLarge, SessionDataInvalid) as exc:
            return self._replace_with_error(exc)
        if result is None:
            return self._start_after_save(message)
        return self.send(self._start(message, result))

    def _start(self, message: Message, result: SaveResult | None) -> Message:
        """The response start to forward: the cookie the save asks for, ``Vary`` if read."""
        set_cookie = (
            None
            if result is None or result.action is _KEEP
            else self.middleware.set_cookie_header(result)
        )
        accessed = self.session.accessed
        if set_cookie is not None or accessed:
            return _with_headers(message, set_cookie, accessed)
        return message

    async def _start_after_save(self, message: Message) -> None:
        """The response start, once a save that needs the store's I/O is done."""
        session, manager = self.session, self.middleware.manager
        try:
            if session._record is not None and not (session._rotate or session._destroy):
                # An update of a stored session (a store with I/O): nothing about the client is
                # recorded, so the headers need not be read again.
                result = await manager.save(session)
            else:
                # Created or logged in: the client's address and agent are recorded.
                client = self.scope.get("client")
                result = await manager.save(
                    session, ip=client[0] if client else None, user_agent=_user_agent(self.scope)
                )
        except (StoreUnavailable, OSError, SessionTooLarge, SessionDataInvalid) as exc:
            await self._replace_with_error(exc)
            return
        await self.send(self._start(message, result))

    async def _replace_with_error(
        self, exc: StoreUnavailable | OSError | SessionTooLarge | SessionDataInvalid
    ) -> None:
        """Answer ``exc`` instead of the app's response, whose messages are dropped from now."""
        self.replaced = True
        if isinstance(exc, (SessionTooLarge, SessionDataInvalid)):
            self.middleware.logger.error("session not saved, answering 500 (%s): %s", exc.code, exc)
            await send_error(self.send, 500, exc)
            return
        await self.middleware.respond_unavailable(self.scope, self.send, exc)


_KEEP = CookieAction.KEEP


async def _nothing() -> None:
    """What awaiting a dropped message does."""


_SEMICOLON = ord(";")


def _cookie_header(scope: Scope) -> bytes | None:
    """The request's Cookie header (several fields, as HTTP/2 sends, joined: RFC 9113 §8.2.3)."""
    found: bytes | None = None
    for key, value in scope.get("headers", ()):
        # Servers send lower-case names (ASGI says "should", not "must"): the exact comparison
        # settles almost every header, lower() (a copy) only runs for other spellings.
        if key == b"cookie" or (len(key) == 6 and key.lower() == b"cookie"):
            found = value if found is None else found + b"; " + value
    return found


def _user_agent(scope: Scope) -> str | None:
    """The (capped) User-Agent, read only when a session is created or logged in."""
    for key, value in scope.get("headers", ()):
        if len(key) == 10 and key.lower() == b"user-agent":
            return bytes(value[:MAX_USER_AGENT]).decode("latin-1")
    return None


def _with_headers(message: Message, set_cookie: tuple[bytes, bytes] | None, vary: bool) -> Message:
    """A copy of the response start with Set-Cookie and ``Vary: Cookie`` added.

    A new list and a new message: the app may reuse its own (a module-level response).
    """
    headers = list(message.get("headers") or ())
    if set_cookie is not None:
        headers.append(set_cookie)
    if vary:
        for index, (key, value) in enumerate(headers):
            # Merge with a Vary the app set rather than repeat it (lower() only at the length).
            if len(key) == 4 and key.lower() == b"vary":
                tokens = {t.strip().lower() for t in value.split(b",")}
                if b"cookie" not in tokens and b"*" not in tokens:
                    headers[index] = (key, value + b", Cookie")
                break
        else:
            headers.append(_VARY_COOKIE)
    return {**message, "headers": headers}


_VARY_COOKIE = (b"vary", b"Cookie")
