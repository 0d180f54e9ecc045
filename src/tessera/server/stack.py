"""The server's middleware chain, built from the opened services on the first request.

Starlette builds middleware when the app is first called (the lifespan), before the services
exist, so the generic middleware of :mod:`tessera.asgi` — which take their dependencies
explicitly — are assembled here lazily, once, from ``app.state.services``. Order, outside in:

``ErrorGuard`` (Tessera errors raised by any middleware become JSON 4xx/503, never a 500) →
``ConsentMiddleware`` (drops cookies the visitor did not consent to) → ``SessionMiddleware`` →
``RememberMeMiddleware`` → ``AuthMiddleware`` (the principal) → ``CsrfMiddleware`` → the app.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from tessera.asgi.auth import AuthMiddleware
from tessera.asgi.consent import ConsentMiddleware
from tessera.asgi.csrf import CsrfMiddleware
from tessera.asgi.remember import RememberMeMiddleware
from tessera.asgi.responses import TrackedSend, send_error
from tessera.asgi.sessions import SessionMiddleware
from tessera.cookies import CookieBudget
from tessera.csrf import PRESESSION_COOKIE
from tessera.errors import TesseraError
from tessera.identity.events import EventKind
from tessera.server.services import CONSENT_COOKIE, REMEMBER_COOKIE, Services

log = logging.getLogger("tessera.server")

TOKEN_ENDPOINTS = ("/api/v1/auth/", "/oauth/")
"""Paths that neither read nor set cookies (JSON credentials in, tokens out): CSRF-exempt."""


def client_ip(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def user_agent(scope: Scope) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == b"user-agent":
            return str(value.decode("latin-1"))[:256]
    return None


class ErrorGuard:
    """Answer a :class:`TesseraError` escaping the middleware chain with its own status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracked = TrackedSend(send)
        try:
            await self.app(scope, receive, tracked)
        except TesseraError as exc:
            if tracked.started or scope["type"] != "http":
                raise
            log.warning("%s on %s %s: %s", exc.code, scope["method"], scope["path"], exc.message)
            await send_error(send, exc.http_status, exc)


def build_chain(app: ASGIApp, services: Services) -> ASGIApp:
    """The middleware chain around ``app`` (see the module docstring for the order)."""
    settings = services.settings
    policy = services.cookie_policy

    async def user_allowed(user_id: str) -> bool:
        user = await services.users.store.get_by_id(user_id)
        return user is not None and not user.disabled

    async def on_restored(user_id: str, scope: Scope) -> None:
        # A login, as at the form: a fresh CSRF secret, stored with it (see CsrfProtector.reset).
        services.csrf.reset(scope["session"])
        await services.events.record(
            EventKind.LOGIN_SUCCEEDED,
            user_id=user_id,
            ip=client_ip(scope),
            user_agent=user_agent(scope),
            detail={"method": "remember_me"},
        )

    async def on_theft(user_id: str, scope: Scope) -> None:
        log.warning("remember-me theft detected for user %s; revoking everything", user_id)
        await services.revoker.revoke_user_everywhere(user_id)
        await services.events.record(
            EventKind.REMEMBER_ME_THEFT,
            user_id=user_id,
            ip=client_ip(scope),
            user_agent=user_agent(scope),
        )

    chain: ASGIApp = CsrfMiddleware(
        app,
        protector=services.csrf,
        authority_cookies=[
            services.cookie_name(settings.session_cookie_name),
            services.cookie_name(REMEMBER_COOKIE),
        ],
        exempt_paths=TOKEN_ENDPOINTS,
        presession_cookie=services.cookie_name(PRESESSION_COOKIE),
    )
    chain = AuthMiddleware(chain, verifier=services.verifier)
    chain = RememberMeMiddleware(
        chain,
        remember=services.remember,
        policy=policy,
        cookie_name=services.cookie_name(REMEMBER_COOKIE),
        user_allowed=user_allowed,
        on_restored=on_restored,
        on_theft=on_theft,
    )
    chain = SessionMiddleware(
        chain,
        manager=services.sessions,
        cookie_policy=policy,
        cookie_name=settings.session_cookie_name,
    )
    chain = ConsentMiddleware(
        chain,
        registry=services.consent_registry,
        keys=services.keys.hmac_keys,
        policy=policy,
        clock=services.clock,
        metrics=services.metrics,
        cookie_name=CONSENT_COOKIE,
        budget=CookieBudget(settings.cookie_budget, metrics=services.metrics, clock=services.clock),
    )
    return ErrorGuard(chain)


class ServicesStack:
    """Build :func:`build_chain` once the lifespan has opened the services."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._chain: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self._chain is None:
            self._chain = build_chain(self.app, scope["app"].state.services)
        await self._chain(scope, receive, send)
