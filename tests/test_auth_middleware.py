"""AuthMiddleware and require_user / require_scope as a library, in tiny Starlette and FastAPI
apps of their own (no Tessera server): Bearer tokens, cookie sessions, anonymous callers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tessera.asgi.auth import (
    AuthError,
    AuthMiddleware,
    Principal,
    current_principal,
    require_scope,
    require_user,
)
from tessera.asgi.sessions import SessionMiddleware
from tessera.clock import FakeClock
from tessera.keys import KeyRing, new_key
from tessera.sessions import SessionManager
from tessera.stores.memory_sessions import MemorySessionStore
from tessera.stores.revocations import MemoryRevocationStore
from tessera.tokens import RevocationView, TokenIssuer, TokenVerifier, VerifiedTokenCache

ISS = "https://id.example"
AUD = "https://api.example"


@dataclass
class Kit:
    clock: FakeClock
    issuer: TokenIssuer
    verifier: TokenVerifier
    revocations: RevocationView
    manager: SessionManager

    def token(self, scope: str = "read", sub: str = "u1", sid: str = "s1") -> str:
        return self.issuer.issue(sub, sid, scope, "cli")[0]


@pytest.fixture
async def kit() -> Kit:
    clock = FakeClock()
    ring = KeyRing([new_key("sign", "EdDSA", clock.now() - 60)], clock)
    revocations = RevocationView(MemoryRevocationStore(), clock, max_token_lifetime=300)
    return Kit(
        clock=clock,
        issuer=TokenIssuer(ring, ISS, AUD, 300, clock),
        verifier=TokenVerifier(
            ring, ISS, AUD, clock, revocations=revocations, cache=VerifiedTokenCache()
        ),
        revocations=revocations,
        manager=SessionManager(MemorySessionStore(), clock=clock),
    )


def _principal_json(principal: Principal | None) -> dict[str, Any] | None:
    if principal is None:
        return None
    return {
        "user": principal.user_id,
        "method": principal.method,
        "sid": principal.session_id,
        "scopes": sorted(principal.scopes),
    }


# --- a tiny Starlette app -------------------------------------------------------------------


def starlette_app(kit: Kit) -> Any:
    async def whoami(request: Request) -> Response:
        return JSONResponse(_principal_json(current_principal(request)))

    async def private(request: Request) -> Response:
        principal = require_user(request)
        return JSONResponse(_principal_json(principal))

    async def writer(request: Request) -> Response:
        principal = require_scope("write")(request)
        return JSONResponse(_principal_json(principal))

    async def login(request: Request) -> Response:
        request.session.login("cookie-user")  # type: ignore[attr-defined]
        return JSONResponse({"ok": True})

    async def auth_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AuthError)
        return JSONResponse({"error": exc.code}, status_code=exc.status_code, headers=exc.headers)

    app = Starlette(
        routes=[
            Route("/whoami", whoami),
            Route("/private", private),
            Route("/writer", writer),
            Route("/login", login, methods=["POST"]),
        ],
        exception_handlers={AuthError: auth_error},
    )
    # Outside in: sessions, then the principal (it reads the session).
    return SessionMiddleware(
        AuthMiddleware(app, verifier=kit.verifier), manager=kit.manager, dev=True
    )


# --- a tiny FastAPI app ---------------------------------------------------------------------


def fastapi_app(kit: Kit) -> Any:
    app = FastAPI()

    @app.get("/whoami")
    async def whoami(
        principal: Principal | None = Depends(current_principal),  # noqa: B008
    ) -> dict[str, Any] | None:
        return _principal_json(principal)

    @app.get("/private")
    async def private(principal: Principal = Depends(require_user)) -> dict[str, Any] | None:  # noqa: B008
        return _principal_json(principal)

    @app.get("/writer")
    async def writer(
        principal: Principal = Depends(require_scope("write")),  # noqa: B008
    ) -> dict[str, Any] | None:
        return _principal_json(principal)

    @app.post("/login")
    async def login(request: Request) -> dict[str, bool]:
        request.session.login("cookie-user")
        return {"ok": True}

    async def auth_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AuthError)
        return JSONResponse({"error": exc.code}, status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(AuthError, auth_error)
    return SessionMiddleware(
        AuthMiddleware(app, verifier=kit.verifier), manager=kit.manager, dev=True
    )


@pytest.fixture(params=["starlette", "fastapi"])
async def client(request: pytest.FixtureRequest, kit: Kit) -> AsyncIterator[httpx.AsyncClient]:
    app = starlette_app(kit) if request.param == "starlette" else fastapi_app(kit)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_bearer_token_is_the_principal(client: httpx.AsyncClient, kit: Kit) -> None:
    response = await client.get("/private", headers=bearer(kit.token("read write")))
    assert response.status_code == 200
    assert response.json() == {
        "user": "u1",
        "method": "bearer",
        "sid": "s1",
        "scopes": ["read", "write"],
    }


async def test_a_cookie_session_is_the_principal(client: httpx.AsyncClient) -> None:
    assert (await client.post("/login")).status_code == 200
    response = await client.get("/private")
    assert response.status_code == 200
    body = response.json()
    assert (body["user"], body["method"]) == ("cookie-user", "session")
    assert body["sid"] is not None


async def test_anonymous_callers_get_a_bare_challenge(client: httpx.AsyncClient) -> None:
    assert (await client.get("/whoami")).json() is None
    response = await client.get("/private")
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized"}
    assert response.headers["www-authenticate"] == 'Bearer realm="tessera"'


async def test_a_refused_token_is_never_served_as_anonymous(
    client: httpx.AsyncClient, kit: Kit
) -> None:
    """Even on a route that allows anonymous callers, a bad token is a 401, not a guest."""
    for token in ["garbage", kit.token()[:-4] + "AAAA"]:
        response = await client.get("/whoami", headers=bearer(token))
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith(
            'Bearer realm="tessera", error="invalid_token"'
        )


async def test_a_refused_token_beats_a_valid_cookie(client: httpx.AsyncClient) -> None:
    await client.post("/login")
    response = await client.get("/private", headers=bearer("garbage"))
    assert response.status_code == 401


async def test_a_missing_scope_is_403_insufficient_scope(
    client: httpx.AsyncClient, kit: Kit
) -> None:
    response = await client.get("/writer", headers=bearer(kit.token("read")))
    assert response.status_code == 403
    assert response.json() == {"error": "insufficient_scope"}
    assert response.headers["www-authenticate"] == (
        'Bearer realm="tessera", error="insufficient_scope", scope="write"'
    )
    allowed = await client.get("/writer", headers=bearer(kit.token("read write")))
    assert allowed.status_code == 200


async def test_cookie_sessions_pass_every_scope_check(client: httpx.AsyncClient) -> None:
    await client.post("/login")
    assert (await client.get("/writer")).status_code == 200


async def test_expired_tokens_say_so(client: httpx.AsyncClient, kit: Kit) -> None:
    token = kit.token()
    assert (await client.get("/private", headers=bearer(token))).status_code == 200
    kit.clock.advance(300 + 31)
    response = await client.get("/private", headers=bearer(token))
    assert response.status_code == 401
    assert 'error_description="token expired"' in response.headers["www-authenticate"]
    assert response.json()["reason"] == "expired"


async def test_revocation_reaches_the_warm_cache(client: httpx.AsyncClient, kit: Kit) -> None:
    token = kit.token(sid="s9")
    for _ in range(2):
        assert (await client.get("/private", headers=bearer(token))).status_code == 200
    await kit.revocations.revoke_session("s9")
    response = await client.get("/private", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["reason"] == "revoked"


async def test_other_schemes_are_not_bearer(client: httpx.AsyncClient, kit: Kit) -> None:
    """Basic credentials are not ours to judge: the caller is anonymous, not refused."""
    response = await client.get("/private", headers={"Authorization": "Basic dTpw"})
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized"}
    lower = await client.get("/private", headers={"Authorization": f"bearer {kit.token()}"})
    assert lower.status_code == 200  # the scheme is case-insensitive (RFC 7235 §2.1)


async def test_non_http_scopes_pass_through(kit: Kit) -> None:
    """Lifespan (and any other scope type) reaches the app untouched."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    await AuthMiddleware(app, verifier=kit.verifier)({"type": "lifespan"}, None, None)
    assert seen == ["lifespan"]


async def test_a_websocket_with_a_bad_token_is_closed_with_1008(kit: Kit) -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not run")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "headers": [(b"authorization", b"Bearer nope")]}
    await AuthMiddleware(app, verifier=kit.verifier)(scope, None, send)  # type: ignore[arg-type]
    assert sent == [{"type": "websocket.close", "code": 1008}]


async def test_a_websocket_with_a_good_token_gets_its_principal(kit: Kit) -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["tessera.principal"])

    token = kit.token().encode()
    scope = {"type": "websocket", "headers": [(b"authorization", b"Bearer " + token)]}
    await AuthMiddleware(app, verifier=kit.verifier)(scope, None, None)  # type: ignore[arg-type]
    assert seen[0].user_id == "u1"
    assert seen[0].method == "bearer"
