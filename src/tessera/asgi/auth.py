"""One principal for cookies and tokens: who is calling, however they proved it.

``AuthMiddleware`` turns either a Bearer access token or a logged-in session (from
:class:`~tessera.asgi.sessions.SessionMiddleware`, which must run outside it) into a
:class:`Principal` at ``scope["tessera.principal"]``. A Bearer token that fails verification is
answered at once with 401 and an RFC 6750 ``WWW-Authenticate`` challenge: a client that sent a
token wants to know it was refused, and must never be served as anonymous. An expired token says
so (``error_description="token expired"``), so clients know to refresh rather than log in again.

The dependencies (:func:`current_principal`, :func:`require_user`, :func:`require_scope`) work
in FastAPI (``Depends(require_user)``) and can be awaited from plain Starlette endpoints.
Cookie sessions are first-party logins and pass every scope check; tokens carry their scopes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from tessera.asgi.responses import send_json
from tessera.errors import InvalidToken
from tessera.sessions import Session
from tessera.tokens import TokenVerifier, www_authenticate
from tessera.tokens.cache import CachedToken

SCOPE_PRINCIPAL = "tessera.principal"
MAX_AUTHORIZATION = 8 * 1024 + 16
"""Longer Authorization headers are refused before any decoding (tokens are capped at 8 KiB)."""

Method = Literal["session", "bearer"]


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request."""

    user_id: str
    session_id: str | None
    """Public handle of the session (a browser's, or the app session a token belongs to)."""
    method: Method
    scopes: frozenset[str] = frozenset()
    client_id: str | None = None
    remembered: bool = False
    """Logged in by a remember-me cookie rather than a password in this session."""

    def has_scope(self, *needed: str) -> bool:
        """Cookie sessions are first-party and hold every scope; tokens hold what they list."""
        return self.method == "session" or self.scopes.issuperset(needed)


class AuthError(HTTPException):
    """A 401/403 that carries a machine-readable ``code`` and the RFC 6750 challenge."""

    def __init__(
        self,
        status_code: int,
        code: str,
        description: str,
        challenge: str,
    ) -> None:
        self.code = code
        super().__init__(status_code, description, headers={"WWW-Authenticate": challenge})


def _token_principal(entry: CachedToken) -> Principal:
    """The caller a verified token names, built once per cache entry: an app sends the same
    token on every request, and building the frozen Principal (and its scope set) would be a
    third of the cost of a cached verification. Only read after the entry passed every check."""
    principal = entry.principal
    if isinstance(principal, Principal):
        return principal
    claims = entry.claims
    principal = entry.principal = Principal(
        user_id=claims.sub,
        session_id=claims.sid,
        method="bearer",
        scopes=claims.scopes,
        client_id=claims.client_id,
    )
    return principal


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer`` header; "" when the header is malformed.

    An over-long header is cut at :data:`MAX_AUTHORIZATION` before decoding: what remains of a
    Bearer token is still over the verifier's size cap, so it is refused as ``oversized`` (not
    as ``malformed``, which would tell the client the wrong story) and no more is decoded.
    """
    for key, value in scope.get("headers") or ():
        if key == b"authorization":
            value = value[:MAX_AUTHORIZATION]
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                return None
            return str(token.strip())
    return None


class AuthMiddleware:
    """Resolve the Bearer token or the session into ``scope["tessera.principal"]``."""

    def __init__(self, app: ASGIApp, *, verifier: TokenVerifier, realm: str = "tessera") -> None:
        self.app = app
        self.verifier = verifier
        self.realm = realm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers") or ():
            if key == b"authorization":
                # Fast path: "Bearer <token>" exactly as clients send it, for a token accepted
                # before and still good (lifetime, key, revocation all checked again by
                # cached_entry). Anything else, including other spellings of the scheme or
                # another scheme, misses and takes the full path below.
                entry = self.verifier.cached_entry(value)
                if entry is not None:
                    known = entry.principal
                    scope[SCOPE_PRINCIPAL] = (
                        known if isinstance(known, Principal) else _token_principal(entry)
                    )
                    await self.app(scope, receive, send)
                    return
                token = bearer_token(scope)
                if token is not None:
                    try:
                        entry = self.verifier.verify_entry(token)
                    except InvalidToken as exc:
                        await self._refuse(scope, send, exc)
                        return
                    scope[SCOPE_PRINCIPAL] = _token_principal(entry)
                    await self.app(scope, receive, send)
                    return
                break
        session = scope.get("session")
        principal: Principal | None = None
        if isinstance(session, Session) and session.is_loaded and session.user_id:
            principal = Principal(
                user_id=session.user_id,
                session_id=session.id,
                method="session",
                remembered=session.remembered,
            )
        scope[SCOPE_PRINCIPAL] = principal
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, exc: InvalidToken) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send_json(
            send,
            401,
            {"error": exc.code, "reason": exc.reason, "error_description": exc.message},
            headers=[(b"www-authenticate", www_authenticate(exc, realm=self.realm).encode())],
        )


def current_principal(request: HTTPConnection) -> Principal | None:
    """The caller, or None for an anonymous request."""
    principal = request.scope.get(SCOPE_PRINCIPAL)
    return principal if isinstance(principal, Principal) else None


def require_user(request: HTTPConnection) -> Principal:
    """The caller; 401 with a Bearer challenge when nobody is logged in."""
    principal = request.scope.get(SCOPE_PRINCIPAL)  # current_principal(), one call less
    if not isinstance(principal, Principal):
        raise AuthError(401, "unauthorized", "authentication required", 'Bearer realm="tessera"')
    return principal


def require_scope(*needed: str) -> Callable[[HTTPConnection], Principal]:
    """A dependency: the caller, if they hold every scope in ``needed`` (403 otherwise)."""
    wanted = " ".join(needed)

    def dependency(request: HTTPConnection) -> Principal:
        principal = require_user(request)
        if not principal.has_scope(*needed):
            raise AuthError(
                403,
                "insufficient_scope",
                f"this needs the scope {wanted}",
                f'Bearer realm="tessera", error="insufficient_scope", scope="{wanted}"',
            )
        return principal

    return dependency
