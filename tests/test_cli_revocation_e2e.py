"""``tessera sessions revoke`` against a running ``tessera serve``: what it ends, ends for real.

A revocation from the command line must end what the same revocation from the account page
ends: the session, its refresh tokens, its access tokens (which a running server only refuses
once it sees the revocation mark: SQL has no push, so the server reloads the marks every couple
of seconds), and for a user, their remember-me tokens.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.browser_helpers import PASSWORD, add_users, cli_env, csrf_from, serve, tessera_cli
from tests.conftest import REDIS_URL

DEADLINE = 10.0
"""Seconds a revocation may take to reach the server (it reloads marks every two)."""


def refused_soon(client: httpx.Client, path: str, **kwargs: object) -> int:
    """The status of ``GET path`` once it is no longer 200 (or the last one at the deadline)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        status = client.get(path, **kwargs).status_code  # type: ignore[arg-type]
        if status != 200 or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def app_login(base: str) -> dict[str, str]:
    response = httpx.post(
        f"{base}/api/v1/auth/login",
        json={"username": "alice", "password": PASSWORD, "device_name": "Test phone"},
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


def browser_login(browser: httpx.Client, *, remember: bool) -> None:
    page = browser.get("/login", headers={"accept": "text/html"})
    data = {"csrf_token": csrf_from(page.text), "username": "alice", "password": PASSWORD}
    if remember:
        data["remember"] = "on"
    assert browser.post("/login", data=data).status_code == 303
    assert browser.get("/api/v1/me").status_code == 200


@pytest.fixture(params=["sql", "redis"])
def store_env(request: pytest.FixtureRequest, redis_prefix: str) -> Iterator[dict[str, str]]:
    """The store settings of a server and its CLI: SQL (the server polls for revocation marks)
    or Redis (they are pushed), under a key prefix of this test's own."""
    if request.param == "sql":
        yield {"TESSERA_SESSION_STORE": "sql"}
        return
    yield {
        "TESSERA_SESSION_STORE": "redis",
        "TESSERA_REDIS_URL": REDIS_URL,
        "TESSERA_REDIS_PREFIX": redis_prefix,
    }
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for key in client.scan_iter(match=f"{redis_prefix}:*"):
            client.delete(key)
    finally:
        client.close()


def test_revoking_an_app_session_ends_its_tokens_on_the_running_server(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    env = cli_env(tmp_path / "t.db", TESSERA_DEV="1", COLUMNS="200", **store_env)
    add_users(env, ["alice"])
    with serve(env, tmp_path) as base:
        tokens = app_login(base)
        bearer = {"authorization": f"Bearer {tokens['access_token']}"}
        with httpx.Client(base_url=base) as phone:
            assert phone.get("/api/v1/me", headers=bearer).status_code == 200

            listing = tessera_cli(env, "sessions", "list", "--user", "alice")
            (row,) = [line for line in listing.splitlines() if " token " in line]
            assert "alice" in row  # the username, not the internal ID
            assert "Test phone" in row
            handle = row.split()[0]

            revoked = tessera_cli(env, "sessions", "revoke", handle)
            assert "and its app's tokens" in revoked
            assert refused_soon(phone, "/api/v1/me", headers=bearer) == 401
            refresh = phone.post(
                "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
            )
            assert refresh.status_code == 400, refresh.text
            assert refresh.json()["error"] == "invalid_grant"
    assert "session_revoked" in tessera_cli(env, "user", "events", "alice")


def test_revoking_a_remembered_browser_keeps_it_out(tmp_path: Path) -> None:
    """Its remember-me cookie would log it straight back in: that login is forgotten too."""
    env = cli_env(tmp_path / "t.db", TESSERA_DEV="1", TESSERA_SESSION_STORE="sql", COLUMNS="200")
    add_users(env, ["alice"])
    with serve(env, tmp_path) as base, httpx.Client(base_url=base) as browser:
        browser_login(browser, remember=True)
        remember = browser.cookies.get("remember")
        assert remember
        listing = tessera_cli(env, "sessions", "list", "--user", "alice")
        (row,) = [line for line in listing.splitlines() if " browser " in line]
        revoked = tessera_cli(env, "sessions", "revoke", row.split()[0])
        assert "remember-me login" in revoked
        assert browser.get("/api/v1/me").status_code == 401
        with httpx.Client(base_url=base, cookies={"remember": remember}) as returning:
            assert returning.get("/api/v1/me").status_code == 401


def test_revoking_a_user_ends_remember_me_and_every_token(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "t.db", TESSERA_DEV="1", TESSERA_SESSION_STORE="sql")
    add_users(env, ["alice"])
    with serve(env, tmp_path) as base:
        tokens = app_login(base)
        bearer = {"authorization": f"Bearer {tokens['access_token']}"}
        with httpx.Client(base_url=base) as browser:
            browser_login(browser, remember=True)
            remember = browser.cookies.get("remember")
            assert remember

            revoked = tessera_cli(env, "sessions", "revoke", "--user", "alice")
            assert "Revoked 2 session(s), 1 remember-me token(s) and 1 refresh token family" in (
                " ".join(revoked.split())
            )

            # The browser's session is gone, and its remember-me cookie no longer logs it in.
            assert browser.get("/api/v1/me").status_code == 401
            with httpx.Client(base_url=base, cookies={"remember": remember}) as returning:
                assert returning.get("/api/v1/me").status_code == 401
            assert refused_soon(browser, "/api/v1/me", headers=bearer) == 401
            refresh = browser.post(
                "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
            )
            assert refresh.status_code == 400, refresh.text
            assert refresh.json()["error"] == "invalid_grant"


def test_an_unknown_user_is_an_error_not_zero_revocations(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "t.db", TESSERA_SESSION_STORE="sql")
    add_users(env, ["alice"])
    for args in (("revoke", "--user", "alcie"), ("list", "--user", "alcie")):
        with pytest.raises(AssertionError, match="no user is named 'alcie'"):
            tessera_cli(env, "sessions", *args)
