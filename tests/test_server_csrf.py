"""CsrfMiddleware as the server runs it: every refusal, every accepted way to send the token."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.csrf import SESSION_KEY, PreSession
from tests.browser_helpers import PASSWORD, Server, form_token, login, running_server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as srv:
        await srv.add_user("alice")
        yield srv


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """A logged-in browser that has seen its account page (so its session has a CSRF secret)."""
    async with server.client() as browser:
        assert (await login(browser)).status_code == 303
        assert (await browser.get("/account")).status_code == 200
        yield browser


def forged_token() -> str:
    """Well-formed (64 masked bytes) but made without the key."""
    return base64.urlsafe_b64encode(secrets.token_bytes(64)).rstrip(b"=").decode()


async def logged_in(client: httpx.AsyncClient) -> bool:
    return (await client.get("/account")).status_code == 200


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "token_missing"),
        ("", "token_missing"),
        ("not-base64!!", "token_malformed"),
        ("A" * 5000, "token_malformed"),
        ("forged", "token_invalid"),
    ],
)
async def test_bad_tokens_are_403_json_and_change_nothing(
    client: httpx.AsyncClient, token: str | None, reason: str
) -> None:
    data = {} if token is None else {"csrf_token": forged_token() if token == "forged" else token}
    response = await client.post("/logout", data=data)
    assert response.status_code == 403
    assert response.json()["error"] == "csrf_failed"
    assert response.json()["reason"] == reason
    assert await logged_in(client)


async def test_a_token_of_another_session_is_refused(
    server: Server, client: httpx.AsyncClient
) -> None:
    async with server.client() as other:
        theirs = await form_token(other, "/login")
    response = await client.post("/logout", data={"csrf_token": theirs})
    assert response.status_code == 403
    assert response.json()["reason"] == "token_invalid"
    assert await logged_in(client)


async def test_a_token_from_before_login_dies_at_login(server: Server) -> None:
    """Login rotates the CSRF secret with the session ID (no token fixation)."""
    async with server.client() as browser:
        before = await form_token(browser, "/login")
        await login(browser)
        response = await browser.post("/logout", data={"csrf_token": before})
    assert response.status_code == 403


async def test_browsers_asking_for_html_get_a_page(client: httpx.AsyncClient) -> None:
    response = await client.post("/logout", headers={"accept": "text/html"})
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "Request refused" in response.text


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"origin": "https://evil.example"}, "origin_mismatch"),
        ({"origin": "null"}, "origin_null"),
        ({"origin": "http://testserver"}, "origin_mismatch"),  # scheme differs
        ({"sec-fetch-site": "cross-site"}, "cross_site"),
        ({"sec-fetch-site": "same-site"}, "cross_site"),
    ],
)
async def test_cross_site_requests_are_refused_even_with_a_valid_token(
    client: httpx.AsyncClient, headers: dict[str, str], reason: str
) -> None:
    token = await form_token(client, "/account")
    response = await client.post("/logout", data={"csrf_token": token}, headers=headers)
    assert response.status_code == 403
    assert response.json()["reason"] == reason
    assert await logged_in(client)


async def test_same_origin_headers_pass(client: httpx.AsyncClient) -> None:
    token = await form_token(client, "/account")
    response = await client.post(
        "/logout",
        data={"csrf_token": token},
        headers={"origin": "https://testserver", "sec-fetch-site": "same-origin"},
    )
    assert response.status_code == 303
    assert not await logged_in(client)


async def test_token_in_the_header(client: httpx.AsyncClient) -> None:
    token = await form_token(client, "/account")
    response = await client.post("/logout", headers={"x-csrf-token": token})
    assert response.status_code == 303


async def test_token_in_a_multipart_form(client: httpx.AsyncClient) -> None:
    token = await form_token(client, "/account")
    response = await client.post(
        "/preferences", files={"csrf_token": (None, token), "theme": (None, "dark")}
    )
    assert response.status_code == 200  # no preferences consent: the page says so
    assert "could not be stored" in response.text


async def test_an_oversize_form_is_413(client: httpx.AsyncClient) -> None:
    body = b"csrf_token=x&pad=" + b"a" * (1024 * 1024 + 1)
    response = await client.post(
        "/logout", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 413
    assert await logged_in(client)


async def test_bearer_only_requests_are_exempt_but_cookies_are_not(server: Server) -> None:
    """No page of another site can attach a Bearer token; a cookie beside it still counts."""
    alice = await server.services.users.store.get_by_username("alice")
    assert alice is not None
    app_session = await server.services.sessions.create(user_id=alice.id, kind="token")
    assert app_session.id is not None
    token, _ = server.services.issuer.issue(alice.id, app_session.id, "openid", "app")
    victim = await server.services.sessions.create(user_id=alice.id, kind="token")
    bearer = {"authorization": f"Bearer {token}"}
    async with server.client() as browser:
        await login(browser)
        mixed = await browser.delete(f"/api/v1/sessions/{victim.id}", headers=bearer)
        assert mixed.status_code == 403
    async with server.client() as app:
        alone = await app.delete(f"/api/v1/sessions/{victim.id}", headers=bearer)
    assert alone.status_code == 204


async def test_anonymous_posts_without_a_session_are_refused(server: Server) -> None:
    async with server.client() as client:
        response = await client.post("/login", data={"username": "alice", "password": "x"})
    assert response.status_code == 403
    assert response.json()["reason"] in ("token_missing", "no_session")


async def test_a_pre_session_token_needs_its_own_cookie(server: Server) -> None:
    """Before login the token is bound to the visitor's pre-session cookie: another visitor's
    token, or the token without its cookie, is refused."""
    async with server.client() as victim, server.client() as attacker:
        theirs = await form_token(attacker, "/login")
        await form_token(victim, "/login")
        data = {"csrf_token": theirs, "username": "alice", "password": PASSWORD}
        refused = await victim.post("/login", data=data)
        assert refused.status_code == 403
        assert refused.json()["reason"] == "token_invalid"
        victim.cookies.clear()
        without = await victim.post("/login", data=data)
        assert without.status_code == 403
        assert without.json()["reason"] == "no_session"
        assert (await attacker.post("/login", data=data)).status_code == 303  # its own: fine


@given(st.one_of(st.none(), st.text(max_size=100)))
def test_any_pre_session_cookie_is_taken_only_when_it_is_a_secret(value: str | None) -> None:
    pre = PreSession(value)
    taken = pre.get(SESSION_KEY)
    assert taken is None or (taken == value and len(value) == 43)
    assert pre.new_secret is None


REMEMBER = "__Host-remember"
SESSION = "__Host-session"


async def test_the_first_page_after_a_remember_me_login_has_working_forms(server: Server) -> None:
    """The session that remember-me restores is logged in: its forms bind to it, not to the
    pre-session cookie, and work on the next request."""
    async with server.client() as first:
        await login(first, remember=True)
        remember = first.cookies[REMEMBER]
    async with server.browser_with(REMEMBER, remember) as browser:
        token = await form_token(browser, "/account")
        assert (await browser.post("/logout", data={"csrf_token": token})).status_code == 303


async def test_a_pre_login_token_never_counts_for_a_logged_in_request(server: Server) -> None:
    """Even with its pre-session cookie back, and when the session behind the login expired and
    remember-me restores it on that very request."""
    async with server.client() as browser:
        before = await form_token(browser, "/login")
        secret = browser.cookies["__Host-csrf"]
        assert (await login(browser, remember=True)).status_code == 303
        assert "__Host-csrf" not in browser.cookies  # deleted at login
        alice = await server.services.users.store.get_by_username("alice")
        assert alice is not None
        await server.services.sessions.store.delete_for_user(alice.id)
        browser.cookies.set("__Host-csrf", secret, domain="testserver.local")
        response = await browser.post("/logout", data={"csrf_token": before})
    assert response.status_code == 403


async def test_a_pre_session_cookie_in_a_second_cookie_field_counts(server: Server) -> None:
    """HTTP/2 may split cookies over several fields (RFC 9113 §8.2.3): all are read."""
    async with server.client() as browser:
        token = await form_token(browser, "/login")
        secret = browser.cookies["__Host-csrf"]
    async with server.client() as raw:
        response = await raw.post(
            "/login",
            data={"csrf_token": token, "username": "alice", "password": PASSWORD},
            headers=[("cookie", "other=1"), ("cookie", f"__Host-csrf={secret}")],
        )
    assert response.status_code == 303


async def test_tokens_handed_out_in_parallel_right_after_a_login_all_work(server: Server) -> None:
    """Two tabs, or an app asking twice, right after logging in: every token it was given
    works. The login stores the session's new CSRF secret; made on first use, each request
    made its own, the last save won, and the tokens of the others were refused."""
    async with server.client() as browser:
        assert (await login(browser)).status_code == 303
        stored = await server.services.sessions.load(browser.cookies[SESSION])
        assert stored is not None
        assert isinstance(stored.get(SESSION_KEY), str)
        answers = await asyncio.gather(*(browser.get("/api/v1/csrf") for _ in range(8)))
        for answer in answers:
            token = answer.json()["csrf_token"]
            put = await browser.put(
                "/api/v1/consent", json={"granted": []}, headers={"x-csrf-token": token}
            )
            assert put.status_code == 200, put.text


async def test_a_remember_me_login_stores_a_csrf_secret_too(server: Server) -> None:
    """Also when the request that restored the login renders no form (an app's API call)."""
    async with server.client() as first:
        await login(first, remember=True)
        remember = first.cookies[REMEMBER]
    async with server.browser_with(REMEMBER, remember) as browser:
        assert (await browser.get("/api/v1/me")).status_code == 200
        stored = await server.services.sessions.load(browser.cookies[SESSION])
        assert stored is not None
        assert isinstance(stored.get(SESSION_KEY), str)


async def test_remember_me_reads_every_cookie_field(server: Server) -> None:
    """HTTP/2 clients send each cookie in a Cookie field of its own (RFC 9113 §8.2.3)."""
    async with server.client() as first:
        await login(first, remember=True)
        remember = first.cookies[REMEMBER]
    async with server.client() as raw:
        response = await raw.get(
            "/api/v1/me", headers=[("cookie", "other=1"), ("cookie", f"{REMEMBER}={remember}")]
        )
    assert response.status_code == 200
    assert response.json()["remembered"] is True
