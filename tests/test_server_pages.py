"""Browser pages of the server, in process: login, logout, remember me, account, re-auth."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.identity.events import EventKind
from tessera.identity.passwords import FAST_INSECURE_PROFILE, PasswordHasher
from tessera.server.pages import device_label, safe_next
from tessera.sessions import hash_session_id
from tests.browser_helpers import (
    PASSWORD,
    Server,
    csrf_from,
    form_token,
    login,
    post_form,
    running_server,
)

SESSION = "__Host-session"
REMEMBER = "__Host-remember"


class CountingHasher(PasswordHasher):
    """Counts argon2 verifications (real or dummy) to pin the no-enumeration rule."""

    def __init__(self) -> None:
        super().__init__(FAST_INSECURE_PROFILE)
        self.verifications = 0

    def verify(self, password_hash: str, password: str) -> bool:
        self.verifications += 1
        return super().verify(password_hash, password)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path, hasher=CountingHasher()) as srv:
        await srv.add_user("alice")
        yield srv


async def events_of(server: Server, username: str) -> list[EventKind]:
    user = await server.services.users.store.get_by_username(username)
    assert user is not None
    return [e.kind for e in await server.services.events.list_for_user(user.id)]


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers of a response by cookie name."""
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


@pytest.mark.parametrize(
    "path", ["/", "/login", "/reauth", "/account", "/consent", "/preferences", "/healthz"]
)
async def test_every_page_answers_head_as_get(server: Server, path: str) -> None:
    """Link checkers and uptime probes send HEAD (RFC 9110 §9.3.2): the GET's status and
    headers, never 405 (the server, not the app, leaves the body out)."""
    async with server.client() as client:
        got = await client.get(path)
        head = await client.head(path)
    assert head.status_code == got.status_code
    assert head.headers.get("content-type") == got.headers.get("content-type")
    assert head.headers.get("location") == got.headers.get("location")


# --- login --------------------------------------------------------------------------------


async def test_login_page_has_labelled_fields_and_a_csrf_token(server: Server) -> None:
    """GET /login renders username, password and remember fields, each labelled, plus CSRF."""
    async with server.client() as client:
        page = await client.get("/login")
    assert page.status_code == 200
    for field in ("username", "password", "remember"):
        assert f'name="{field}"' in page.text
        assert f'<label for="{field}"' in page.text
    assert csrf_from(page.text)
    assert "cdn" not in page.text.lower()
    assert page.headers["cache-control"] == "no-store"


async def test_pages_link_their_assets_by_path_whatever_the_host_header(server: Server) -> None:
    """The stylesheet link is a path: a forged Host never reaches the page (a shared cache that
    ignores Host would otherwise serve other visitors a stylesheet from the forger's server)."""
    async with server.client() as client:
        page = await client.get("/login", headers={"Host": "evil.example"})
    assert page.status_code == 200
    assert 'href="/static/tessera.css"' in page.text
    assert "evil.example" not in page.text


async def test_the_login_page_stores_no_session(server: Server) -> None:
    """An anonymous page view writes nothing to the session store: its form's CSRF token is
    bound to a pre-session cookie (HttpOnly, __Host-), and the login creates the session."""
    async with server.client() as client:
        page = await client.get("/login")
        assert set_cookies(page).keys() == {"__Host-csrf"}
        assert "HttpOnly" in set_cookies(page)["__Host-csrf"]
        assert await server.services.sessions.store.list_all(server.clock.now()) == []
        again = await client.get("/login")  # the same secret: no new cookie
        assert "set-cookie" not in again.headers
        assert (await login(client)).status_code == 303
        assert client.cookies.get(SESSION)


async def test_login_rotates_session_and_redirects_to_account(server: Server) -> None:
    """A good password: a new session ID, 303 to /account, an event, the account page."""
    anonymous = await server.services.sessions.create({"cart": 1})  # a stored anonymous session
    assert anonymous.secret_id is not None
    async with server.browser_with(SESSION, anonymous.secret_id) as client:
        response = await login(client)
        assert response.status_code == 303
        assert response.headers["location"] == "/account"
        after = client.cookies.get(SESSION)
        assert after
        assert after != anonymous.secret_id
        assert await server.services.sessions.load(anonymous.secret_id) is None  # dead at once
        account = await client.get("/account")
    assert account.status_code == 200
    assert "alice" in account.text
    assert "this device" in account.text
    assert EventKind.LOGIN_SUCCEEDED in await events_of(server, "alice")


