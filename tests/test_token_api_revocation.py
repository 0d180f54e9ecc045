"""Revocation before expiry: every way of ending an app's session kills its access tokens at
once, even while the verified-token cache holds them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.test_token_api_support import WHOAMI, Server, bearer, login, make_settings, running


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running(make_settings(tmp_path)) as server:
        await server.add_user("alice")
        yield server


Action = Callable[[Server, httpx.AsyncClient, str, str], Awaitable[None]]
"""(server, client, victim's access token, survivor's access token) -> revoke the victim."""


async def logout(server: Server, client: httpx.AsyncClient, victim: str, survivor: str) -> None:
    assert (await client.post("/api/v1/auth/logout", headers=bearer(victim))).status_code == 204


async def revoke_session(server: Server, client: httpx.AsyncClient, victim: str, _: str) -> None:
    claims = server.services.verifier.verify(victim)
    assert await server.services.revoker.revoke_session(claims.sub, claims.sid)


async def sessions_list(
    server: Server, client: httpx.AsyncClient, victim: str, survivor: str
) -> None:
    """The account API's sessions list, called by the user's other app (Bearer: no CSRF)."""
    sid = server.services.verifier.verify(victim).sid
    response = await client.delete(f"/api/v1/sessions/{sid}", headers=bearer(survivor))
    assert response.status_code == 204, response.text


async def change_password(server: Server, client: httpx.AsyncClient, victim: str, _: str) -> None:
    user_id = server.services.verifier.verify(victim).sub
    await server.services.users.change_password(user_id, "a brand new passphrase")


async def disable(server: Server, client: httpx.AsyncClient, victim: str, _: str) -> None:
    await server.services.users.disable(server.services.verifier.verify(victim).sub)


async def everywhere(server: Server, client: httpx.AsyncClient, victim: str, _: str) -> None:
    await server.services.revoker.revoke_user_everywhere(
        server.services.verifier.verify(victim).sub
    )


@pytest.mark.parametrize(
    ("action", "survivor_lives"),
    [
        (logout, True),
        (revoke_session, True),
        (sessions_list, True),
        (change_password, False),
        (disable, False),
        (everywhere, False),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
async def test_revocation_cuts_the_session_off_at_once(
    server: Server, action: Action, survivor_lives: bool
) -> None:
    """One session ends (or all the user's do); the next request is 401 revoked, cache or not."""
    cache = server.services.verifier.cache
    assert cache is not None
    async with server.client() as client:
        victim = await login(client, device_name="victim")
        survivor = await login(client, device_name="survivor")
        for _ in range(2):
            assert (
                await client.get(WHOAMI, headers=bearer(victim["access_token"]))
            ).status_code == 200
        hits = cache.hits
        assert (await client.get(WHOAMI, headers=bearer(victim["access_token"]))).status_code == 200
        assert cache.hits == hits + 1  # the token is served from the warm cache

        await action(server, client, victim["access_token"], survivor["access_token"])

        dead = await client.get(WHOAMI, headers=bearer(victim["access_token"]))
        assert dead.status_code == 401
        assert dead.json()["reason"] == "revoked"
        assert 'error="invalid_token"' in dead.headers["www-authenticate"]
        refused = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": victim["refresh_token"]}
        )
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_grant"
        other = await client.get(WHOAMI, headers=bearer(survivor["access_token"]))
        assert (other.status_code == 200) is survivor_lives


async def test_the_session_cap_ends_the_evicted_apps_tokens(tmp_path: Path) -> None:
    """An app session the per-user cap removes is revoked like any other: its access token is
    refused at once, its refresh token too, and the user's security log says why."""
    async with running(make_settings(tmp_path, session_max_per_user=2)) as server:
        user_id = await server.add_user("alice")
        async with server.client() as client:
            tokens = []
            for _ in range(3):
                tokens.append(await login(client))
                server.clock.advance(1)
            first, second, third = tokens
            evicted = await client.get(WHOAMI, headers=bearer(first["access_token"]))
            assert evicted.status_code == 401
            refresh = await client.post(
                "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
            )
            assert refresh.status_code == 400
            for kept in (second, third):
                live = await client.get(WHOAMI, headers=bearer(kept["access_token"]))
                assert live.status_code == 200
        events = await server.services.events.list_for_user(user_id)
        assert [e.detail.get("reason") for e in events if e.kind.value == "session_revoked"] == [
            "session_cap"
        ]
