"""tessera.client.TesseraAuth as a mobile-like client of the real server, in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tessera.client import (
    LoginFailed,
    LoginRequired,
    LoginThrottled,
    TesseraAuth,
    TokenEndpointError,
    TokenSet,
)
from tessera.clock import FakeClock
from tests.test_token_api_support import PASSWORD, Server, make_settings, running

BASE = "http://testserver"
TTL = 600


class Recorder(httpx.AsyncBaseTransport):
    """The server's ASGI transport, remembering the path of every request sent."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)

    def count(self, path: str) -> int:
        return self.paths.count(path)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running(make_settings(tmp_path, access_token_ttl=TTL), FakeClock()) as server:
        await server.add_user("alice")
        yield server


def app_client(server: Server, auth: TesseraAuth) -> tuple[httpx.AsyncClient, Recorder]:
    recorder = Recorder(server.app)
    return httpx.AsyncClient(transport=recorder, base_url=BASE, auth=auth), recorder


def make_auth(server: Server, **kwargs: Any) -> TesseraAuth:
    kwargs.setdefault("clock", server.clock.now)
    return TesseraAuth(BASE, "alice", PASSWORD, device_name="pytest phone", **kwargs)


async def test_logs_in_lazily_and_calls_the_api(server: Server) -> None:
    stored: list[TokenSet | None] = []
    auth = make_auth(server, on_tokens=stored.append)
    client, recorder = app_client(server, auth)
    async with client:
        assert recorder.paths == []
        me = await client.get("/api/v1/me")
        again = await client.get("/api/v1/me")
    assert me.status_code == again.status_code == 200
    assert me.json()["method"] == "bearer"
    assert recorder.paths == ["/api/v1/auth/login", "/api/v1/me", "/api/v1/me"]
    assert len(stored) == 1
    assert stored[0] is auth.tokens
    assert "pytest phone" in [s.user_agent for s in await _sessions(server)]


async def test_the_password_is_forgotten_after_login(server: Server) -> None:
    auth = make_auth(server)
    client, _ = app_client(server, auth)
    async with client:
        await client.get("/api/v1/me")
    assert auth._password is None  # private, but it is the point
    assert PASSWORD not in repr(auth)
    assert auth.tokens is not None
    assert auth.tokens.access_token not in repr(auth.tokens)


async def test_an_expired_access_token_is_refreshed_once_and_retried(server: Server) -> None:
    """The client's clock lags (so no proactive refresh): the server's 401 expired drives it."""
    lagging = FakeClock(server.clock.now())
    auth = make_auth(server, clock=lagging.now)
    client, recorder = app_client(server, auth)
    async with client:
        await client.get("/api/v1/me")
        first = auth.tokens
        server.clock.advance(TTL + 60)
        response = await client.get("/api/v1/me")
    assert response.status_code == 200
    assert recorder.paths[-3:] == ["/api/v1/me", "/api/v1/auth/refresh", "/api/v1/me"]
    assert auth.tokens is not None
    assert first is not None
    assert auth.tokens.refresh_token != first.refresh_token  # rotation followed


async def test_tokens_are_refreshed_shortly_before_they_expire(server: Server) -> None:
    auth = make_auth(server, refresh_margin=30)
    client, recorder = app_client(server, auth)
    async with client:
        await client.get("/api/v1/me")
        server.clock.advance(TTL - 40)
        await client.get("/api/v1/me")
        assert recorder.count("/api/v1/auth/refresh") == 0
        server.clock.advance(15)  # 25 s left: inside the margin
        response = await client.get("/api/v1/me")
    assert response.status_code == 200
    assert recorder.paths[-2:] == ["/api/v1/auth/refresh", "/api/v1/me"]


async def test_a_revoked_session_raises_login_required_and_stays_out(server: Server) -> None:
    stored: list[TokenSet | None] = []
    auth = make_auth(server, on_tokens=stored.append)
    client, recorder = app_client(server, auth)
    async with client:
        await client.get("/api/v1/me")
        assert auth.tokens is not None
        claims = server.services.verifier.verify(auth.tokens.access_token)
        assert await server.services.revoker.revoke_session(claims.sub, claims.sid)
        with pytest.raises(LoginRequired) as caught:
            await client.get("/api/v1/me")
        assert caught.value.code == "login_required"
        assert auth.tokens is None
        assert stored[-1] is None
        # No silent re-login with a remembered password: revoked means revoked.
        with pytest.raises(LoginRequired):
            await client.get("/api/v1/me")
        assert recorder.count("/api/v1/auth/login") == 1
        server.clock.advance(1)  # a new login in a later second than the revocation mark
        auth.set_credentials("alice", PASSWORD)
        assert (await client.get("/api/v1/me")).status_code == 200
    assert recorder.count("/api/v1/auth/login") == 2


