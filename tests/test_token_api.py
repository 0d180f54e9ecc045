"""The first-party token API over HTTP: login, refresh, logout, JWKS, RFC 7009 and RFC 7662."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest

from tessera.clock import FakeClock
from tessera.identity.events import EventKind
from tessera.tokens.refresh import DEFAULT_GRACE
from tests.test_token_api_support import (
    PASSWORD,
    WHOAMI,
    Server,
    bearer,
    login,
    make_settings,
    running,
)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running(make_settings(tmp_path)) as server:
        await server.add_user("alice")
        await server.add_user("bob")
        yield server


# --- login ------------------------------------------------------------------------------------


async def test_login_returns_a_token_pair_and_creates_a_token_session(server: Server) -> None:
    """The pair has the documented shape, no-store headers, and its sid is a listed session."""
    async with server.client() as client:
        response = await client.post(
            "/api/v1/auth/login",
            json={"username": "alice", "password": PASSWORD, "device_name": "Alice's phone"},
        )
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert set(body) == {
            "access_token",
            "token_type",
            "expires_in",
            "refresh_token",
            "refresh_expires_in",
            "scope",
        }
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == server.services.settings.access_token_ttl
        assert body["refresh_expires_in"] == server.services.settings.refresh_token_ttl
        me = await client.get(WHOAMI, headers=bearer(body["access_token"]))
    assert me.status_code == 200
    principal = me.json()
    assert principal["method"] == "bearer"
    assert principal["scopes"] == ["account"]
    sessions = await server.services.sessions.list_sessions(principal["user_id"])
    assert [(s.id, s.kind, s.user_agent) for s in sessions] == [
        (principal["session_id"], "token", "Alice's phone")
    ]
    events = await server.services.events.list_for_user(principal["user_id"])
    assert events[0].kind is EventKind.LOGIN_SUCCEEDED
    assert events[0].detail["method"] == "token"


async def test_login_without_device_name_records_the_user_agent(server: Server) -> None:
    async with server.client(headers={"user-agent": "TestApp/1.0"}) as client:
        body = await login(client)
        me = (await client.get(WHOAMI, headers=bearer(body["access_token"]))).json()
    sessions = await server.services.sessions.list_sessions(me["user_id"])
    assert sessions[0].user_agent == "TestApp/1.0"


@pytest.mark.parametrize("username", ["alice", "nobody"])
async def test_wrong_credentials_are_401_invalid_credentials(server: Server, username: str) -> None:
    """Unknown user and wrong password look the same; the owner's log shows the failure."""
    async with server.client() as client:
        response = await client.post(
            "/api/v1/auth/login", json={"username": username, "password": "wrong password!"}
        )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_credentials"
    assert response.headers["www-authenticate"].startswith("Bearer")
    alice = await server.services.users.store.get_by_username("alice")
    assert alice is not None
    kinds = [e.kind for e in await server.services.events.list_for_user(alice.id)]
    assert kinds == ([EventKind.LOGIN_FAILED] if username == "alice" else [])


async def test_disabled_user_cannot_log_in(server: Server) -> None:
    alice = await server.services.users.store.get_by_username("alice")
    assert alice is not None
    await server.services.users.disable(alice.id)
    async with server.client() as client:
        response = await client.post(
            "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}
        )
    assert response.status_code == 401


async def test_login_is_throttled_like_the_browser_login(server: Server) -> None:
    """After five failures even the right password gets 429 with Retry-After, until it passes."""
    async with server.client() as client:
        for _ in range(5):
            failed = await client.post(
                "/api/v1/auth/login", json={"username": "alice", "password": "nope nope nope"}
            )
            assert failed.status_code == 401
        throttled = await client.post(
            "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}
        )
        assert throttled.status_code == 429
        assert throttled.json()["error"] == "too_many_requests"
        wait = int(throttled.headers["retry-after"])
        assert wait >= 1
        server.clock.advance(wait)
        assert (
            await client.post(
                "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}
            )
        ).status_code == 200


