"""One principal on the server: /api/v1/me answers a Bearer token and a cookie session alike;
CSRF is asked of cookie callers only."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.test_token_api_support import PASSWORD, Server, bearer, login, make_settings, running


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running(make_settings(tmp_path)) as server:
        await server.add_user("alice")
        yield server


async def browser_login(client: httpx.AsyncClient, username: str = "alice") -> None:
    """Log in like a browser: the login page's form, with its CSRF token."""
    page = await client.get("/login", headers={"accept": "text/html"})
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match is not None, page.text
    response = await client.post(
        "/login",
        data={"csrf_token": match.group(1), "username": username, "password": PASSWORD},
        headers={"accept": "text/html"},
    )
    assert response.status_code == 303, response.text


async def csrf_token(client: httpx.AsyncClient) -> str:
    token: str = (await client.get("/api/v1/csrf")).json()["csrf_token"]
    return token


async def test_me_accepts_a_bearer_token(server: Server) -> None:
    async with server.client() as client:
        body = await login(client)
        response = await client.get("/api/v1/me", headers=bearer(body["access_token"]))
    assert response.status_code == 200
    me = response.json()
    assert (me["username"], me["method"], me["scopes"]) == ("alice", "bearer", ["account"])


async def test_me_accepts_a_cookie_session(server: Server) -> None:
    async with server.client() as browser:
        await browser_login(browser)
        response = await browser.get("/api/v1/me")
    assert response.status_code == 200
    assert (response.json()["username"], response.json()["method"]) == ("alice", "session")


async def test_me_without_credentials_is_401(server: Server) -> None:
    async with server.client() as client:
        response = await client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_bearer_only_delete_needs_no_csrf_token(server: Server) -> None:
    async with server.client() as app:
        caller = await login(app)
        target = await login(app)
        sid = server.services.verifier.verify(target["access_token"]).sid
        response = await app.delete(
            f"/api/v1/sessions/{sid}", headers=bearer(caller["access_token"])
        )
    assert response.status_code == 204


async def test_a_cookie_delete_needs_a_csrf_token(server: Server) -> None:
    async with server.client() as browser, server.client() as app:
        await browser_login(browser)
        target = await login(app)
        sid = server.services.verifier.verify(target["access_token"]).sid
        refused = await browser.delete(f"/api/v1/sessions/{sid}")
        assert refused.status_code == 403
        assert refused.json()["error"] == "csrf_failed"
        accepted = await browser.delete(
            f"/api/v1/sessions/{sid}", headers={"x-csrf-token": await csrf_token(browser)}
        )
        assert accepted.status_code == 204
        gone = await app.get("/api/v1/me", headers=bearer(target["access_token"]))
    assert gone.status_code == 401
    assert gone.json()["reason"] == "revoked"


async def test_a_bearer_token_next_to_a_session_cookie_still_needs_csrf(server: Server) -> None:
    """A page of another site cannot add a Bearer header, but the cookie rides along anyway:
    once a cookie is present, only the CSRF token proves the request is ours."""
    async with server.client() as browser:
        await browser_login(browser)
        body = await login(browser)
        sid = server.services.verifier.verify(body["access_token"]).sid
        response = await browser.delete(
            f"/api/v1/sessions/{sid}", headers=bearer(body["access_token"])
        )
    assert response.status_code == 403


async def test_token_endpoints_are_csrf_exempt_even_with_a_cookie(server: Server) -> None:
    """/api/v1/auth/* neither reads nor sets cookies; a browser cookie does not get in the way."""
    async with server.client() as browser:
        await browser_login(browser)
        assert browser.cookies
        await login(browser)
