"""The app every token benchmark variant serves: one endpoint that says who is calling.

``BENCH_VARIANT`` picks how the caller is known: ``bare`` (no protection at all: the same
endpoint answers "anonymous"), ``bearer`` (AuthMiddleware with a real TokenVerifier, its cache
and a revocation view, and ``require_user``) or ``cookie`` (Tessera's SessionMiddleware on the
memory store, AuthMiddleware, ``require_user``). The endpoint code is the same for all, so what
is measured is the authentication machinery alone.

Unmeasured helper routes: ``/ready`` (the harness waits for it), ``/token`` (bearer: a fresh
access token) and ``/login`` (cookie: a logged-in session).
"""

from __future__ import annotations

import gc
import os
import secrets
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tessera.asgi.auth import AuthError, AuthMiddleware, require_user

VARIANT = os.environ.get("BENCH_VARIANT", "bare")
PROTECTED = VARIANT != "bare"


async def me(request: Request) -> Response:
    user = require_user(request).user_id if PROTECTED else "anonymous"
    return JSONResponse({"user": user})


async def ready(request: Request) -> Response:
    return PlainTextResponse("ok")


async def auth_error(request: Request, exc: Exception) -> Response:
    code = exc.code if isinstance(exc, AuthError) else "unauthorized"
    return JSONResponse({"error": code}, status_code=401)


def _verifier() -> tuple[Any, Route]:
    """A verifier as the server builds it, and a route that mints tokens it accepts."""
    from tessera.clock import SYSTEM_CLOCK
    from tessera.keys import KeyRing, new_key
    from tessera.stores.revocations import MarkKind, MemoryRevocationStore, RevocationMark
    from tessera.tokens import RevocationView, TokenIssuer, TokenVerifier, VerifiedTokenCache

    clock = SYSTEM_CLOCK
    ring = KeyRing([new_key("sign", "EdDSA", clock.now() - 60)], clock)
    view = RevocationView(MemoryRevocationStore(), clock, max_token_lifetime=600)
    now = clock.now()  # a non-empty view, as in production
    view.apply(RevocationMark(MarkKind.USER, "someone-else", now, now + 600))
    issuer = TokenIssuer(ring, "https://id.example", "tessera", 600, clock)
    # A provider rather than the ring itself, as the server passes (its ring can be reloaded):
    # the verifier then asks it on every request whether the ring changed.
    verifier = TokenVerifier(
        lambda: ring,
        "https://id.example",
        "tessera",
        clock,
        revocations=view,
        cache=VerifiedTokenCache(),
    )

    async def token(request: Request) -> Response:
        # Ids of the server's real sizes (user: 32 hex, session handle: 64 hex), so the header
        # wrk sends is as long as a real app's.
        sub, sid = secrets.token_hex(16), secrets.token_hex(32)
        return PlainTextResponse(issuer.issue(sub, sid, "account", "tessera-app")[0])

    return verifier, Route("/token", token)


def build() -> Any:
    routes = [Route("/me", me), Route("/ready", ready)]
    handlers = {AuthError: auth_error}
    if VARIANT == "bare":
        return Starlette(routes=routes)
    if VARIANT == "bearer":
        verifier, token_route = _verifier()
        app = Starlette(routes=[*routes, token_route], exception_handlers=handlers)
        return AuthMiddleware(app, verifier=verifier)
    if VARIANT == "cookie":
        from tessera.asgi.sessions import SessionMiddleware
        from tessera.sessions import SessionManager
        from tessera.stores.memory_sessions import MemorySessionStore

        async def login(request: Request) -> Response:
            request.session.login("bench-user")
            return PlainTextResponse("ok")

        verifier, _ = _verifier()  # present as in the server; a cookie request never uses it
        app = Starlette(routes=[*routes, Route("/login", login)], exception_handlers=handlers)
        manager = SessionManager(MemorySessionStore())
        return SessionMiddleware(AuthMiddleware(app, verifier=verifier), manager=manager, dev=True)
    raise SystemExit(f"unknown BENCH_VARIANT {VARIANT!r}")


app = build()
if os.environ.get("BENCH_GC_FREEZE", "1") == "1":
    gc.freeze()  # as `tessera serve` does, for every variant alike (see apps_sessions.py)