@pytest.mark.parametrize(
    "extra",
    [
        {"client_id": ""},
        {"client_id": "has space"},
        {"client_id": "x" * 65},
        {"client_id": "-leading-dash"},
        {"client_id": 7},
        {"device_name": ""},
        {"device_name": "d" * 101},
        {"device_name": "line\nbreak"},
        {"device_name": "rtl\u202eoverride"},
        {"grant_type": "password"},
    ],
)
async def test_login_fields_are_validated(server: Server, extra: dict[str, object]) -> None:
    async with server.client() as client:
        response = await client.post(
            "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD, **extra}
        )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_a_chosen_client_id_is_carried_by_the_tokens(server: Server) -> None:
    async with server.client() as client:
        body = await login(client, client_id="com.example.ios:2")
        claims = server.services.verifier.verify(body["access_token"])
        assert claims.client_id == "com.example.ios:2"
        other_client = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
        )
        assert other_client.status_code == 400
        assert other_client.json()["reason"] == "wrong_client"


# --- refresh ----------------------------------------------------------------------------------


async def test_refresh_rotates_the_pair(server: Server) -> None:
    async with server.client() as client:
        first = await login(client)
        server.clock.advance(60)
        response = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        second = response.json()
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        assert second["refresh_expires_in"] == first["refresh_expires_in"] - 60
        one = server.services.verifier.verify(first["access_token"])
        two = server.services.verifier.verify(second["access_token"])
        assert (one.sid, one.sub) == (two.sid, two.sub)


async def test_refresh_slides_the_token_sessions_last_seen(server: Server) -> None:
    async with server.client() as client:
        body = await login(client)
        sid = server.services.verifier.verify(body["access_token"]).sid
        server.clock.advance(3600)
        assert (
            await client.post("/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
        ).status_code == 200
    alice = await server.services.users.store.get_by_username("alice")
    assert alice is not None
    (info,) = await server.services.sessions.list_sessions(alice.id)
    assert info.id == sid
    assert info.last_seen == server.clock.now()


async def test_reuse_after_grace_ends_the_session(server: Server) -> None:
    """A spent refresh token after the grace window: 400 reused, session gone, tokens dead."""
    async with server.client() as client:
        first = await login(client)
        second = (
            await client.post(
                "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
            )
        ).json()
        assert (await client.get(WHOAMI, headers=bearer(second["access_token"]))).status_code == 200
        server.clock.advance(DEFAULT_GRACE + 1)
        reused = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        assert reused.status_code == 400
        assert reused.json()["error"] == "invalid_grant"
        assert reused.json()["reason"] == "reused"
        dead = await client.get(WHOAMI, headers=bearer(second["access_token"]))
        assert dead.status_code == 401
        assert dead.json()["reason"] == "revoked"
        successor = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
        )
        assert successor.status_code == 400
    alice = await server.services.users.store.get_by_username("alice")
    assert alice is not None
    assert await server.services.sessions.list_sessions(alice.id) == []


async def test_duplicate_refresh_within_grace_gets_the_same_successor(server: Server) -> None:
    async with server.client() as client:
        first = await login(client)
        a = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        server.clock.advance(DEFAULT_GRACE - 1)
        b = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
    assert a.status_code == b.status_code == 200
    assert a.json()["refresh_token"] == b.json()["refresh_token"]


async def test_expired_family_asks_to_log_in_again(server: Server) -> None:
    async with server.client() as client:
        body = await login(client)
        server.clock.advance(server.services.settings.refresh_token_ttl + 1)
        response = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
        )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "log in again" in response.json()["error_description"]


async def test_refresh_is_refused_once_the_session_record_is_gone(server: Server) -> None:
    """A session deleted in the store alone (admin CLI, sweep) ends the refresh family too."""
    async with server.client() as client:
        body = await login(client)
        sid = server.services.verifier.verify(body["access_token"]).sid
        assert await server.services.sessions.store.delete(sid)
        response = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
        )
        assert response.status_code == 400
        assert response.json()["reason"] == "session_ended"
        again = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
        )
    assert again.status_code == 400


