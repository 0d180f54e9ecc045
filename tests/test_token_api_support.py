"""Helpers for the token API tests: an in-process server with a fake clock, users, logins.

Holds no tests itself; the ``test_`` prefix keeps it inside the token API's test files.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import Depends, FastAPI

from tessera.asgi.auth import Principal, require_user
from tessera.clock import FakeClock
from tessera.config import Settings
from tessera.identity.passwords import FAST_INSECURE_PROFILE, PasswordHasher
from tessera.server.app import create_app
from tessera.server.services import Services

PASSWORD = "correct horse battery staple"
WHOAMI = "/test/whoami"


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings of a throwaway server: its own SQLite file, memory stores, plain http."""
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path}/tessera.db",
        "session_store": "memory",
        "dev": True,
        "issuer": "http://testserver",
    }
    values.update(overrides)
    return Settings(**values)


async def whoami(principal: Principal = Depends(require_user)) -> dict[str, Any]:  # noqa: B008
    """A protected endpoint of the test's own, through the server's full middleware chain."""
    return {
        "user_id": principal.user_id,
        "method": principal.method,
        "session_id": principal.session_id,
        "scopes": sorted(principal.scopes),
    }


@dataclass
class Server:
    """An app whose lifespan is running, its services, and its clock."""

    app: FastAPI
    services: Services
    clock: FakeClock

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url="http://testserver", **kwargs)

    async def add_user(self, name: str = "alice") -> str:
        user = await self.services.users.register(name, PASSWORD)
        return user.id


@asynccontextmanager
async def running(settings: Settings, clock: FakeClock | None = None) -> AsyncIterator[Server]:
    """Build the real server app, run its lifespan, add :data:`WHOAMI`."""
    clock = clock or FakeClock()
    app = create_app(settings, clock=clock, hasher=PasswordHasher(FAST_INSECURE_PROFILE))
    app.add_api_route(WHOAMI, whoami, methods=["GET", "POST"], include_in_schema=False)
    async with app.router.lifespan_context(app):
        yield Server(app, app.state.services, clock)


async def login(client: httpx.AsyncClient, username: str = "alice", **extra: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": PASSWORD, **extra}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"
