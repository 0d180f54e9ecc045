"""The server in a real Chromium: cookie flags, sessions, CSRF from another origin, consent,
remember me and its theft detection.

``tessera serve`` runs as a subprocess in secure mode (Secure, ``__Host-`` cookies) on
http://127.0.0.1, which Chromium treats as potentially trustworthy, so it stores Secure cookies
there. Users are created with the CLI, as a person would. One browser serves the module; each
test gets fresh contexts (cookie jars).
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.browser_helpers import PASSWORD, add_users, cli_env, free_port, serve, tessera_cli

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
SESSION = "__Host-session"
REMEMBER = "__Host-remember"
VISITS = "__Host-visits"


@dataclass
class Site:
    base: str
    env: dict[str, str]
    browser: Browser

    def context(self) -> BrowserContext:
        context = self.browser.new_context(base_url=self.base)
        context.set_default_timeout(10_000)
        return context

    def events(self, username: str) -> str:
        return tessera_cli(self.env, "user", "events", username)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("browser")
    env = cli_env(tmp / "tessera.db", COLUMNS="250")
    add_users(env, ["alice", "bob", "dave"])
    with serve(env, tmp) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield Site(base, env, browser)
        finally:
            browser.close()


def log_in(page: Page, username: str, *, remember: bool = False) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    if remember:
        page.get_by_label("Remember me").check()
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/account")


def cookie(context: BrowserContext, name: str) -> dict[str, Any] | None:
    found = [c for c in context.cookies() if c["name"] == name]
    return dict(found[0]) if found else None


def test_login_sets_the_session_cookie_with_the_configured_flags(site: Site) -> None:
    context = site.context()
    page = context.new_page()
    page.goto("/login")
    page.screenshot(path="/tmp/tessera-login.png", full_page=True)
    log_in(page, "alice")
    assert page.get_by_role("heading", name="Your account").is_visible()
    jar = cookie(context, SESSION)
    assert jar is not None
    assert jar["httpOnly"] is True
    assert jar["secure"] is True
    assert jar["sameSite"] == "Lax"
    assert jar["path"] == "/"
    assert jar["expires"] == -1  # a browser-session cookie without remember me
    context.close()


def test_revoking_a_session_from_another_browser_logs_it_out(site: Site) -> None:
    laptop, phone = site.context(), site.context()
    laptop_page, phone_page = laptop.new_page(), phone.new_page()
    log_in(laptop_page, "bob")
    log_in(phone_page, "bob")
    phone_cookie = cookie(phone, SESSION)
    assert phone_cookie is not None
    laptop_page.reload()
    rows = laptop_page.locator("table.sessions tbody tr")
    assert rows.count() == 2
    assert laptop_page.locator("tr.current").count() == 1
    laptop_page.screenshot(path="/tmp/tessera-account.png", full_page=True)
    laptop_page.get_by_role("button", name="Revoke").click()
    laptop_page.wait_for_url("**/account?done=revoked")
    assert laptop_page.locator("table.sessions tbody tr").count() == 1
    phone_page.goto("/account")
    assert "/login" in phone_page.url
    after = cookie(phone, SESSION)  # the login form started a fresh anonymous session
    assert after is None or after["value"] != phone_cookie["value"]
    assert "session_revoked" in site.events("bob")
    laptop.close()
    phone.close()


class _AttackerPage(http.server.BaseHTTPRequestHandler):
    """Serves a page that auto-submits a form to the target (no CSRF token, of course)."""

    target = ""

    def do_GET(self) -> None:
        body = (
            "<!doctype html><title>free prizes</title>"
            f'<form id="f" method="post" action="{self.target}">'
            '<input name="theme" value="dark"></form>'
            "<script>document.getElementById('f').submit()</script>"
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log lines."""


@pytest.fixture
def attacker(site: Site) -> Iterator[str]:
    """Another origin (same host, another port): its forms post to our /logout."""
    handler = type("Handler", (_AttackerPage,), {"target": f"{site.base}/logout"})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_form_posted_from_another_origin_is_refused(site: Site, attacker: str) -> None:
    context = site.context()
    page = context.new_page()
    log_in(page, "alice")
    with page.expect_response(f"{site.base}/logout") as answer:
        page.goto(attacker)
    assert answer.value.status == 403
    assert "Request refused" in page.content()
    page.goto("/account")
    assert page.url.endswith("/account")
    assert page.get_by_text("this device").is_visible()
    context.close()


def test_rejected_analytics_never_reaches_the_jar_and_withdrawal_deletes(site: Site) -> None:
    context = site.context()
    page = context.new_page()
    page.goto("/")
    page.get_by_role("button", name="Reject non-essential").click()
    page.wait_for_load_state()
    assert not page.get_by_role("button", name="Accept all").is_visible()
    for _ in range(3):
        page.goto("/preferences")
        assert page.get_by_text("Visits are not counted").is_visible()
        assert cookie(context, VISITS) is None
    page.goto("/consent")
    page.get_by_label("Analytics").check()
    assert page.get_by_label("Essential").is_disabled()
    page.screenshot(path="/tmp/tessera-consent.png", full_page=True)
    page.get_by_role("button", name="Save my choices").click()
    page.goto("/preferences")
    page.goto("/preferences")
    assert page.locator("#visits strong").inner_text() == "2"
    visits = cookie(context, VISITS)
    assert visits is not None
    assert visits["value"] == "2"
    page.goto("/consent")
    page.get_by_role("button", name="Reject non-essential").click()
    page.wait_for_url("**/consent?saved=1")
    assert cookie(context, VISITS) is None
    context.close()


def test_remember_me_cookie_alone_logs_in_and_a_replay_is_theft(site: Site) -> None:
    first = site.context()
    log_in(first.new_page(), "dave", remember=True)
    remembered = cookie(first, REMEMBER)
    assert remembered is not None
    assert remembered["httpOnly"] is True
    assert remembered["secure"] is True
    assert remembered["expires"] > 0  # persistent
    first.close()

    def restored(value: dict[str, Any]) -> tuple[BrowserContext, Page]:
        """A fresh browser holding nothing but this remember-me cookie."""
        context = site.context()
        context.add_cookies([value])  # type: ignore[list-item]
        page = context.new_page()
        page.goto("/account")
        return context, page

    second, page = restored(remembered)
    assert page.url.endswith("/account")
    assert page.get_by_text("logged in automatically").is_visible()
    rotated = cookie(second, REMEMBER)
    assert rotated is not None
    assert rotated["value"] != remembered["value"]
    third, page = restored(rotated)  # rotates again: the first value is now two steps old
    assert page.url.endswith("/account")
    thief, page = restored(remembered)
    assert "/login" in page.url
    for victim in (second, third):
        victim_page = victim.new_page()
        victim_page.goto("/account")
        assert "/login" in victim_page.url
    assert "remember_me_theft" in site.events("dave")
    for context in (second, third, thief):
        context.close()