@pytest.mark.parametrize("token", ["", "short", "x" * 43, "!" * 43, "a" * 512])
async def test_garbage_refresh_tokens_are_invalid_grant(server: Server, token: str) -> None:
    async with server.client() as client:
        response = await client.post("/api/v1/auth/refresh", json={"refresh_token": token})
    assert response.status_code == 400
    assert response.json()["error"] in ("invalid_grant", "invalid_request")


# --- logout -----------------------------------------------------------------------------------


async def test_logout_ends_the_session_and_its_tokens_at_once(server: Server) -> None:
    async with server.client() as client:
        body = await login(client)
        headers = bearer(body["access_token"])
        assert (await client.get(WHOAMI, headers=headers)).status_code == 200
        out = await client.post("/api/v1/auth/logout", headers=headers)
        assert out.status_code == 204
        after = await client.get(WHOAMI, headers=headers)
        assert after.status_code == 401
        assert after.json()["reason"] == "revoked"
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
        )
        assert refreshed.status_code == 400
    alice = await server.services.users.store.get_by_username("alice")
    assert alice is not None
    assert await server.services.sessions.list_sessions(alice.id) == []
    kinds = [e.kind for e in await server.services.events.list_for_user(alice.id)]
    assert kinds[0] is EventKind.LOGOUT


async def test_logout_needs_a_bearer_token(server: Server) -> None:
    async with server.client() as client:
        response = await client.post("/api/v1/auth/logout")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == 'Bearer realm="tessera"'


# --- JWKS -------------------------------------------------------------------------------------


async def test_jwks_verifies_access_tokens_with_an_independent_library(server: Server) -> None:
    """PyJWT, given only the published JWKS, accepts our access token."""
    async with server.client() as client:
        body = await login(client)
        response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    jwks = jwt.PyJWKSet.from_dict(response.json())
    header = jwt.get_unverified_header(body["access_token"])
    key = next(k for k in jwks.keys if k.key_id == header["kid"])
    claims = jwt.decode(
        body["access_token"],
        key.key,
        algorithms=[header["alg"]],
        audience="tessera",
        issuer="http://testserver",
        options={"verify_exp": False, "verify_iat": False},  # a fake clock in 2027
    )
    assert claims["scope"] == "account"
    assert all("d" not in k for k in response.json()["keys"])


# --- RFC 7009 revocation ----------------------------------------------------------------------


async def test_revoking_a_refresh_token_ends_its_session(server: Server) -> None:
    async with server.client() as client:
        body = await login(client)
        response = await client.post(
            "/oauth/revoke",
            data={"token": body["refresh_token"], "token_type_hint": "refresh_token"},
            headers=bearer(body["access_token"]),
        )
        assert response.status_code == 200
        assert (await client.get(WHOAMI, headers=bearer(body["access_token"]))).status_code == 401
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
        )
    assert refreshed.status_code == 400


async def test_revoking_an_access_token_leaves_the_refresh_token(server: Server) -> None:
    async with server.client() as client:
        caller = await login(client)
        target = await login(client)
        response = await client.post(
            "/oauth/revoke",
            data={"token": target["access_token"]},
            headers=bearer(caller["access_token"]),
        )
        assert response.status_code == 200
        assert (await client.get(WHOAMI, headers=bearer(target["access_token"]))).status_code == 401
        assert (await client.get(WHOAMI, headers=bearer(caller["access_token"]))).status_code == 200
        server.clock.advance(1)  # marks cover tokens issued up to their second
        fresh = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": target["refresh_token"]}
        )
        assert fresh.status_code == 200
        assert (
            await client.get(WHOAMI, headers=bearer(fresh.json()["access_token"]))
        ).status_code == 200


