"""Helpers for driving the server like a browser: in process (httpx) and as a real process.

In-process tests get the app with a cheap argon2 profile and an httpx client on an https base
URL (cookies are Secure and ``__Host-`` prefixed outside development mode). Real-browser tests
start ``tessera serve`` as a subprocess on a free port, with users added through the CLI.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from tessera.clock import FakeClock
from tessera.config import Settings
from tessera.identity.passwords import FAST_INSECURE_PROFILE, PasswordHasher
from tessera.identity.users import User
from tessera.server.app import create_app
from tessera.server.services import Services

BASE_URL = "https://testserver"
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
TESSERA = Path(sys.executable).with_name("tessera")


def csrf_from(html: str) -> str:
    """The first CSRF token of a page's forms."""
    match = _CSRF.search(html)
    if match is None:
        raise AssertionError("the page has no CSRF token")
    return match.group(1)


@dataclass
class Server:
    """An app running in process, its services and the clock it reads."""

    app: FastAPI
    services: Services
    clock: FakeClock

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """A fresh "browser": its own cookie jar, no redirects followed."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url=BASE_URL,
            headers={
                "user-agent": kwargs.pop(
                    "user_agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
                )
            },
            **kwargs,
        )

    def browser_with(self, name: str, value: str) -> httpx.AsyncClient:
        """A fresh client whose jar holds one cookie, as the server would have set it."""
        client = self.client()
        client.cookies.set(name, value, domain="testserver.local")
        return client

    async def add_user(self, name: str = "alice", password: str = PASSWORD) -> User:
        return await self.services.users.register(name, password)


@asynccontextmanager
async def running_server(tmp_path: Path, **overrides: Any) -> AsyncIterator[Server]:
    """The app on a fresh SQLite file (sessions in memory unless overridden)."""
    clock = FakeClock()
    hasher = overrides.pop("hasher", None) or PasswordHasher(FAST_INSECURE_PROFILE)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/server.db",
        session_store=overrides.pop("session_store", "memory"),
        **overrides,
    )
    app = create_app(settings, clock=clock, hasher=hasher)
    async with app.router.lifespan_context(app):
        yield Server(app, app.state.services, clock)


async def form_token(client: httpx.AsyncClient, path: str = "/login") -> str:
    """Load a page with forms and return its CSRF token (this starts a session)."""
    page = await client.get(path)
    return csrf_from(page.text)


async def login(
    client: httpx.AsyncClient,
    username: str = "alice",
    password: str = PASSWORD,
    *,
    remember: bool = False,
    next_path: str = "",
) -> httpx.Response:
    """Submit the login form as a browser would (token from the page, form-encoded)."""
    token = await form_token(client, "/login")
    data = {"csrf_token": token, "username": username, "password": password, "next": next_path}
    if remember:
        data["remember"] = "on"
    return await client.post("/login", data=data)


async def post_form(
    client: httpx.AsyncClient, path: str, data: dict[str, str] | None = None, page: str = "/account"
) -> httpx.Response:
    """POST a form from ``page`` with that page's CSRF token."""
    token = await form_token(client, page)
    return await client.post(path, data={"csrf_token": token, **(data or {})})


# --- a real server process ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cli_env(database: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["TESSERA_DATABASE_URL"] = f"sqlite:///{database}"
    env.update(extra)
    return env


def tessera_cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    """Run the ``tessera`` command as a person would; its output (fails on a non-zero exit)."""
    done = subprocess.run(  # noqa: S603 - our own entry point
        [str(TESSERA), *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"tessera {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return done.stdout


def add_users(env: dict[str, str], names: list[str], password: str = PASSWORD) -> None:
    """``tessera user add NAME --password-stdin`` for each name, run side by side."""
    procs = [
        subprocess.Popen(  # noqa: S603 - our own entry point
            [str(TESSERA), "user", "add", name, "--password-stdin"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        for name in names
    ]
    for name, proc in zip(names, procs, strict=True):
        output, _ = proc.communicate(password + "\n", timeout=60)
        if proc.returncode != 0:
            raise AssertionError(f"tessera user add {name} failed: {output}")


@contextmanager
def serve(env: dict[str, str], cwd: Path) -> Iterator[str]:
    """``tessera serve`` on a free port; yields its base URL once /healthz answers.

    The server's output goes to ``cwd/serve.log`` (read it when a test fails).
    """
    port = free_port()
    log = (cwd / "serve.log").open("w")
    proc = subprocess.Popen(  # noqa: S603 - our own entry point
        [str(TESSERA), "serve", "--port", str(port)],
        cwd=str(cwd),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError("tessera serve did not start")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


__all__ = [
    "BASE_URL",
    "PASSWORD",
    "Server",
    "add_users",
    "cli_env",
    "csrf_from",
    "form_token",
    "login",
    "post_form",
    "running_server",
    "serve",
    "tessera_cli",
]