async def test_login_honours_a_same_site_next_path(server: Server) -> None:
    async with server.client() as client:
        response = await login(client, next_path="/preferences?x=1")
    assert response.headers["location"] == "/preferences?x=1"


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "https://evil.example/",
        "http:/evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/%09/ok\\x",
    ],
)
async def test_login_refuses_open_redirects(server: Server, target: str) -> None:
    """``next`` pointing anywhere but a path of this site is ignored."""
    async with server.client() as client:
        response = await login(client, next_path=target)
    assert response.status_code == 303
    assert response.headers["location"] == "/account"


@given(st.text(max_size=40) | st.from_regex(r"[/\\]{1,3}[a-z.:]{0,10}", fullmatch=True))
def test_safe_next_never_leaves_the_site(raw: str) -> None:
    """Whatever safe_next accepts, a browser resolves on this host."""
    accepted = safe_next(raw)
    if accepted is not None:
        resolved = urlsplit(urljoin("https://site.example/a/b", accepted))
        assert resolved.netloc == "site.example"
        assert resolved.scheme == "https"
        assert accepted == raw


async def test_unknown_user_and_wrong_password_look_the_same(server: Server) -> None:
    """Same status, same message, one argon2 verification each (no enumeration)."""
    hasher = server.services.users._hasher
    assert isinstance(hasher, CountingHasher)
    answers = []
    for username in ("alice", "mallory"):
        async with server.client() as client:
            before = hasher.verifications
            response = await login(client, username, "wrong password!")
            answers.append((response.status_code, re.sub(r'value="[^"]*"', "", response.text)))
            assert hasher.verifications - before == 1
    assert answers[0][0] == answers[1][0] == 401
    assert "Wrong username or password." in answers[0][1]
    assert answers[0][1].replace("alice", "X") == answers[1][1].replace("mallory", "X")
    assert EventKind.LOGIN_FAILED in await events_of(server, "alice")


async def test_login_with_missing_fields_is_a_400_form(server: Server) -> None:
    async with server.client() as client:
        token = await form_token(client)
        response = await client.post("/login", data={"csrf_token": token, "username": "alice"})
    assert response.status_code == 400
    assert "Enter your username and password." in response.text


async def test_throttled_login_is_429_with_retry_after_then_recovers(server: Server) -> None:
    """Five failures lock the account for a while, even for the right password; then it opens."""
    async with server.client() as client:
        for _ in range(5):
            assert (await login(client, "alice", "nope nope")).status_code == 401
        blocked = await login(client)
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) >= 1
        assert "Too many failed attempts" in blocked.text
        server.clock.advance(int(blocked.headers["retry-after"]))
        assert (await login(client)).status_code == 303
    assert EventKind.THROTTLED in await events_of(server, "alice")


# --- logout and remember me ----------------------------------------------------------------


async def test_logout_destroys_the_session_and_forgets_remember_me(server: Server) -> None:
    async with server.client() as client:
        await login(client, remember=True)
        remember_value = client.cookies.get(REMEMBER)
        assert remember_value
        response = await post_form(client, "/logout")
        assert response.status_code == 303
        cleared = set_cookies(response)
        assert "Max-Age=0" in cleared[SESSION]
        assert "Max-Age=0" in cleared[REMEMBER]
        assert (await client.get("/account")).status_code == 303
    assert await server.services.remember.consume(remember_value) is None
    assert EventKind.LOGOUT in await events_of(server, "alice")


async def test_logout_without_csrf_token_changes_nothing(server: Server) -> None:
    async with server.client() as client:
        await login(client)
        refused = await client.post("/logout")
        assert refused.status_code == 403
        assert (await client.get("/account")).status_code == 200