async def test_revoke_ignores_other_users_and_unknown_tokens(server: Server) -> None:
    """Unknown, garbage and foreign tokens: 200 (RFC 7009 §2.2) and nothing changes."""
    async with server.client() as client:
        alice = await login(client, "alice")
        bob = await login(client, "bob")
        for token in ["garbage", "a" * 43, "x.y.z", bob["access_token"]]:
            response = await client.post(
                "/oauth/revoke", data={"token": token}, headers=bearer(alice["access_token"])
            )
            assert response.status_code == 200
        assert (await client.get(WHOAMI, headers=bearer(bob["access_token"]))).status_code == 200


async def test_revoking_another_users_refresh_token_retires_only_the_token(server: Server) -> None:
    """Bob's session survives; the spent token's family is retired, so Bob must log in again."""
    async with server.client() as client:
        alice = await login(client, "alice")
        bob = await login(client, "bob")
        response = await client.post(
            "/oauth/revoke",
            data={"token": bob["refresh_token"]},
            headers=bearer(alice["access_token"]),
        )
        assert response.status_code == 200
        assert (await client.get(WHOAMI, headers=bearer(bob["access_token"]))).status_code == 200


@pytest.mark.parametrize("path", ["/oauth/revoke", "/oauth/introspect"])
async def test_oauth_endpoints_need_a_bearer_token(server: Server, path: str) -> None:
    async with server.client() as client:
        response = await client.post(path, data={"token": "whatever"})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


@pytest.mark.parametrize("path", ["/oauth/revoke", "/oauth/introspect"])
async def test_oauth_endpoints_need_the_token_field(server: Server, path: str) -> None:
    async with server.client() as client:
        body = await login(client)
        response = await client.post(path, data={}, headers=bearer(body["access_token"]))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


# --- RFC 7662 introspection -------------------------------------------------------------------


async def test_introspection_reports_the_callers_own_token(server: Server) -> None:
    async with server.client() as client:
        caller = await login(client)
        other = await login(client)
        response = await client.post(
            "/oauth/introspect",
            data={"token": other["access_token"]},
            headers=bearer(caller["access_token"]),
        )
    assert response.status_code == 200
    body = response.json()
    claims = server.services.verifier.verify(other["access_token"])
    assert body == {
        "active": True,
        "token_type": "access_token",
        "scope": "account",
        "client_id": "tessera-app",
        "sub": claims.sub,
        "sid": claims.sid,
        "iss": "http://testserver",
        "aud": ["tessera"],
        "exp": int(claims.exp),
        "iat": int(claims.iat),
        "jti": claims.jti,
    }


async def test_introspection_is_inactive_for_anything_else(server: Server) -> None:
    """Other users' tokens, refresh tokens, garbage and revoked tokens are all inactive."""
    async with server.client() as client:
        alice = await login(client, "alice")
        bob = await login(client, "bob")
        gone = await login(client, "alice")
        await client.post("/api/v1/auth/logout", headers=bearer(gone["access_token"]))
        for token in [bob["access_token"], alice["refresh_token"], "garbage", gone["access_token"]]:
            response = await client.post(
                "/oauth/introspect", data={"token": token}, headers=bearer(alice["access_token"])
            )
            assert response.status_code == 200
            assert response.json() == {"active": False}


async def test_introspection_of_an_expired_token_is_inactive(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running(make_settings(tmp_path, access_token_ttl=60), clock) as server:
        await server.add_user("alice")
        async with server.client() as client:
            old = await login(client)
            clock.advance(120)
            new = await login(client)
            response = await client.post(
                "/oauth/introspect",
                data={"token": old["access_token"]},
                headers=bearer(new["access_token"]),
            )
    assert response.json() == {"active": False}


# --- documentation ----------------------------------------------------------------------------


async def test_openapi_documents_the_token_endpoints(server: Server) -> None:
    async with server.client() as client:
        schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    for path in ["/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout"]:
        assert "post" in paths[path]
    assert "LoginRequest" in schema["components"]["schemas"]
    assert "TokenResponse" in schema["components"]["schemas"]
    assert "/oauth/revoke" in paths
    assert "/oauth/introspect" in paths
    assert "/.well-known/jwks.json" in paths
