"""Done-when scenario: a mobile-like client logs in, calls /api/v1/me, survives access-token
expiry by refreshing, and is cut off at once when the user revokes its session from a browser.

Once in process (fake clock), once against a real ``tessera serve`` over TCP (real clock,
two-second access tokens).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tessera.client import LoginRequired, TesseraAuth
from tessera.clock import FakeClock
from tests.test_token_api_support import PASSWORD, make_settings, running

TTL = 300


def csrf_from_login_page(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None, html
    return match.group(1)


async def test_mobile_app_lifecycle_in_process(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running(make_settings(tmp_path, access_token_ttl=TTL), clock) as server:
        await server.add_user("alice")
        refreshes: list[str] = []

        async def note(request: httpx.Request) -> None:
            if request.url.path == "/api/v1/auth/refresh":
                refreshes.append(request.url.path)

        auth = TesseraAuth(
            "http://testserver", "alice", PASSWORD, device_name="Alice's phone", clock=clock.now
        )
        async with (
            server.client(auth=auth, event_hooks={"request": [note]}) as phone,
            server.client() as browser,
        ):
            me = await phone.get("/api/v1/me")
            assert me.status_code == 200
            assert me.json()["username"] == "alice"

            clock.advance(TTL + 60)  # the access token is long expired
            assert (await phone.get("/api/v1/me")).status_code == 200
            assert refreshes  # it refreshed rather than failing

            # The browser logs in with the login form, finds the phone, and revokes it.
            page = await browser.get("/login", headers={"accept": "text/html"})
            logged_in = await browser.post(
                "/login",
                data={
                    "csrf_token": csrf_from_login_page(page.text),
                    "username": "alice",
                    "password": PASSWORD,
                },
            )
            assert logged_in.status_code == 303
            listed = (await browser.get("/api/v1/sessions")).json()["sessions"]
            (app_session,) = [s for s in listed if s["kind"] == "token"]
            assert app_session["user_agent"] == "Alice's phone"
            csrf = (await browser.get("/api/v1/csrf")).json()["csrf_token"]
            revoked = await browser.delete(
                f"/api/v1/sessions/{app_session['id']}", headers={"x-csrf-token": csrf}
            )
            assert revoked.status_code == 204

            with pytest.raises(LoginRequired):
                await phone.get("/api/v1/me")
            assert (await browser.get("/api/v1/me")).status_code == 200  # the browser stays


# --- a real server over TCP ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tessera_exe() -> str:
    return os.path.join(os.path.dirname(sys.executable), "tessera")


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[str]:
    """``tessera serve`` on a free port with a fresh SQLite file and 2-second access tokens."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")},
        "TESSERA_DATABASE_URL": f"sqlite:///{tmp_path}/tessera.db",
        "TESSERA_PORT": str(port),
        "TESSERA_DEV": "1",
        "TESSERA_ACCESS_TOKEN_TTL": "2",
        "TESSERA_SESSION_STORE": "sql",
    }
    subprocess.run(  # noqa: S603 - our own entry point
        [tessera_exe(), "user", "add", "alice", "--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    )
    proc = subprocess.Popen(  # noqa: S603 - our own entry point
        [tessera_exe(), "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_mobile_app_lifecycle_against_tessera_serve(live_server: str) -> None:
    """Sync httpx.Client, real clock: expiry passes, the client refreshes; a browser revokes."""
    refreshes: list[str] = []

    def note(request: httpx.Request) -> None:
        if request.url.path == "/api/v1/auth/refresh":
            refreshes.append(request.url.path)

    auth = TesseraAuth(live_server, "alice", PASSWORD, device_name="CLI phone")
    with (
        httpx.Client(base_url=live_server, auth=auth, event_hooks={"request": [note]}) as phone,
        httpx.Client(base_url=live_server) as browser,
    ):
        assert phone.get("/api/v1/me").json()["username"] == "alice"
        first = auth.tokens
        time.sleep(2.2)  # the 2-second access token has expired
        assert phone.get("/api/v1/me").status_code == 200
        assert refreshes
        assert auth.tokens is not None
        assert first is not None
        assert auth.tokens.refresh_token != first.refresh_token

        page = browser.get("/login", headers={"accept": "text/html"})
        logged_in = browser.post(
            "/login",
            data={
                "csrf_token": csrf_from_login_page(page.text),
                "username": "alice",
                "password": PASSWORD,
            },
        )
        assert logged_in.status_code == 303
        sessions = browser.get("/api/v1/sessions").json()["sessions"]
        (app_session,) = [s for s in sessions if s["kind"] == "token"]
        csrf = browser.get("/api/v1/csrf").json()["csrf_token"]
        revoked = browser.delete(
            f"/api/v1/sessions/{app_session['id']}", headers={"x-csrf-token": csrf}
        )
        assert revoked.status_code == 204
        with pytest.raises(LoginRequired):
            phone.get("/api/v1/me")