async def test_remember_me_cookie_alone_logs_in_a_new_browser(server: Server) -> None:
    """The persistent cookie restores a login marked remembered; sensitive changes re-ask."""
    async with server.client() as first:
        response = await login(first, remember=True)
        header = set_cookies(response)[REMEMBER]
        assert "Max-Age=2592000" in header
        assert "HttpOnly" in header
        assert "Secure" in header
        value = first.cookies[REMEMBER]
    server.clock.advance(86400)
    async with server.browser_with(REMEMBER, value) as second:
        account = await second.get("/account")
        assert account.status_code == 200
        # The rotated cookie lasts until the token ends, which the rotation does not move.
        assert remember_max_age(account) == 2592000 - 86400
        assert "logged in automatically" in account.text
        assert "this device" in account.text
        assert 'action="/account/password"' not in account.text
        assert second.cookies[REMEMBER] != value  # rotated: single use
        change = await post_form(
            second,
            "/account/password",
            {
                "current_password": PASSWORD,
                "new_password": "x" * 12,
                "new_password_confirm": "x" * 12,
            },
        )
        assert change.status_code == 303
        assert change.headers["location"] == "/reauth?next=/account"
        wrong = await post_form(
            second, "/reauth", {"password": "not it at all", "next": "/account"}
        )
        assert wrong.status_code == 401
        ok = await post_form(second, "/reauth", {"password": PASSWORD, "next": "/account"})
        assert ok.status_code == 303
        account = await second.get("/account")
        assert 'action="/account/password"' in account.text


async def test_replayed_remember_cookie_revokes_everything(server: Server) -> None:
    """An old remember-me cookie after rotation is theft: every session of the user ends."""
    async with server.client() as victim:
        await login(victim, remember=True)
        stolen = victim.cookies[REMEMBER]
    async with server.browser_with(REMEMBER, stolen) as thief:
        assert (await thief.get("/account")).status_code == 200  # first use wins, rotates
        server.clock.advance(60)  # past the grace window
    async with server.browser_with(REMEMBER, stolen) as replay:
        response = await replay.get("/account")
        assert response.status_code == 303
    async with server.client() as again:
        await login(again)
        account = await again.get("/account")
    assert "remember me theft" in account.text
    assert account.text.count('action="/account/sessions/') == 0  # only this device is left


# --- account ---------------------------------------------------------------------------------


async def test_account_redirects_anonymous_visitors_to_login(server: Server) -> None:
    async with server.client() as client:
        response = await client.get("/account")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Faccount"


async def test_revoking_a_session_logs_that_browser_out(server: Server) -> None:
    async with server.client() as laptop, server.client(user_agent="curl/8.5") as phone:
        await login(laptop)
        await login(phone)
        page = await laptop.get("/account")
        assert "Firefox on Linux" in page.text
        assert "curl" in page.text
        ids = re.findall(r'action="/account/sessions/([0-9a-f]{64})/revoke"', page.text)
        assert len(ids) == 1  # every session but this device's has a revoke button
        revoked = await post_form(laptop, f"/account/sessions/{ids[0]}/revoke")
        assert revoked.status_code == 303
        assert (await phone.get("/account")).status_code == 303
        assert (await laptop.get("/account")).status_code == 200
        missing = await post_form(laptop, f"/account/sessions/{ids[0]}/revoke")
        assert missing.status_code == 404
    user = await server.services.users.store.get_by_username("alice")
    assert user is not None
    (event,) = [
        e
        for e in await server.services.events.list_for_user(user.id)
        if e.kind is EventKind.SESSION_REVOKED
    ]
    assert "Firefox" in (event.user_agent or "")  # who revoked it: the laptop, not the phone


@pytest.mark.parametrize("restored", [False, True], ids=["password_login", "restored_login"])
async def test_revoking_a_remembered_browser_also_forgets_its_remember_me(
    server: Server, restored: bool
) -> None:
    """Revoking one remembered browser must not let its remember-me cookie log it straight back
    in; the user's other remembered browsers keep theirs."""
    async with server.client() as laptop, server.client() as desk, server.client() as phone:
        await login(laptop, remember=True)
        await login(desk, remember=True)
        if restored:  # the laptop's session is one the remember-me cookie restored
            value = laptop.cookies[REMEMBER]
            laptop.cookies.clear()
            laptop.cookies.set(REMEMBER, value, domain="testserver.local")
            assert (await laptop.get("/account")).status_code == 200
        server.clock.advance(1)
        await login(phone)
        page = await phone.get("/account")
        ids = re.findall(r'action="/account/sessions/([0-9a-f]{64})/revoke"', page.text)
        laptop_id = hash_session_id(laptop.cookies[SESSION])
        assert laptop_id in ids
        assert (await post_form(phone, f"/account/sessions/{laptop_id}/revoke")).status_code == 303
        kept_remember = desk.cookies[REMEMBER]
        remember = laptop.cookies[REMEMBER]
    async with server.browser_with(REMEMBER, remember) as returning:
        assert (await returning.get("/account")).status_code == 303  # to the login page
    async with server.browser_with(REMEMBER, kept_remember) as other:
        assert (await other.get("/account")).status_code == 200


