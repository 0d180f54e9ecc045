"""RememberMeMiddleware: log a browser in again from its remember-me cookie.

Runs inside :class:`~tessera.asgi.sessions.SessionMiddleware`. When the request's session has
no user but a remember-me cookie is present, the cookie is consumed (single use): on success the
session logs the user in, marked ``remembered`` (sensitive changes ask for the password again),
and the rotated cookie goes back with the response; an unknown or expired cookie is deleted; a
replayed (stolen) one triggers ``on_theft`` — the caller revokes every session and token of that
user and records a security event — and is deleted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tessera.asgi.consent import request_cookies
from tessera.cookies import CookiePolicy
from tessera.identity.remember import DEFAULT_LIFETIME, RememberMe, TheftDetected, link_session
from tessera.sessions import Session

UserCheck = Callable[[str], Awaitable[bool]]
"""May this user still log in (exists, not disabled)?"""
Hook = Callable[[str, Scope], Awaitable[None]]


def remember_cookie_value(policy: CookiePolicy, name: str, value: str, max_age: int) -> str:
    """The Set-Cookie header value of a remember-me cookie (persistent, HttpOnly)."""
    return policy.cookie(name, value, max_age=max_age).serialize()


def max_age_until(expires_at: float, now: float, limit: int = DEFAULT_LIFETIME) -> int:
    """A remember-me cookie's Max-Age: until its token ends (rotating or re-issuing a token
    does not move its end), at most ``limit``, at least a second."""
    return max(1, int(min(limit, expires_at - now)))


class RememberMeMiddleware:
    """Restore a login from the remember-me cookie (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        remember: RememberMe,
        policy: CookiePolicy,
        cookie_name: str,
        user_allowed: UserCheck,
        on_restored: Hook,
        on_theft: Hook,
        max_age: int = DEFAULT_LIFETIME,
    ) -> None:
        self.app = app
        self.remember = remember
        self.policy = policy
        self.cookie_name = cookie_name
        self.user_allowed = user_allowed
        self.on_restored = on_restored
        self.on_theft = on_theft
        self.max_age = max_age

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session = scope.get("session")
        value = self._cookie(scope)
        if value is None or not isinstance(session, Session) or not session.is_loaded:
            await self.app(scope, receive, send)
            return
        if session.user_id is not None:
            await self.app(scope, receive, send)
            return
        set_cookie = await self._restore(scope, session, value)

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and set_cookie is not None:
                headers = list(message.get("headers") or ())
                headers.append((b"set-cookie", set_cookie.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _cookie(self, scope: Scope) -> str | None:
        # Every Cookie field, as HTTP/2 clients send one per cookie (RFC 9113 §8.2.3).
        return request_cookies(scope).get(self.cookie_name)

    async def _restore(self, scope: Scope, session: Session, value: str) -> str | None:
        """Log the session in from ``value``; the Set-Cookie to send back, if any."""
        deletion = self.policy.cookie(self.cookie_name, "").deletion().serialize()
        try:
            result = await self.remember.consume(value)
        except TheftDetected as theft:
            await self.on_theft(theft.user_id, scope)
            return deletion
        if result is None or not await self.user_allowed(result.user_id):
            if result is not None:
                await self.remember.forget_user(result.user_id)
            return deletion
        session.login(result.user_id, remembered=True)
        link_session(session, value)
        await self.on_restored(result.user_id, scope)
        if result.cookie_value is None:
            return None
        max_age = max_age_until(result.expires_at, self.remember.clock.now(), self.max_age)
        return remember_cookie_value(self.policy, self.cookie_name, result.cookie_value, max_age)
