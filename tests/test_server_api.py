"""The account JSON API (/api/v1): me, sessions, consent, csrf; cookie and Bearer callers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tessera.identity.users import User
from tessera.server.services import Services
from tests.browser_helpers import Server, login, running_server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as srv:
        await srv.add_user("alice")
        yield srv


async def user(server: Server, name: str = "alice") -> User:
    found = await server.services.users.store.get_by_username(name)
    assert found is not None
    return found


async def app_token(services: Services, user_id: str) -> tuple[str, str]:
    """An app session and an access token in it: (token, public session id)."""
    session = await services.sessions.create(user_id=user_id, kind="token", user_agent="my-app/1")
    assert session.id is not None
    token, _ = services.issuer.issue(user_id, session.id, "openid profile", "my-app")
    return token, session.id


async def csrf(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.get("/api/v1/csrf")
    assert response.status_code == 200
    return {"x-csrf-token": response.json()["csrf_token"]}


async def test_me_is_401_json_for_anonymous_callers(server: Server) -> None:
    async with server.client() as client:
        response = await client.get("/api/v1/me", headers={"accept": "text/html"})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_me_with_a_cookie_session(server: Server) -> None:
    async with server.client() as client:
        await login(client)
        response = await client.get("/api/v1/me")
    assert response.status_code == 200
    body = response.json()
    assert body["sub"] == (await user(server)).id
    assert body["username"] == "alice"
    assert body["method"] == "session"
    assert body["remembered"] is False


async def test_me_with_a_bearer_token(server: Server) -> None:
    alice = await user(server)
    token, _ = await app_token(server.services, alice.id)
    async with server.client() as client:
        response = await client.get("/api/v1/me", headers={"authorization": f"Bearer {token}"})
        forged = await client.get("/api/v1/me", headers={"authorization": f"Bearer {token}x"})
    assert response.status_code == 200
    assert response.json()["method"] == "bearer"
    assert response.json()["scopes"] == ["openid", "profile"]
    assert forged.status_code == 401


async def test_sessions_lists_browsers_and_apps_with_the_current_one(server: Server) -> None:
    alice = await user(server)
    _, app_sid = await app_token(server.services, alice.id)
    async with server.client() as client:
        await login(client)
        listed = (await client.get("/api/v1/sessions")).json()["sessions"]
    kinds = sorted(s["kind"] for s in listed)
    assert kinds == ["browser", "token"]
    current = [s for s in listed if s["current"]]
    assert len(current) == 1
    assert current[0]["kind"] == "browser"
    assert current[0]["device"] == "Firefox on Linux"
    assert any(s["id"] == app_sid and s["device"] == "my-app" for s in listed)


async def test_bearer_caller_sees_its_own_app_session_as_current(server: Server) -> None:
    token, sid = await app_token(server.services, (await user(server)).id)
    async with server.client() as client:
        listed = await client.get("/api/v1/sessions", headers={"authorization": f"Bearer {token}"})
    assert [s["id"] for s in listed.json()["sessions"] if s["current"]] == [sid]


async def test_deleting_an_app_session_kills_its_token_at_once(server: Server) -> None:
    token, sid = await app_token(server.services, (await user(server)).id)
    async with server.client() as client:
        await login(client)
        deleted = await client.delete(f"/api/v1/sessions/{sid}", headers=await csrf(client))
        assert deleted.status_code == 204
        after = await client.get("/api/v1/me", headers={"authorization": f"Bearer {token}"})
        again = await client.delete(f"/api/v1/sessions/{sid}", headers=await csrf(client))
    assert after.status_code == 401
    assert again.status_code == 404
    assert again.json()["error"] == "not_found"


async def test_delete_needs_csrf_for_cookie_callers_not_bearer_ones(server: Server) -> None:
    alice = await user(server)
    token, _ = await app_token(server.services, alice.id)
    _, other_sid = await app_token(server.services, alice.id)
    async with server.client() as client:
        await login(client)
        refused = await client.delete(f"/api/v1/sessions/{other_sid}")
        assert refused.status_code == 403
        assert refused.json()["error"] == "csrf_failed"
    async with server.client() as app:
        done = await app.delete(
            f"/api/v1/sessions/{other_sid}", headers={"authorization": f"Bearer {token}"}
        )
    assert done.status_code == 204


async def test_nobody_deletes_another_users_session(server: Server) -> None:
    bob = await server.add_user("bob")
    _, bobs = await app_token(server.services, bob.id)
    async with server.client() as client:
        await login(client)
        response = await client.delete(f"/api/v1/sessions/{bobs}", headers=await csrf(client))
        garbage = await client.delete("/api/v1/sessions/not-an-id", headers=await csrf(client))
    assert response.status_code == 404
    assert garbage.status_code == 404
    assert len(await server.services.sessions.list_sessions(bob.id)) == 1


async def test_consent_get_and_put(server: Server) -> None:
    async with server.client() as client:
        before = (await client.get("/api/v1/consent")).json()
        assert before["decided"] is False
        assert before["granted"] == ["essential"]
        names = {c["name"]: c for c in before["categories"]}
        assert {"__Host-theme"} == {k["name"] for k in names["preferences"]["cookies"]}
        assert names["essential"]["required"] is True
        put = await client.put(
            "/api/v1/consent", json={"granted": ["analytics"]}, headers=await csrf(client)
        )
        assert put.status_code == 200
        assert put.json()["granted"] == ["analytics", "essential"]
        assert any(h.startswith("__Host-consent=") for h in put.headers.get_list("set-cookie"))
        after = (await client.get("/api/v1/consent")).json()
    assert after["decided"] is True
    assert after["granted"] == ["analytics", "essential"]


async def test_consent_put_refuses_unknown_categories_and_missing_csrf(server: Server) -> None:
    async with server.client() as client:
        bad = await client.put(
            "/api/v1/consent", json={"granted": ["tracking"]}, headers=await csrf(client)
        )
        no_token = await client.put("/api/v1/consent", json={"granted": []})
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_request"
    assert no_token.status_code == 403


async def test_withdrawing_consent_over_the_api_deletes_cookies(server: Server) -> None:
    async with server.client() as client:
        await client.put(
            "/api/v1/consent", json={"granted": ["analytics"]}, headers=await csrf(client)
        )
        await client.get("/preferences")
        assert client.cookies.get("__Host-visits") == "1"
        put = await client.put("/api/v1/consent", json={"granted": []}, headers=await csrf(client))
    deletions = [h for h in put.headers.get_list("set-cookie") if h.startswith("__Host-visits=")]
    assert len(deletions) == 1
    assert "Max-Age=0" in deletions[0]


async def test_openapi_describes_the_account_api(server: Server) -> None:
    async with server.client() as client:
        schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    for path in ("/api/v1/me", "/api/v1/sessions", "/api/v1/consent", "/api/v1/csrf"):
        assert path in paths
    assert "/api/v1/sessions/{session_id}" in paths
    assert "/login" not in paths
    for model in ("MeOut", "SessionOut", "ConsentOut", "ConsentIn", "CsrfOut", "ErrorOut"):
        assert model in schema["components"]["schemas"]
    me = paths["/api/v1/me"]["get"]["responses"]["200"]["content"]["application/json"]
    assert me["schema"]["$ref"].endswith("/MeOut")