async def test_nobody_revokes_another_users_session(server: Server) -> None:
    await server.add_user("bob")
    async with server.client() as alice, server.client() as bob:
        await login(alice)
        await login(bob, "bob")
        bobs = await server.services.sessions.list_sessions(
            (await server.services.users.store.get_by_username("bob")).id  # type: ignore[union-attr]
        )
        response = await post_form(alice, f"/account/sessions/{bobs[0].id}/revoke")
        assert response.status_code == 404
        assert (await bob.get("/account")).status_code == 200


async def test_log_out_everywhere_else_keeps_only_this_browser(server: Server) -> None:
    async with server.client() as a, server.client() as b, server.client() as c:
        for client in (a, b, c):
            await login(client)
        response = await post_form(a, "/account/sessions/revoke-others")
        assert response.status_code == 303
        assert (await a.get("/account")).status_code == 200
        assert (await b.get("/account")).status_code == 303
        assert (await c.get("/account")).status_code == 303


def remember_max_age(response: httpx.Response) -> int:
    header = set_cookies(response)[REMEMBER]
    found = re.search(r"Max-Age=(\d+)", header)
    assert found is not None, header
    return int(found.group(1))


@pytest.mark.parametrize("restored", [False, True])
async def test_log_out_everywhere_else_keeps_this_browser_remembered_under_a_new_token(
    server: Server, restored: bool
) -> None:
    """The browser that asks stays remembered (whether its session came from the password form
    or from its remember-me cookie) under a new token, stored with its session, that ends when
    the old one would have; an unused copy of the old cookie dies with the other browsers'."""
    async with server.client() as here, server.client() as there:
        await login(here, remember=True)
        await login(there, remember=True)
        server.clock.advance(3600)
        if restored:  # this browser's session is one its remember-me cookie restored
            del here.cookies[SESSION]
            assert (await here.get("/account")).status_code == 200
        copy = here.cookies[REMEMBER]
        response = await post_form(here, "/account/sessions/revoke-others")
        assert response.status_code == 303
        assert remember_max_age(response) == 30 * 86400 - 3600  # the old token's end
        renewed, revoked = here.cookies[REMEMBER], there.cookies[REMEMBER]
        stored = await server.services.sessions.load(here.cookies[SESSION])
        assert stored is not None
        assert stored.get("_remember") == renewed.split(":")[0]
        events = await events_of(server, "alice")
        assert EventKind.SESSION_REVOKED in events
    async with server.browser_with(REMEMBER, renewed) as returning:
        assert (await returning.get("/account")).status_code == 200
    for dead in (copy, revoked):
        async with server.browser_with(REMEMBER, dead) as other:
            assert (await other.get("/account")).status_code == 303  # to the login page


async def test_log_out_everywhere_else_never_extends_a_remembered_login(server: Server) -> None:
    """Only a password login starts a new remembered lifetime: clicking "log out everywhere
    else" every few weeks must not keep a browser logged in for ever."""
    async with server.client() as browser:
        await login(browser, remember=True)
        server.clock.advance(25 * 86400)
        del browser.cookies[SESSION]  # long expired: the remember-me cookie logs it in
        assert (await browser.get("/account")).status_code == 200
        response = await post_form(browser, "/account/sessions/revoke-others")
        assert remember_max_age(response) == 5 * 86400
        renewed = browser.cookies[REMEMBER]
    server.clock.advance(5 * 86400 + 1)
    async with server.browser_with(REMEMBER, renewed) as returning:
        assert (await returning.get("/account")).status_code == 303


async def test_a_stale_remember_me_cookie_at_log_out_everywhere_else_gets_no_new_token(
    server: Server,
) -> None:
    """A copy of this browser's cookie was used elsewhere (its validator rotated there), or a
    tab lost the response that rotated it: no new token for a stale validator, no false theft
    alarm either. This browser stays logged in, and the copy dies with the other tokens."""
    async with server.client() as here:
        await login(here, remember=True)
        async with server.browser_with(REMEMBER, here.cookies[REMEMBER]) as copy:
            assert (await copy.get("/account")).status_code == 200  # the copy, used once
            server.clock.advance(60)  # past the grace window of racing tabs
            response = await post_form(here, "/account/sessions/revoke-others")
            assert response.status_code == 303
            assert "Max-Age=0" in set_cookies(response)[REMEMBER]
            assert (await here.get("/account")).status_code == 200
            del copy.cookies[SESSION]
            assert (await copy.get("/account")).status_code == 303
    assert EventKind.REMEMBER_ME_THEFT not in await events_of(server, "alice")