async def test_wrong_password_raises_login_failed(server: Server) -> None:
    auth = TesseraAuth(BASE, "alice", "not the password", clock=server.clock.now)
    client, _ = app_client(server, auth)
    async with client:
        with pytest.raises(LoginFailed) as caught:
            await client.get("/api/v1/me")
    assert caught.value.code == "invalid_credentials"
    assert isinstance(caught.value, LoginRequired)  # an app shows its login screen for both


async def test_throttling_is_reported_with_its_wait(server: Server) -> None:
    for _ in range(5):
        auth = TesseraAuth(BASE, "alice", "wrong password", clock=server.clock.now)
        client, _ = app_client(server, auth)
        async with client:
            with pytest.raises(LoginFailed):
                await client.get("/api/v1/me")
    auth = make_auth(server)
    client, _ = app_client(server, auth)
    async with client:
        with pytest.raises(LoginThrottled) as caught:
            await client.get("/api/v1/me")
    assert caught.value.retry_after >= 1


async def test_concurrent_requests_after_expiry_all_succeed(server: Server) -> None:
    """Several requests discover expiry at once; grace gives them all the same successor."""
    lagging = FakeClock(server.clock.now())
    auth = make_auth(server, clock=lagging.now)
    client, _ = app_client(server, auth)
    async with client:
        await client.get("/api/v1/me")
        server.clock.advance(TTL + 60)
        responses = await asyncio.gather(*(client.get("/api/v1/me") for _ in range(5)))
        assert [r.status_code for r in responses] == [200] * 5
        server.clock.advance(60)
        assert (await client.get("/api/v1/me")).status_code == 200
    assert len(await _sessions(server)) == 1


async def test_logout_ends_the_server_session(server: Server) -> None:
    auth = make_auth(server)
    client, _ = app_client(server, auth)
    async with client:
        await client.get("/api/v1/me")
        assert len(await _sessions(server)) == 1
        await auth.alogout(client)
        assert auth.tokens is None
        with pytest.raises(LoginRequired):
            await client.get("/api/v1/me")
    assert await _sessions(server) == []


async def test_stored_tokens_are_used_without_a_login(server: Server) -> None:
    stored: list[TokenSet | None] = []
    first = make_auth(server, on_tokens=stored.append)
    client, _ = app_client(server, first)
    async with client:
        await client.get("/api/v1/me")
    saved = stored[-1]
    assert saved is not None
    restored = TokenSet.from_dict(saved.to_dict())
    auth = TesseraAuth(BASE, tokens=restored, clock=server.clock.now)
    client, recorder = app_client(server, auth)
    async with client:
        assert (await client.get("/api/v1/me")).status_code == 200
    assert recorder.paths == ["/api/v1/me"]


async def test_a_401_without_invalid_token_is_returned_as_is(server: Server) -> None:
    """Only a refused token triggers a refresh; other 401s are the app's business."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/auth/login":
            return httpx.Response(200, json=_pair())
        return httpx.Response(401, headers={"www-authenticate": 'Bearer realm="x"'})

    auth = TesseraAuth(BASE, "alice", PASSWORD)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=auth) as client:
        response = await client.get(BASE + "/thing")
    assert response.status_code == 401


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503, json={"error": "store_unavailable", "error_description": "down"}),
        httpx.Response(200, content=b"<html>proxy page</html>"),
        httpx.Response(200, json={"access_token": "x"}),
    ],
)
async def test_an_unexpected_token_endpoint_answer_is_a_clear_error(
    answer: httpx.Response,
) -> None:
    auth = TesseraAuth(BASE, "alice", PASSWORD)
    transport = httpx.MockTransport(lambda request: answer)
    async with httpx.AsyncClient(transport=transport, auth=auth) as client:
        with pytest.raises(TokenEndpointError) as caught:
            await client.get(BASE + "/thing")
    assert caught.value.code == "token_endpoint_error"


def test_sync_clients_share_the_flow() -> None:
    """The same auth object drives httpx.Client (the generator is not async-only)."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/api/v1/auth/login":
            return httpx.Response(200, json=_pair())
        if request.url.path == "/api/v1/auth/refresh":
            return httpx.Response(200, json=_pair("fresh"))
        if request.headers["authorization"] == "Bearer fresh":
            return httpx.Response(200, json={"ok": True})
        return httpx.Response(
            401,
            headers={
                "www-authenticate": 'Bearer error="invalid_token", '
                'error_description="token expired"'
            },
        )

    auth = TesseraAuth(BASE, "alice", PASSWORD)
    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client:
        assert client.get(BASE + "/thing").json() == {"ok": True}
    assert calls == ["/api/v1/auth/login", "/thing", "/api/v1/auth/refresh", "/thing"]


def _pair(access: str = "access") -> dict[str, Any]:
    return {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": 600,
        "refresh_token": "r" * 43,
        "refresh_expires_in": 86400,
        "scope": "account",
    }


async def _sessions(server: Server) -> list[Any]:
    alice = await server.services.users.store.get_by_username("alice")
    assert alice is not None
    return await server.services.sessions.list_sessions(alice.id)