async def test_log_out_everywhere_else_remembers_no_browser_that_was_not(server: Server) -> None:
    """A password login without "remember me" gets no token, and a remember-me cookie left
    from an earlier login is deleted (its token died with the others)."""
    async with server.client() as earlier:
        await login(earlier, remember=True)
        leftover = earlier.cookies[REMEMBER]
    async with server.client() as browser:
        await login(browser)  # without "remember me"
        browser.cookies.set(REMEMBER, leftover, domain="testserver.local")
        response = await post_form(browser, "/account/sessions/revoke-others")
        assert response.status_code == 303
        assert "Max-Age=0" in set_cookies(response)[REMEMBER]
        stored = await server.services.sessions.load(browser.cookies[SESSION])
        assert stored is not None
        assert "_remember" not in stored


async def test_password_change_keeps_this_browser_and_ends_the_others(server: Server) -> None:
    new = "a brand new password"
    async with server.client() as here, server.client() as there:
        await login(here, remember=True)
        await login(there)
        response = await post_form(
            here,
            "/account/password",
            {"current_password": PASSWORD, "new_password": new, "new_password_confirm": new},
        )
        assert response.status_code == 303
        assert "Max-Age=0" in set_cookies(response)[REMEMBER]
        # A login: the new session holds its CSRF secret from the start (parallel requests
        # that follow share it rather than each making one; see CsrfProtector.reset).
        stored = await server.services.sessions.load(here.cookies[SESSION])
        assert stored is not None
        assert isinstance(stored.get("_csrf"), str)
        page = await here.get(response.headers["location"])
        assert page.status_code == 200
        assert "Your password was changed" in page.text
        assert "password changed" in page.text  # the security event
        assert (await there.get("/account")).status_code == 303
    async with server.client() as fresh:
        assert (await login(fresh)).status_code == 401
        assert (await login(fresh, password=new)).status_code == 303


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        (
            {
                "current_password": PASSWORD,
                "new_password": "abcdefgh1",
                "new_password_confirm": "x",
            },
            400,
            "differ",
        ),
        (
            {
                "current_password": PASSWORD,
                "new_password": "short",
                "new_password_confirm": "short",
            },
            400,
            "at least 8",
        ),
        (
            {
                "current_password": "wrong one!",
                "new_password": "abcdefgh1",
                "new_password_confirm": "abcdefgh1",
            },
            401,
            "wrong",
        ),
    ],
)
async def test_password_change_refusals_say_why(
    server: Server, fields: dict[str, str], status: int, message: str
) -> None:
    async with server.client() as client:
        await login(client)
        response = await post_form(client, "/account/password", fields)
        assert response.status_code == status
        assert message in response.text
        assert (await client.get("/account")).status_code == 200


async def test_email_change_and_conflict(server: Server) -> None:
    await server.services.users.set_email(
        (await server.services.users.register("bob", PASSWORD)).id, "bob@example.org"
    )
    async with server.client() as client:
        await login(client)
        ok = await post_form(client, "/account/email", {"email": "alice@example.org"})
        assert ok.status_code == 303
        assert "alice@example.org" in (await client.get("/account")).text
        taken = await post_form(client, "/account/email", {"email": "bob@example.org"})
        assert taken.status_code == 409


# --- device labels ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "label"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
            "Edge on Windows",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
            "Safari on iPhone",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "Firefox on Linux",
        ),
        ("curl/8.5.0", "curl"),
        ("my-app/2.1 (build 7)", "my-app"),
        ("Alice's phone", "Alice's phone"),  # an app's device_name, shown whole
        ("Alice's iPhone", "Alice's iPhone"),  # even when it names a system
        ("My Windows laptop", "My Windows laptop"),
        ("Anon\x1b]0;owned\x07\x1b[2J\x9bX", "Anon]0;owned[2JX"),  # no control characters
        ("\x1b\x07", "Unknown device"),
        ("  Pixel   8 ", "Pixel 8"),
        ("x" * 60, "x" * 40),
        ("", "Unknown device"),
        (None, "Unknown device"),
    ],
)
def test_device_label(agent: str | None, label: str) -> None:
    assert device_label(agent) == label


@given(st.text(max_size=300))
def test_device_label_is_short_for_any_user_agent(agent: str) -> None:
    label = device_label(agent)
    assert 0 < len(label) <= 40
    assert label.isprintable()
